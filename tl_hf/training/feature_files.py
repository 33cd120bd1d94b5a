"""The files of the feature cache (`tl_hf.training.features`): where a split's stored
features live, the fingerprint that names them, and the sidecar that says a cache file is
whole and which output class it replays."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

from tl_hf.output.atomic import write_json

# Bumped when what is stored changes, so old cache files are never read as new ones.
CACHE_VERSION = "1"


def hash_backbone(module) -> str:
    """A hash of the backbone's weights (names, shapes, dtypes and bytes): the checkpoint's identity
    whatever it was loaded from (Hub revision, local folder edited in place)."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        # reshape: a 0-d buffer (BatchNorm's num_batches_tracked) cannot be viewed as bytes
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def feature_fingerprint(
    split_fingerprint: str, backbone_hash: str, model_class: str, reduction: str
) -> str:
    """The fingerprint of a cached split: the preprocessed split's, the backbone's weights, the
    model class (which decides the backbone's output), the reduction and the cache version."""
    key = f"{CACHE_VERSION}|{split_fingerprint}|{backbone_hash}|{model_class}|{reduction}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def cache_path(ds, fingerprint: str) -> str:
    """Where `datasets.map` keeps a split's features (beside the split's own cache files)."""
    import datasets

    if ds.cache_files:
        return ds._get_cache_file_path(fingerprint)
    return os.path.join(
        str(datasets.config.HF_DATASETS_CACHE), "tl_hf_features", f"features-{fingerprint}.arrow"
    )


def sidecar_path(ds, fingerprint: str) -> str:
    """A small JSON file beside a split's cache naming the backbone's output class, so a rerun can
    replay the cache without running the backbone once."""
    return os.path.splitext(cache_path(ds, fingerprint))[0] + ".tl_hf.json"


def split_key(reduction: str, views: tuple[int, bool] | None) -> str:
    """What a split's cache is stored under: the reduction, and the test-time views (`--tta`:
    n, mirrors) when it holds them (`tl_hf.augment.tta.view_features`)."""
    return reduction if views is None else f"{reduction}|views={views[0]}{'+flip' * views[1]}"


def split_files(ds, backbone_hash: str, model_class: str, reduction: str) -> tuple[str, str]:
    """A split's feature cache file and its sidecar, for one backbone and reduction."""
    fingerprint = feature_fingerprint(ds._fingerprint, backbone_hash, model_class, reduction)
    return cache_path(ds, fingerprint), sidecar_path(ds, fingerprint)


def cache_verified(cache_file: str, sidecar: str) -> bool:
    """True when a split's feature cache is whole: its sidecar records the arrow file's size
    and the file on disk has it (a kill or a full disk can leave a truncated arrow file,
    which `datasets` would otherwise load, or fail on, as if it were the cache)."""
    try:
        with open(sidecar) as f:
            expected = json.load(f).get("bytes")
        return expected is not None and os.path.getsize(cache_file) == expected
    except (OSError, ValueError):
        return False


def read_output_class(path: str):
    """The backbone's output class a sidecar names."""
    import importlib

    with open(path) as f:
        module, name = json.load(f)["output_class"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def discard_unverified(expected_file: str, sidecar_file: str) -> None:
    """Remove a split's cache file that its sidecar does not vouch for, and the sidecar."""
    if os.path.exists(expected_file) and not cache_verified(expected_file, sidecar_file):
        # truncated or unrecorded: rebuild it rather than let `datasets.map` load it
        for path in (expected_file, sidecar_file):
            with contextlib.suppress(OSError):
                os.remove(path)


def write_sidecar(sidecar_file: str, written: str | None, output_cls, reduction: str) -> None:
    """Record a freshly written cache file's size and output class (once: a verified file
    keeps its sidecar)."""
    if written and not cache_verified(written, sidecar_file):
        write_json(  # atomic: another rank never reads half a file
            sidecar_file,
            {
                "output_class": f"{output_cls.__module__}.{output_cls.__qualname__}",
                "reduction": reduction,
                "bytes": os.path.getsize(written),
            },
        )
