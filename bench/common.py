"""What the benchmarks share: printing as they go, and a PostgreSQL database of their own."""

import psycopg


def log(message: str = "") -> None:
    print(message, flush=True)


def drop_database(url: str) -> None:
    """Drop the database at ``url`` (sessions still open on it are closed)."""
    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def recreate_database(url: str) -> None:
    """An empty database at ``url`` (dropped first if it exists)."""
    drop_database(url)
    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
