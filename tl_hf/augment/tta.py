"""Test-time augmentation for images (`--tta N`): each evaluated image is scored on N
deterministic views of its model input, and the softmax is averaged over them.

The views, in order (the first N are used): the plain input; then, when the run's `--augment`
holds `hflip` (a mirrored image keeps its label in this data), its mirror; then a centre crop
and the four corner crops, each `2 m` pixels shorter per side (m = side / 32, at least 1) and
resized back to the input size; then their mirrors (with `hflip`). The views work on the
normalised `pixel_values` the processor made, so every image processor and size is alike.

The averaged probabilities come back as their log, in place of the logits: argmax, the
cross-entropy, calibration and every metric read them unchanged (the softmax of log p is p).
"""

from __future__ import annotations

from collections.abc import Callable

CROPS = 5  # the centre and the four corners
MAX_VIEWS = 1 + CROPS  # without hflip; twice that with it


def max_views(flip: bool) -> int:
    return 2 * MAX_VIEWS if flip else MAX_VIEWS


def flip_allowed(augment: list[str] | None) -> bool:
    """Whether the run's `--augment` list says mirrored images keep their labels."""
    return any(str(a).split(":", 1)[0] == "hflip" for a in augment or [])


def test_time_views(modality, n: int, augment: list[str] | None) -> tuple[int, bool]:
    """`--tta n` checked against the modality and the views there are: (views, mirrors);
    (0, False) when off. Raises `UserError` naming the valid choices."""
    from tl_hf.errors import UserError

    flip = flip_allowed(augment)
    if n <= 1:
        return 0, False
    if not modality.test_time_views:
        raise UserError(
            f"--tta {n}: test-time views are for image runs, not {modality.name}; drop --tta"
        )
    if n > max_views(flip):
        more = "" if flip else " (12 when --augment holds hflip: mirrored views)"
        raise UserError(
            f"--tta {n}: there are {max_views(flip)} views (the image, its centre and four "
            f"corner crops){more}; pass --tta 2 to {max_views(flip)}"
        )
    return n, flip


def _crops(pixels) -> list:
    import torch.nn.functional as F

    height, width = pixels.shape[-2:]
    margin = max(1, min(height, width) // 32)
    h, w = height - 2 * margin, width - 2 * margin
    corners = [(margin, margin), (0, 0), (0, 2 * margin), (2 * margin, 0), (2 * margin, 2 * margin)]
    return [
        F.interpolate(
            pixels[..., top : top + h, left : left + w],
            size=(height, width),
            mode="bilinear",
            align_corners=False,
        )
        for top, left in corners
    ]


def pixel_views(pixels, n: int, flip: bool) -> list:
    """The first `n` views of a batch of model inputs `pixels` [B, C, H, W] (see the module)."""
    if n > max_views(flip):
        raise ValueError(f"{n} views asked for, {max_views(flip)} exist (flip={flip})")
    views = [pixels]
    if flip:
        views.append(pixels.flip(-1))
    if n > len(views):
        crops = _crops(pixels)
        views += crops
        if flip:
            views += [c.flip(-1) for c in crops]
    return views[:n]


def view_logits(forward: Callable, pixels, n: int, flip: bool):
    """log of the mean softmax of `forward(view)` over the first `n` views of `pixels`."""
    import torch

    probabilities = None
    for view in pixel_views(pixels, n, flip):
        p = forward(view).float().softmax(-1)
        probabilities = p if probabilities is None else probabilities + p
    return (probabilities / n).clamp_min(torch.finfo(torch.float32).tiny).log()


def views_note(run_config: dict) -> list[str]:
    """The model card's note (lines) when the run's results average test-time views."""
    n = int(run_config.get("tta") or 0)
    if n <= 1:
        return []
    return [
        f"The results average {n} test-time views per image (`--tta {n}`): `pipeline()` scores "
        f"one view, `tl-hf predict` the run's {n}.",
        "",
    ]
