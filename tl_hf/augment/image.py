"""Image augmentation: torchvision transforms v2 on PIL images, seeded per row.

Follows the modality interface of `tl_hf.augment` (`AUGMENTATIONS`, `DEFAULT_AUGMENT`,
`build_augmenter`, `write_preview`). `mixup` and `cutmix` mix pairs of examples and their
labels, so they cannot run per example inside `datasets.map`: `build_augmenter` skips them
and `build_batch_mixer` applies them to collated batches instead.
"""

from __future__ import annotations

import os
from typing import Any

from tl_hf.augment.base import AugmentSpec, SmallData
from tl_hf.errors import UserError

# name -> {parameter: default}. Tuples are ranges, written LOW/HIGH on the command line
# (e.g. `crop:scale=0.5/1.0`).
AUGMENTATIONS: dict[str, dict[str, Any]] = {
    # random resized crop; the output keeps the input size
    "crop": {"scale": (0.6, 1.0), "ratio": (0.75, 1.3333)},
    "hflip": {"p": 0.5},
    "vflip": {"p": 0.5},
    "rotate": {"degrees": 15.0},  # uniform in [-degrees, degrees], corners filled black
    "color_jitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05},
    "brightness": {"factor": (0.7, 1.3), "contrast": (0.7, 1.3)},  # multiplicative ranges
    "randaugment": {"num_ops": 2, "magnitude": 9},
    "trivialaugment": {},
    "erasing": {"p": 0.5, "scale": (0.02, 0.2)},  # scale: erased fraction of the area
    "mixup": {"alpha": 0.2},  # batch level: build_batch_mixer
    "cutmix": {"alpha": 1.0},  # batch level: build_batch_mixer
}

# Label-preserving for photos, clothes, digits and text in images alike: no flips (a mirrored
# digit or letter is another class or none; add `hflip` for natural photos), no batch mixing
# (it changes the loss). Measured in docs/defaults.md: with hflip the list lowered test accuracy
# on handwritten digits (mnist_5k, 20 per class: 0.765 vs 0.824 without it).
DEFAULT_AUGMENT = ["crop", "rotate", "color_jitter"]

BATCH_LEVEL = ("mixup", "cutmix")

# What the playbook's augmentation step compares (`tl_hf.lab.augment_step`): the two
# parameter-free/-light policies that raised the fine-tuned default on small digit sets
# (docs/defaults.md, image augmentation policies) and the default list.
PLAYBOOK_POLICIES = ("randaugment", "trivialaugment", "default")

# On by itself when --augment is left open, the training split has at most 80 images per class
# and the strategy fine-tunes the backbone for at least 20 epochs, the image llrd default
# (`tl_hf.augment.base.small_data_rule`). Measured with that default, 3 seeds (docs/defaults.md,
# image augmentation at 224 px): at 20 per class digits 0.943 -> 0.954, mnist_5k 0.931 -> 0.966,
# lfw_faces 0.980 -> 0.987 at 224 px; at 64 px it raised both digit sets at 20, 40 and 80 per
# class (by 0.6-0.8 points at 80). In 2 epochs it does not pay (the embedded default at 30 per
# class, 64 px: 0.43 test accuracy with it).
SMALL_DATA = SmallData(
    ("randaugment",),
    "on_the_fly",
    80,
    20,
    "randaugment on the fly raised the fine-tuned default by 1-3.5 points at 20 per class "
    "(docs/defaults.md, image augmentation at 224 px)",
)


def as_pil(value):
    """A PIL image from what a datasets column may hold: a PIL image, an undecoded
    `{"bytes", "path"}` dict (`Image(decode=False)`), a file path or an HxW(xC) uint8 array."""
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            import io

            return Image.open(io.BytesIO(value["bytes"]))
        value = value.get("path")
    if isinstance(value, (str, os.PathLike)):
        return Image.open(value)
    import numpy as np

    return Image.fromarray(np.asarray(value))


