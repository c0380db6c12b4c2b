"""segflow.db: how segflow opens its databases: ``sqlite`` (every SQLite file: WAL,
``synchronous=FULL``, busy timeouts) and ``postgres`` (the shared PostgreSQL of ``shared.dsn``);
and ``files``, what a file written and renamed into place needs to be durable."""
