"""Fresh annotation databases for the tests: an SQLite file, or a new PostgreSQL database on the
server CI starts (skipped where none runs)."""

from __future__ import annotations

import os
import uuid

import pytest

PASSWORD = "pw-secret-1"
PG_URL = os.environ.get("ALIGN_TEST_PG_URL")


def fresh_db(kind: str, tmp_path) -> str:
    if kind == "sqlite":
        return str(tmp_path / f"{uuid.uuid4().hex[:8]}.db")
    if not PG_URL:
        pytest.skip("no PostgreSQL server (ALIGN_TEST_PG_URL); .ci/run starts one")
    import psycopg

    name = f"align_sec_{uuid.uuid4().hex[:10]}"
    admin = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return PG_URL.rsplit("/", 1)[0] + "/" + name
