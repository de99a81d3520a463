"""A throwaway PostgreSQL: started from the machine's server binaries, gone (folder and all) at stop.

What the tests (tests/pg.py), the benchmarks and `make cluster` run several replicas on. The binaries
are found with `pg_config --bindir` or in the usual install folders; the cluster lives in a temp folder
and listens on a free loopback port. PostgreSQL refuses to run as root, so as root `initdb` and
`postgres` run as an unprivileged OS user (`postgres` or `nobody`). Each database is named by a
postgresql:// URL, as `--db` takes it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

START_TIMEOUT = 60.0


def find_bindir() -> Path | None:
    """The folder holding `initdb` and `postgres`, or None when this machine has no PostgreSQL server."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    candidates += ["/usr/local/pgsql/bin", "/usr/local/bin", "/usr/bin"]
    for c in candidates:
        if c and all(os.access(os.path.join(c, b), os.X_OK) for b in ("initdb", "postgres")):
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "voltorch-pg"], check=True, timeout=30)
    return pwd.getpwnam("voltorch-pg")


class PostgresServer:
    """A running PostgreSQL: ours (started from the binaries) or an existing one (from a DSN)."""

    def __init__(self, admin_dsn: str, process: subprocess.Popen | None = None, folder: Path | None = None):
        self.admin_dsn = admin_dsn
        self._process = process
        self._folder = folder
        self._names = itertools.count(1)

    @classmethod
    def start(cls, bindir: Path) -> PostgresServer:
        folder = Path(tempfile.mkdtemp(prefix="voltorch-pg-"))
        data, log = folder / "data", folder / "postgres.log"
        kwargs: dict = {}
        if os.geteuid() == 0:
            user = _unprivileged_user()
            os.chown(folder, user.pw_uid, user.pw_gid)
            folder.chmod(0o700)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C"}
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "voltorch", "--auth=trust", "-E", "UTF8",
             "--no-sync"],
            check=True, capture_output=True, timeout=120, env=env, cwd=folder, **kwargs,
        )  # fmt: skip
        port = _free_port()
        logfile = open(log, "ab")  # noqa: SIM115 (the server writes it until stop)
        if kwargs:
            os.chown(log, kwargs["user"], kwargs["group"])
        process = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
             "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "fsync=off",
             "-c", "full_page_writes=off", "-c", "shared_buffers=32MB"],
            stdout=logfile, stderr=subprocess.STDOUT, env=env, cwd=folder, **kwargs,
        )  # fmt: skip
        logfile.close()
        dsn = f"postgresql://voltorch@127.0.0.1:{port}/postgres"
        server = cls(dsn, process, folder)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                psycopg.connect(dsn, connect_timeout=2).close()
                return server
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    server.stop()
                    raise RuntimeError(f"PostgreSQL did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.05)  # bounded: PostgreSQL says nothing until it accepts connections

    @classmethod
    def existing(cls, dsn: str) -> PostgresServer:
        return cls(dsn)

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (None for an existing server): its children are the backends."""
        return self._process.pid if self._process is not None else None

    def new_database(self, prefix: str = "voltorch_test") -> str:
        """A fresh, empty database (named `<prefix>_<pid>_<n>`); returns its DSN."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return urlunsplit(urlsplit(self.admin_dsn)._replace(path="/" + name))

    def drop_database(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()  # SIGTERM: smart shutdown... then fast if it lingers
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
