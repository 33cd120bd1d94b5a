"""An output folder owns only what tl-hf wrote there, and has one writer at a time.

The manifest (`.tl_hf_manifest.json`, written right after the lock, before anything else)
records the entries (top-level files and folders) the folder held that are not tl-hf's
("other": the user's data, notes, anything) and the entries tl-hf wrote whose names depend on
the checkpoint ("claimed": model and processor files). An entry is tl-hf's when it was claimed
or carries one of tl-hf's own names (`tl_hf.output.names`) and was not there before tl-hf came;
everything else is the user's, whatever the flags say: `--overwrite_output_dir` removes tl-hf's
entries only, and a folder that holds other entries is refused unless `--allow_other_files`
says the run may write beside them (never over them).

The lock (`.tl_hf.lock`: pid, host, start time, command) is an `flock` held for the whole run
by the main process: a second run on the folder is refused in one line naming the first; the
kernel drops the lock of a killed process, so the next run takes it over (with a note). Across
machines (a shared file system whose `flock` may be local only), a holder on another host
refreshes the file's time every `REFRESH_SECONDS`; its lock is taken over once older than
`STALE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import tl_hf.output.names as N
from tl_hf.errors import UserError

STALE_SECONDS = 600
REFRESH_SECONDS = 60
MANIFEST_VERSION = 1
ALLOW_FLAG = "--allow_other_files"


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _listing(folder: str) -> set[str]:
    try:
        names = set(os.listdir(folder))
    except FileNotFoundError:
        return set()
    # the manifest, the lock and a manifest write in flight (another worker's) are no content
    return {n for n in names - {N.MANIFEST, N.LOCK} if not n.startswith(f".{N.MANIFEST}.tmp-")}


def read_manifest(folder: str) -> dict | None:
    """The folder's manifest, or None when it has none (or an unreadable one)."""
    try:
        with open(os.path.join(folder, N.MANIFEST)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("other"), list):
        return None
    data.setdefault("claimed", [])
    return data


def _legacy_owned(folder: str, entries: set[str], lab: bool) -> set[str]:
    """In a folder an older tl-hf wrote (no manifest, but files only tl-hf writes: a plain
    Trainer's folder also has all_results.json and checkpoints, and is not adopted; tl-hf's
    checkpoints hold its history, `tl_hf_monitor.json`): the
    entries that carry tl-hf's names, model files included."""
    marks = {N.HISTORY_FILE, N.PARAM_GROUPS_FILE, N.RUN_CONFIG_FILE, N.LAB_DB, N.LAB_RESULTS_JSON}
    checkpoints = [e for e in entries if N.is_tl_hf_name(e) and e.startswith("checkpoint-")]
    if not entries & marks and not any(
        os.path.isfile(os.path.join(folder, c, N.MONITOR_STATE)) for c in checkpoints
    ):
        return set()
    return {e for e in entries if N.is_tl_hf_name(e, lab=True) or e in N.MODEL_FILES}


