"""A throwaway PostgreSQL cluster for a test: `initdb` + `pg_ctl` from Debian's `postgresql`,
run as an unprivileged user (`postgres`, or `tlhf-pg` created if missing: initdb refuses root),
in a temporary folder, on a free port, listening on 127.0.0.1 plus the addresses asked for,
trusting connections from them only. `PgServer.stop()` stops it and deletes the folder."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile

from conftest import free_port  # noqa: E402

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
UNAVAILABLE = None
if not hasattr(os, "geteuid") or os.geteuid() != 0:
    UNAVAILABLE = "needs root to run a throwaway PostgreSQL cluster as another user"
elif not BINARIES:
    UNAVAILABLE = "needs Debian's postgresql (apt-get install postgresql; scripts/setup.sh does)"
elif shutil.which("runuser") is None:
    UNAVAILABLE = "needs runuser (util-linux)"
else:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        UNAVAILABLE = "needs the psycopg driver (pip install 'tl-hf[postgres]')"


def _user() -> str:
    for name in ("postgres", "tlhf-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tlhf-pg"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return "tlhf-pg"


class PgServer:
    """`url(host)`: the SQLAlchemy URL of database `lab` as seen from `host`."""

    def __init__(self, listen: tuple[str, ...] = ()):
        self.bin = os.path.dirname(BINARIES[-1])
        self.user = _user()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tlhf-pg-")
        os.chmod(self.dir, 0o755)
        pw = pwd.getpwnam(self.user)
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.started = False
        try:
            self._run("initdb", "-D", self.data, "-U", "tlhf", "--auth=trust", "-E", "UTF8")
            with open(os.path.join(self.data, "pg_hba.conf"), "w") as hba:
                hba.write("local all all trust\n")
                for address in ("127.0.0.1", *listen):
                    hba.write(f"host all all {address}/32 trust\n")
                for address in listen:  # the other end of each link (a /30 per link)
                    net = address.rsplit(".", 1)[0]
                    hba.write(f"host all all {net}.0/30 trust\n")
            options = (
                f"-p {self.port} -k {self.dir} -c listen_addresses='{','.join(('127.0.0.1', *listen))}' "
                "-c max_connections=50 -c fsync=off"
            )
            log = os.path.join(self.dir, "log")
            self._run(
                "pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w", "-t", "30", "start"
            )
            self.started = True
            self._run("createdb", "-h", self.dir, "-p", str(self.port), "-U", "tlhf", "lab")
        except BaseException:
            self.stop()
            raise

    def _run(self, tool: str, *args: str) -> None:
        cmd = ["runuser", "-u", self.user, "--", os.path.join(self.bin, tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=self.dir)
        if done.returncode:
            raise RuntimeError(f"{tool} failed: {done.stderr[-1000:]}")

    def url(self, host: str = "127.0.0.1") -> str:
        return f"postgresql://tlhf@{host}:{self.port}/lab"

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "30", "stop")
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)
