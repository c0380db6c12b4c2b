"""segflow.catalog: the control plane's tables, wherever they live: ``db`` opens the catalog
(``catalog.sqlite``, or shared PostgreSQL tables with ``shared.dsn``), ``audit`` the audit log
of every change made through the API, the CLI and segments-as-code, ``tokens`` the API
tokens, their roles and the service over them."""
