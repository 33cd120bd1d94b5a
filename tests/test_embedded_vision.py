"""The embedded vision defaults: the converted EfficientNet-Lite0 and the Fashion-MNIST loader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tl_hf.embedded import vision
from tl_hf.errors import UserError

pytestmark = pytest.mark.skipif(
    not os.path.isdir(vision.FASHION_MNIST_DIR), reason="Debian dataset-fashion-mnist not installed"
)

# ImageNet-1k indices 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = set(range(281, 286))


# 5-25 s here depending on load (two racing conversions, model loads): slow tier.
@pytest.mark.slow
def test_converted_model_matches_original_weights(tmp_path):
    import timm
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    skimage_data = pytest.importorskip("skimage.data")
    from concurrent.futures import ThreadPoolExecutor

    # Two converters racing on an empty cache both get the one finished folder.
    with ThreadPoolExecutor(2) as pool:
        folders = list(pool.map(vision.efficientnet_lite0_folder, [str(tmp_path)] * 2))
    folder = str(tmp_path / "efficientnet_lite0")
    assert folders == [folder, folder]
    assert sorted(os.listdir(tmp_path)) == ["efficientnet_lite0"]  # no temporary leftovers
    stamp = os.stat(os.path.join(folder, "model.safetensors")).st_mtime_ns
    assert vision.efficientnet_lite0_folder(str(tmp_path)) == folder
    assert os.stat(os.path.join(folder, "model.safetensors")).st_mtime_ns == stamp  # reused

    model, info = AutoModelForImageClassification.from_pretrained(folder, output_loading_info=True)
    assert type(model).__name__ == "TimmWrapperForImageClassification"
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.num_labels == 1000
    assert "tabby" in model.config.id2label[281]
    processor = AutoImageProcessor.from_pretrained(folder)
    model.eval()

    # The reference: the package's tensors loaded straight into timm, timm's own transform.
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    originals = [v for k, v in vision._original_state_dict().items() if "num_batches" not in k]
    targets = [k for k in reference.state_dict() if "num_batches" not in k]
    reference.load_state_dict(dict(zip(targets, originals, strict=True)), strict=False)
    reference.eval()
    config = timm.data.resolve_data_config({}, model=reference)
    transform = timm.data.create_transform(**config)

    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        image = Image.fromarray(getattr(skimage_data, name)()).convert("RGB")
        with torch.no_grad():
            ours = model(**processor(image, return_tensors="pt")).logits[0]
            theirs = reference(transform(image)[None])[0]
        assert ours.argmax().item() == theirs.argmax().item(), name
        if name == "chelsea":
            assert CAT_CLASSES & set(ours.topk(5).indices.tolist())
        if name == "coffee":
            assert ours.argmax().item() == 967  # espresso


def test_conversion_rejects_wrong_shapes():
    import torch

    with pytest.raises(RuntimeError, match="tensors"):
        vision.convert_efficientnet_lite0_state_dict({"a.weight": torch.zeros(1)})


def test_fashion_mnist_sizes_balance_disjoint():
    import numpy as np

    ds = vision.load_fashion_mnist(4, 3, 2, seed=0)
    assert {k: len(v) for k, v in ds.items()} == {"train": 40, "validation": 30, "test": 20}
    assert ds["train"].features["label"].names == vision.FASHION_MNIST_LABELS
    assert ds["train"].features["image"].__class__.__name__ == "Image"
    for split, per_class in (("train", 4), ("validation", 3), ("test", 2)):
        assert np.bincount(ds[split]["label"], minlength=10).tolist() == [per_class] * 10
    image = ds["train"][0]["image"]
    assert image.mode == "L" and image.size == (28, 28)
    pixels = lambda d: {np.asarray(x).tobytes() for x in d["image"]}  # noqa: E731
    assert not pixels(ds["train"]) & pixels(ds["validation"])
    # Same seed, same draw; another seed, another draw.
    again = vision.load_fashion_mnist(4, 3, 2, seed=0)
    assert pixels(again["train"]) == pixels(ds["train"])
    assert pixels(vision.load_fashion_mnist(4, 3, 2, seed=1)["train"]) != pixels(ds["train"])


def test_fashion_mnist_missing_files(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        vision.load_fashion_mnist(1, 1, 1, data_dir=str(tmp_path))


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    from tl_hf.embedded.packages import cache_root

    monkeypatch.setenv("TL_HF_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("TL_HF_CACHE")
    assert str(cache_root()).endswith(os.path.join(".cache", "tl_hf"))


def test_truncated_conversion_is_converted_again(tmp_path, monkeypatch):
    """The converted folder is checked before use: a model.safetensors shorter than its
    header says (killed mid-copy, disk full) is converted again, not loaded."""
    import torch

    from tl_hf.output.atomic import safetensors_complete

    conversions = []

    def convert(state, architecture=vision.ARCHITECTURE):
        conversions.append(1)
        return {"w": torch.ones(256)}

    monkeypatch.setattr(vision, "_original_state_dict", lambda variant=0: {})
    monkeypatch.setattr(vision, "convert_efficientnet_lite0_state_dict", convert)
    folder = vision.efficientnet_lite0_folder(str(tmp_path))
    weights = os.path.join(folder, "model.safetensors")
    assert conversions == [1] and safetensors_complete(weights)
    assert vision.efficientnet_lite0_folder(str(tmp_path)) == folder and conversions == [1]
    data = Path(weights).read_bytes()
    with open(weights, "wb") as f:
        f.write(data[: len(data) // 2])
    assert vision.efficientnet_lite0_folder(str(tmp_path)) == folder
    assert conversions == [1, 1] and safetensors_complete(weights)
