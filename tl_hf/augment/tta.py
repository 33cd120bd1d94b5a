"""Test-time augmentation for images (`--tta N`): each evaluated image is scored on N
deterministic views of its model input, and the softmax is averaged over them.

The views, in order (the first N are used): the plain input; then, when the run's `--augment`
holds `hflip` (a mirrored image keeps its label in this data), its mirror; then a centre crop
and the four corner crops, each `2 m` pixels shorter per side (m = side / 32, at least 1) and
resized back to the input size; then their mirrors (with `hflip`). The views work on the
normalised `pixel_values` the processor made, so every image processor and size is alike.

A frozen backbone's feature cache stores, for validation and test, the backbone's output on
every view (`view_features`); evaluation replays each view through the head and averages the
same way (`cached_view_logits`), so the cache stays on with `--tta`.

The averaged probabilities come back as their log, in place of the logits: argmax, the
cross-entropy, calibration and every metric read them unchanged (the softmax of log p is p).
"""

from __future__ import annotations

from collections.abc import Callable

CROPS = 5  # the centre and the four corners
MAX_VIEWS = 1 + CROPS  # without hflip; twice that with it
VIEW_PREFIX = "tl_hf_views_"  # cached features of every view (frozen backbones; not replayed as-is)


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
    if n < 0:
        raise UserError(f"--tta {n}: give 0 or 1 (off) or 2 to {max_views(flip)} test-time views")
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


def _mean_log(forward: Callable, inputs: list):
    """log of the mean softmax of `forward(x)` over `inputs` (the views)."""
    import torch

    probabilities = None
    for x in inputs:
        p = forward(x).float().softmax(-1)
        probabilities = p if probabilities is None else probabilities + p
    return (probabilities / len(inputs)).clamp_min(torch.finfo(torch.float32).tiny).log()


def view_logits(forward: Callable, pixels, n: int, flip: bool):
    """log of the mean softmax of `forward(view)` over the first `n` views of `pixels`."""
    return _mean_log(forward, pixel_views(pixels, n, flip))


def view_features(batch: dict, n: int, flip: bool, extract: Callable) -> dict:
    """The feature cache of an evaluated split (a frozen backbone, `--tta n`): `extract(batch)`
    (the backbone's stored tensors {name: [B, ...]}) on each of the first `n` views of the
    batch's pixels, stacked per example as `VIEW_PREFIX + name`: [B, n, ...] (numpy)."""
    import torch

    per_view = [
        extract({**batch, "pixel_values": view})
        for view in pixel_views(batch["pixel_values"], n, flip)
    ]
    return {
        VIEW_PREFIX + k: torch.stack([p[k] for p in per_view], 1).detach().float().cpu().numpy()
        for k in per_view[0]
    }


def has_cached_views(inputs: dict) -> bool:
    return any(k.startswith(VIEW_PREFIX) for k in inputs)


def cached_view_logits(forward: Callable, inputs: dict, column_prefix: str):
    """log of the mean softmax over the stored views of a cached batch (`view_features`):
    `forward` takes one view's columns, named as the plain cache names them (`column_prefix`)."""
    stored = {k[len(VIEW_PREFIX) :]: v for k, v in inputs.items() if k.startswith(VIEW_PREFIX)}
    n = next(iter(stored.values())).shape[1]
    views = [{column_prefix + k: v[:, i] for k, v in stored.items()} for i in range(n)]
    return _mean_log(forward, views)


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
