"""The lab's storage: the URL a user gives (`--storage`), the driver behind it, and the one-line
errors of a server that cannot be reached or a driver that is not installed.

- `sqlite:///PATH`: one machine (several workers on one local disk). Not over a network file
  system: SQLite's locking is unreliable there.
- `postgresql://user:pass@host:port/db` (or `mysql://...`): workers on several machines. The
  PostgreSQL driver is psycopg 3 (`pip install 'tl-hf[postgres]'`); a bare `postgresql://`
  URL uses it when psycopg2 is not installed. Heartbeats are timed by the server's clock.
- `journal:PATH`: a journal file on a folder every worker mounts (NFS), when no database
  server is at hand; its heartbeats are counted by the lab (`tl_hf.lab.study`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from contextlib import contextmanager

from tl_hf.errors import UserError

CONNECT_TIMEOUT_S = 10  # a database server that does not answer fails after this long

# SQLAlchemy dialect+driver -> (the module it imports, the package that provides it)
DRIVERS = {
    "postgresql+psycopg": ("psycopg", "psycopg[binary]  (or: pip install 'tl-hf[postgres]')"),
    "postgresql+psycopg2": ("psycopg2", "psycopg2-binary"),
    "postgresql+pg8000": ("pg8000", "pg8000"),
    "mysql+pymysql": ("pymysql", "PyMySQL"),
    "mysql+mysqldb": ("MySQLdb", "mysqlclient"),
}
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_url(url: str) -> str:
    """The SQLAlchemy URL to open: a bare `postgresql://` takes psycopg 3 when psycopg2 is
    missing; a driver that is not installed is a UserError naming the package to install."""
    if url.startswith("journal:") or url.startswith("sqlite"):
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise UserError(
            f"--storage {url!r}: not a storage URL; give sqlite:///PATH, "
            "postgresql://USER:PASSWORD@HOST:PORT/DB, mysql://... or journal:PATH"
        )
    if scheme == "postgresql" and not _installed("psycopg2") and _installed("psycopg"):
        scheme = "postgresql+psycopg"
    full = {"postgresql": "postgresql+psycopg2", "mysql": "mysql+mysqldb"}.get(scheme, scheme)
    module, package = DRIVERS.get(full, (None, None))
    if module is not None and not _installed(module):
        if scheme == "postgresql":
            package = DRIVERS["postgresql+psycopg"][1]
        raise UserError(
            f"--storage {scheme}://...: the database driver {module!r} is not installed; "
            f"install it with: pip install {package}"
        )
    return f"{scheme}://{rest}"


def host_port(url: str) -> str:
    """`host:port` of a server URL (the default port when the URL has none)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    port = parsed.port or DEFAULT_PORTS.get(parsed.get_backend_name(), "?")
    return f"{parsed.host or 'localhost'}:{port}"


def unreachable(url: str, err: Exception) -> UserError | None:
    """A UserError naming host and port when `err` says the server could not be reached."""
    if url.startswith(("sqlite", "journal:")):
        return None
    text = f"{type(err).__name__}: {err}"
    signs = (
        "timeout",
        "timed out",
        "refused",
        "could not connect",
        "connection failed",
        "can't connect",
        "no route to host",
        "could not translate host name",
        "name or service not known",
    )
    if not any(s.lower() in text.lower() for s in signs):
        return None
    first = str(getattr(err, "orig", None) or err).strip().splitlines()[0][:200]
    return UserError(
        f"--storage: cannot connect to the lab database at {host_port(url)} (waited at most "
        f"{CONNECT_TIMEOUT_S} s: {first}); check the host, port and credentials and that the "
        "server accepts connections from this machine"
    )


def _journal_lock(path: str):
    """Optuna's symlink lock on the journal, except that releasing a lock the other workers
    broke is not an error: a worker paused while holding it (SIGSTOP, a suspended machine)
    finds it taken away after Optuna's grace period (30 s), and its write was already done."""
    from optuna.storages.journal import JournalFileSymlinkLock

    class Lock(JournalFileSymlinkLock):
        def release(self) -> None:
            # "did not possess lock": the link was gone at the rename, broken by the others
            with contextlib.suppress(RuntimeError):
                super().release()

    return Lock(path)


def make_storage(url: str, heartbeat_seconds: float, grace: float):
    """The Optuna storage for a resolved URL."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal:") :]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return JournalStorage(JournalFileBackend(path, lock_obj=_journal_lock(path)))
    if url.startswith("sqlite"):
        # wait for the other workers' writes instead of failing with "database is locked"
        kwargs = {"connect_args": {"timeout": 120}}
    elif url.startswith(("postgresql", "mysql")):
        kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    else:
        kwargs = {}
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=kwargs,
        heartbeat_interval=int(max(heartbeat_seconds, 1)),
        grace_period=int(grace),
    )


@contextmanager
def creation_lock(storage_url: str):
    """Workers on one machine create a SQLite study one at a time (a file lock beside the
    database): two creating its tables at once fail ("table ... already exists")."""
    if not storage_url.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = storage_url[len("sqlite:///") :] + ".lock"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