def to_rgb(image):
    """A PIL image in RGB: greyscale, palette, CMYK and 16-bit images converted; RGBA and
    LA composited on white (a transparent background is not black)."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale into 8 bits rather than clip at 255
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / top)).astype("uint8"), mode="L")
    return image.convert("RGB")


class _RandomResizedCropSameSize:
    """RandomResizedCrop whose output size is the input's size (images of mixed sizes stay
    mixed; the image processor resizes them later)."""

    def __init__(self, scale: tuple[float, float], ratio: tuple[float, float]):
        self.scale, self.ratio = scale, ratio

    def __call__(self, image):
        from torchvision.transforms import RandomResizedCrop
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        top, left, height, width = RandomResizedCrop.get_params(
            image, list(self.scale), list(self.ratio)
        )
        size = [image.height, image.width]
        return F.resized_crop(
            image, top, left, height, width, size, InterpolationMode.BILINEAR, antialias=True
        )


class _TensorOnly:
    """Runs a tensor-only transform (RandomErasing) on a PIL image and converts back."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        from torchvision.transforms.v2 import functional as F

        return F.to_pil_image(self.transform(F.pil_to_tensor(image)))


def _build_transform(spec: AugmentSpec):
    from torchvision.transforms import v2

    name, p = spec.name, spec.params
    if name == "crop":
        return _RandomResizedCropSameSize(p["scale"], p["ratio"])
    if name in ("hflip", "vflip"):
        cls = v2.RandomHorizontalFlip if name == "hflip" else v2.RandomVerticalFlip
        return cls(p=p["p"])
    if name == "rotate":
        return v2.RandomRotation(degrees=p["degrees"])
    if name == "color_jitter":
        return v2.ColorJitter(p["brightness"], p["contrast"], p["saturation"], p["hue"])
    if name == "brightness":
        return v2.ColorJitter(brightness=p["factor"], contrast=p["contrast"])
    if name == "randaugment":
        return v2.RandAugment(num_ops=p["num_ops"], magnitude=p["magnitude"])
    if name == "trivialaugment":
        return v2.TrivialAugmentWide()
    if name == "erasing":
        return _TensorOnly(v2.RandomErasing(p=p["p"], scale=p["scale"], value=0))
    raise UserError(
        f"unknown image augmentation {name!r}: choose from {', '.join(sorted(AUGMENTATIONS))}"
    )


class ImageAugmenter:
    """`fn(batch, seeds) -> batch`: augments `column` (PIL images, returned as RGB), one
    seed per row; every other column is passed through untouched. Picklable, so
    `datasets.map(num_proc=N)` can ship it to workers."""

    def __init__(self, specs: list[AugmentSpec], column: str):
        self.specs = [s for s in specs if s.name not in BATCH_LEVEL]
        self.column = column
        self.transforms = [_build_transform(s) for s in self.specs]

    def augment_one(self, image, seed: int):
        """One image, drawn from `seed` alone: the same seed gives the same pixels."""
        import torch

        image = to_rgb(as_pil(image))
        # fork_rng: seeding must not disturb the caller's global RNG (the Trainer's shuffling).
        # Only the CPU generator is seeded: torch.manual_seed would also queue a lazy CUDA
        # seeding call with a stack trace on every image (slow, and a growing list).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed))
            for transform in self.transforms:
                image = transform(image)
        return image

    def __call__(self, batch: dict[str, list], seeds: list[int]) -> dict[str, list]:
        if self.column not in batch:
            raise UserError(
                f"image column {self.column!r} not in the batch: columns are {', '.join(batch)}"
            )
        out = dict(batch)
        out[self.column] = [
            self.augment_one(img, s) for img, s in zip(batch[self.column], seeds, strict=True)
        ]
        return out


def build_augmenter(specs: list[AugmentSpec], column: str, **context: Any) -> ImageAugmenter | None:
    """The per-example augmenter of `specs` (mixup/cutmix skipped: see `build_batch_mixer`).

    Args:
        specs: Parsed `--augment` items (`tl_hf.augment.parse_augment_specs`).
        column: The image column.
        **context: Accepted for interface compatibility with the other modalities; unused.

    Returns:
        A picklable `fn(batch, seeds) -> batch`, or None when only batch-level
        augmentations (or none) were asked for.
    """
    del context
    augmenter = ImageAugmenter(specs, column)
    return augmenter if augmenter.transforms else None


