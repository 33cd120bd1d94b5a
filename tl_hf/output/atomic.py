"""Atomic files: everything tl-hf writes appears complete or not at all.

Each writer puts the bytes under a temporary name in the destination folder, fsyncs them,
renames the file over its final name (`os.replace` is atomic on POSIX within a filesystem)
and fsyncs the folder so the rename itself survives a power cut. A process killed at any
point leaves either the old file, the new one, or a stray `.*.tmp-*` file that no reader
looks at (and that the next atomic write of the same name replaces).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the renames in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed to `path`.

    For writers that want a file name (matplotlib's `savefig`, `soundfile.write`,
    `safetensors.save_file`). On an exception the temporary file is removed and `path` is
    left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield str(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary name, fsync, rename, fsync the folder)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(data, indent=indent) + "\n")


def write_yaml(path: str | os.PathLike, data: Any) -> None:
    import yaml

    write_text(path, yaml.safe_dump(data, sort_keys=True))


def move_files_into(source: str | os.PathLike, target: str | os.PathLike) -> list[str]:
    """Move every file of the folder `source` into `target`, each by one atomic rename
    (both on one filesystem), then fsync `target`; `source` is removed. Returns the names.

    A model is saved into a temporary folder first and moved in with this: each weights or
    processor file in `target` is then whole, never the half a kill left behind.
    """
    source, target = Path(source), Path(target)
    names = []
    for entry in sorted(source.iterdir()):
        if entry.is_file():
            with open(entry, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(entry, target / entry.name)
            names.append(entry.name)
    fsync_dir(target)
    import shutil

    shutil.rmtree(source, ignore_errors=True)
    return names


def safetensors_sizes(path: str | os.PathLike) -> tuple[int, int | None]:
    """(bytes on disk, bytes its header says it holds; None when the header is unreadable)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return 0, None
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little")
            if len(head) < 8 or n <= 0 or 8 + n > size:
                return size, None
            header = json.loads(f.read(n))
        end = max(
            (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return size, None
    return size, 8 + n + end


def safetensors_complete(path: str | os.PathLike) -> bool:
    """True when a `.safetensors` file is as long as its header says (a truncated copy, from
    a kill or a full disk, is shorter); reads only the header."""
    actual, expected = safetensors_sizes(path)
    return actual == expected
