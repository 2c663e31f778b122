"""Create Airflow's metadata database when it is missing (run by the airflow-init service of compose.yaml).

The database is named by AIRFLOW__DATABASE__SQL_ALCHEMY_CONN (postgresql+psycopg2://user:pw@host:port/NAME);
the user must be allowed to create databases (the PostgreSQL image's POSTGRES_USER is). Connects to
PRODTYPE_MAINTENANCE_DB (default: prodtype, the database that user owns) to do so. Idempotent.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

import psycopg2
from psycopg2 import sql


def main() -> None:
    url = urlsplit(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    name = unquote(url.path.lstrip("/"))
    if not url.scheme.startswith("postgresql") or not name:
        raise SystemExit("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: expected postgresql+psycopg2://…/DATABASE")
    conn = psycopg2.connect(
        host=url.hostname,
        port=url.port or 5432,
        user=unquote(url.username or ""),
        password=unquote(url.password or ""),
        dbname=os.environ.get("PRODTYPE_MAINTENANCE_DB", "prodtype"),
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")
        else:
            print(f"database {name} exists")
    conn.close()


if __name__ == "__main__":
    main()