def owned_entries(folder: str, lab: bool = False) -> set[str]:
    """The entries of `folder` that tl-hf wrote (see the module docstring)."""
    entries = _listing(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        return _legacy_owned(folder, entries, lab)
    other, claimed = set(manifest["other"]), set(manifest["claimed"])
    return {
        e
        for e in entries
        if e in claimed
        or (e not in other and N.is_tl_hf_name(e, lab=lab or manifest.get("kind") == "lab"))
    }


def other_entries(folder: str, lab: bool = False) -> list[str]:
    """The entries of `folder` that are not tl-hf's, sorted."""
    return sorted(_listing(folder) - owned_entries(folder, lab))


def _shown(entries: list[str], n: int = 3) -> str:
    head = ", ".join(entries[:n])
    return head + (f" and {len(entries) - n} more" if len(entries) > n else "")


@contextlib.contextmanager
def _folder_mutex(folder: str):
    """Serialises manifest updates between processes (lab workers share a folder)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _write_manifest(folder: str, manifest: dict) -> None:
    from tl_hf.output.atomic import write_json

    write_json(os.path.join(folder, N.MANIFEST), manifest)


def claim(folder: str, names: Iterable[str]) -> None:
    """Record top-level entries tl-hf wrote into `folder` whose names are not tl-hf's own
    (model and processor files); a no-op in a folder without a manifest."""
    names = {n for n in names if not N.is_tl_hf_name(n, lab=True)}
    if not names or read_manifest(folder) is None:
        return
    with _folder_mutex(folder):
        manifest = read_manifest(folder)
        if manifest is None or names <= set(manifest["claimed"]):
            return
        manifest["claimed"] = sorted(set(manifest["claimed"]) | names)
        _write_manifest(folder, manifest)


def refuse_overwriting_other(folder: str, names: Iterable[str]) -> None:
    """A `UserError` when tl-hf is about to write one of the user's own entries."""
    mine = set(names) & set(other_entries(folder))
    if mine:
        raise UserError(
            f"{folder} holds your {_shown(sorted(mine))}, which tl-hf would overwrite: move "
            "it elsewhere or choose another --output_dir"
        )


def _inside(path: str, entry: str) -> bool:
    path, entry = os.path.realpath(path), os.path.realpath(entry)
    return path == entry or path.startswith(entry + os.sep)


# -- the lock ---------------------------------------------------------------------------------


def _process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (tells a reused pid from the one that took a lock)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _read_lock(path: str) -> dict:
    for _ in range(20):  # the holder may have created the file but not written it yet
        try:
            with open(path) as f:
                data = json.load(f)
            if isinstance(data, dict):
                return data
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return {}


def describe_holder(holder: dict) -> str:
    host = holder.get("host")
    where = "this machine" if host == socket.gethostname() else (host or "an unknown host")
    what = f"pid {holder.get('pid', '?')} on {where}, started {holder.get('started', '?')}"
    if holder.get("command"):
        what += f": {holder['command']}"
    return what


@dataclass
class FolderLock:
    """The one-writer lock of an output folder, held by this process until `release`."""

    path: str
    fd: int
    info: dict
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def acquire(cls, folder: str, log: Callable[[str], None]) -> FolderLock:
        path = os.path.join(folder, N.LOCK)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UserError(_in_use(folder, _read_lock(path))) from None
            try:  # the file may have been released (unlinked) between open and flock
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            break
        previous = _read_lock_fd(fd)
        if previous:
            problem = _live_elsewhere(previous, path)
            if problem:
                os.close(fd)
                raise UserError(_in_use(folder, previous))
            log(
                f"took over the lock of {folder} left by a run that is no longer running "
                f"({describe_holder(previous)})"
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _now(),
            "process_start": _process_start(os.getpid()),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        lock = cls(path, fd, info)
        threading.Thread(target=lock._refresh, daemon=True, name="tl-hf-lock").start()
        return lock

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if self.fd < 0:
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            os.remove(self.path)  # unlinked while held: a waiting process re-opens the path
        os.close(self.fd)
        self.fd = -1


def _read_lock_fd(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _live_elsewhere(holder: dict, path: str) -> bool:
    """Whether a lock file whose flock this process just got still belongs to a live run: a
    holder on another host that refreshed it lately (flock may not reach across hosts)."""
    if holder.get("host") == socket.gethostname():
        return False  # the kernel gave us the flock: its holder here is gone
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        return False
    return age < STALE_SECONDS


def _in_use(folder: str, holder: dict) -> str:
    return (
        f"--output_dir {folder} is in use by another tl-hf run ({describe_holder(holder)}): wait "
        "for it to finish or choose another folder (a lock left by a killed run is taken over "
        "automatically)"
    )


# -- opening a folder -------------------------------------------------------------------------


@dataclass
class OutputFolder:
    """An output folder this process writes: its lock (None for a lab folder, which several
    workers share), what it held of the user's, and what to undo when nothing was written."""

    path: str
    lab: bool
    lock: FolderLock | None
    made: list[str]  # folders this process created, outermost first
    other: list[str]  # the user's entries found when the folder was opened
    manifest_created: bool = False

    def start_writing(self) -> None:
        """Write (or update) the manifest: call it before anything else is written here."""
        with _folder_mutex(self.path):
            manifest = read_manifest(self.path)
            if manifest is not None and not set(self.other) - set(manifest["other"]):
                return
            if manifest is None:
                self.manifest_created = True
                legacy = owned_entries(self.path, self.lab)  # an older tl-hf's model files
                manifest = {
                    "tl_hf": "what tl-hf wrote in this folder; everything else is left alone",
                    "version": MANIFEST_VERSION,
                    "kind": "lab" if self.lab else "run",
                    "created": _now(),
                    "claimed": sorted(e for e in legacy if not N.is_tl_hf_name(e, lab=True)),
                    "other": [],
                }
            manifest["other"] = sorted(set(manifest["other"]) | set(self.other))
            _write_manifest(self.path, manifest)

    def claim(self, names: Iterable[str]) -> None:
        claim(self.path, names)

    def remove_owned(
        self, protect: Iterable[str] = (), log: Callable[[str], None] = print
    ) -> list[str]:
        """Remove tl-hf's entries (a previous run's files), never the user's and never an
        entry holding one of `protect` (the run's input files). Returns what was removed."""
        protect = [p for p in protect if p]
        removed = []
        with _folder_mutex(self.path):
            for entry in sorted(owned_entries(self.path, self.lab)):
                path = os.path.join(self.path, entry)
                kept = [p for p in protect if _inside(p, path)]
                if kept:
                    log(f"kept {entry}: it holds this run's input {kept[0]}")
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
                removed.append(entry)
            manifest = read_manifest(self.path)
            if manifest is not None and set(removed) & set(manifest["claimed"]):
                manifest["claimed"] = sorted(set(manifest["claimed"]) - set(removed))
                _write_manifest(self.path, manifest)
        return removed

    def release(self) -> None:
        """End of the run: drop the lock; a folder this run created and left with nothing but
        its manifest goes again (a run refused before writing leaves no trace)."""
        if self.manifest_created and not _listing(self.path):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(self.path, N.MANIFEST))
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        for folder in reversed(self.made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only when empty
        self.made = []


def _makedirs(path: str) -> list[str]:
    """`os.makedirs`, returning the folders it created (outermost first)."""
    missing, probe = [], os.path.abspath(path)
    while not os.path.exists(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    os.makedirs(path, exist_ok=True)
    return list(reversed(missing))


def open_output_folder(
    path: str,
    *,
    allow_other_files: bool = False,
    lab: bool = False,
    would_write: Iterable[str] = (),
    log: Callable[[str], None] = print,
    what: str = "--output_dir",
) -> OutputFolder:
    """Take `path` for writing and check it, writing nothing yet but the lock (none for a lab
    folder, which several workers share): refused in one line when another run holds it, when
    it holds entries tl-hf did not write and `allow_other_files` is not set, or when one of
    those has a name tl-hf writes (its own names and `would_write`). Then `start_writing()`
    before the first file; `release()` on every exit path."""
    made = _makedirs(path)
    folder = OutputFolder(os.path.abspath(path), lab, None, made, [])
    try:
        if not lab:
            folder.lock = FolderLock.acquire(folder.path, log)
        folder.other = other_entries(folder.path, lab)
        if folder.other and not allow_other_files:
            raise UserError(
                f"{what} {path} holds files tl-hf did not write ({_shown(folder.other)}): "
                f"choose an empty folder, or pass {ALLOW_FLAG} to write beside them (tl-hf never "
                "changes or deletes them)"
            )
        writes = set(would_write)
        clash = sorted(e for e in folder.other if e in writes or N.is_tl_hf_name(e, lab=lab))
        if clash:
            raise UserError(
                f"{what} {path} holds your {_shown(clash)}, which tl-hf writes too: move it "
                "elsewhere or choose another folder"
            )
    except BaseException:
        folder.release()
        raise
    return folder