class MixupCutmix:
    """Mixes a collated batch: `pixel_values` [B, C, H, W] float and `labels` [B] int in,
    mixed pixels and soft labels [B, num_labels] (rows sum to 1) out.

    The model's built-in loss reads float labels as multi-label targets, so the training
    loss must be soft-label cross-entropy: `-(labels * logits.log_softmax(-1)).sum(-1).mean()`.
    Its draws come from its own generator (seeded), not from torch's global one.
    """

    def __init__(self, specs: list[AugmentSpec], num_labels: int, seed: int = 0):
        import torch
        from torchvision.transforms import v2

        mixers = []
        for spec in specs:
            if spec.name in BATCH_LEVEL:
                cls = v2.MixUp if spec.name == "mixup" else v2.CutMix
                mixers.append(cls(alpha=spec.params["alpha"], num_classes=num_labels))
        # With both asked for, each batch gets one of them (the timm/torchvision recipe).
        self.mixer = mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)
        self.num_labels = num_labels
        self.rng_state = torch.Generator().manual_seed(seed).get_state()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import torch

        out = dict(batch)
        with torch.random.fork_rng(devices=[]):  # torchvision draws from the global generator
            torch.set_rng_state(self.rng_state)
            pixels, labels = self.mixer(batch["pixel_values"], batch["labels"])
            self.rng_state = torch.get_rng_state()
        out["pixel_values"], out["labels"] = pixels, labels
        return out


def build_batch_mixer(
    specs: list[AugmentSpec], num_labels: int, seed: int = 0
) -> MixupCutmix | None:
    """The mixup/cutmix step for collated training batches, or None if neither was asked for.

    Args:
        specs: Parsed `--augment` items; only `mixup` and `cutmix` are used here.
        num_labels: Number of classes (the width of the soft labels).
        seed: Seeds the mixer's own random generator.

    Returns:
        A picklable `mixer(batch) -> batch` (see `MixupCutmix`), or None.
    """
    if not any(s.name in BATCH_LEVEL for s in specs):
        return None
    if num_labels < 2:
        raise UserError("mixup/cutmix need at least 2 classes")
    return MixupCutmix(specs, num_labels, seed)


def _images(data: Any, column: str) -> list:
    """The images of `column` from a Dataset, a batch dict of lists, or a list of rows/images."""
    if isinstance(data, dict):
        return list(data[column])
    if hasattr(data, "column_names"):  # datasets.Dataset
        return list(data[column])
    return [row[column] if isinstance(row, dict) else row for row in data]


def write_preview(originals: Any, augmented: Any, column: str, output_dir: str) -> list[str]:
    """Write `augment_preview.png`: one row per original, the original then its versions.

    Args:
        originals: N examples (a Dataset, a batch dict of lists, or a list of rows/images).
        augmented: The augmented versions in the same forms, aligned with the originals:
            N images, or K * N images in copy-major order (copy 1 of every original, then
            copy 2, ...), as `apply_augment_copies` lays them out.
        column: The image column.
        output_dir: Folder to write into (created if needed).

    Returns:
        The paths written.
    """
    from PIL import Image, ImageDraw

    first, second = _images(originals, column), _images(augmented, column)
    n = len(first)
    if n == 0:
        return []
    if len(second) % n:
        raise ValueError(f"{len(second)} augmented images do not divide into {n} originals")
    copies = len(second) // n
    cell, pad, header = 128, 4, 16
    canvas = Image.new(
        "RGB", (pad + (copies + 1) * (cell + pad), header + pad + n * (cell + pad)), "white"
    )
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 2), "original", fill="black")
    for k in range(copies):
        draw.text((pad + (k + 1) * (cell + pad), 2), f"augmented {k + 1}", fill="black")
    for i in range(n):
        row = [first[i]] + [second[k * n + i] for k in range(copies)]
        for j, image in enumerate(row):
            image = to_rgb(image).copy()
            # Small images (Fashion-MNIST is 28x28) are enlarged with NEAREST so pixels stay visible.
            if max(image.size) > cell:
                image.thumbnail((cell, cell))
            scale = cell // max(image.size)
            if scale > 1:
                image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
            canvas.paste(image, (pad + j * (cell + pad), header + pad + i * (cell + pad)))
    from tl_hf.output.atomic import atomic_path

    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "augment_preview.png")
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return [path]
