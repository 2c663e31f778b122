from service_support.databases import (  # noqa: F401 (fixtures)
    backend,
    blank_database_url,
    database_url,
    engine,
    postgres_backend,
    session,
    settings,
    sqlite_backend,
)
