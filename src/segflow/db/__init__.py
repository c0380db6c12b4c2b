"""segflow.db: how segflow opens its databases: ``sqlite`` (every SQLite file: WAL,
``synchronous=FULL``, busy timeouts) and ``postgres`` (the shared PostgreSQL of ``shared.dsn``)."""
