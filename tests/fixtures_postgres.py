"""A real PostgreSQL server for the ledger tests, started per test session and stopped after.

Uses the Debian `postgresql` package's binaries (initdb, pg_ctl; `scripts/bootstrap.sh` installs
it); nothing is installed here. The server runs as an unprivileged user (the `postgres` account
when the tests run as root, else the current user), listens on a unix socket in a temporary
directory and on a free loopback port, trusts local connections, and is deleted afterwards.

- `postgres_url`: an SQLAlchemy URL (`postgresql+psycopg://...`) of a fresh database per test.
- `postgres_server`: the server (its `url(dbname)` and `create_database(name)`).
Tests using them fail, saying why, when PostgreSQL's binaries or psycopg are missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 30


def _pg_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").is_file() and Path(candidate, "pg_ctl").is_file():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    port: int
    user: str

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres",
                             autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's binaries or psycopg are missing (the message says how to get them)."""


@contextlib.contextmanager
def postgres_running() -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server (see the module docstring); stop and delete it after."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        raise PostgresUnavailable("PostgreSQL is not installed (apt-get install postgresql; see scripts/bootstrap.sh)")
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PostgresUnavailable("psycopg is not installed (requirements-dev.txt)") from exc
    root = Path(tempfile.mkdtemp(prefix="magi1-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    run_as: list[str] = []
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.getuid() == 0:  # initdb refuses root: run the server as the postgres account
        user = "postgres"
        shutil.chown(root, user)
        shutil.chown(sockets, user)
        run_as = ["runuser", "-u", user, "--"]
    port = _free_port()
    try:
        subprocess.run(
            [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
             "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
             "-t", str(START_TIMEOUT_S), "-o",
             f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
             "start"],
            check=True, capture_output=True, timeout=START_TIMEOUT_S + 10,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc}; {getattr(exc, 'stderr', b'')!r} {log}") from exc
    try:
        yield PostgresServer(port=port, user=user)
    finally:
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        with postgres_running() as server:
            yield server
    except PostgresUnavailable as exc:  # fail, never skip: a farm test that did not run proves nothing
        pytest.fail(f"{exc} (scripts/test.sh installs it through scripts/install_postgres.sh)", pytrace=False)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database("magi1_" + secrets.token_hex(6))
