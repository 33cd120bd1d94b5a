"""Image augmentation: each transform, seeding, map-mode copies and cache, mixing, parsing."""

from __future__ import annotations

import numpy as np
import pytest

from tl_hf.augment import AugmentSpec, OnTheFly, apply_augment_copies, parse_augment_specs
from tl_hf.augment import image as aug
from tl_hf.errors import UserError

pytest.importorskip("torchvision")


def _photo(width: int = 40, height: int = 30, seed: int = 0):
    """An RGB test image with structure in both axes (so flips and rotations show)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), "RGB")


def _spec(item: str) -> list[AugmentSpec]:
    return parse_augment_specs([item], aug.AUGMENTATIONS, aug.DEFAULT_AUGMENT)


def _run(item: str, image, seed: int = 1):
    fn = aug.build_augmenter(_spec(item), "image")
    out = fn({"image": [image], "label": [3]}, [seed])
    assert out["label"] == [3]
    return out["image"][0]


def test_flips_mirror_the_image():
    image = _photo()
    assert np.array_equal(np.asarray(_run("hflip:p=1", image)), np.asarray(image)[:, ::-1])
    assert np.array_equal(np.asarray(_run("vflip:p=1", image)), np.asarray(image)[::-1])
    assert np.array_equal(np.asarray(_run("hflip:p=0", image)), np.asarray(image))


@pytest.mark.parametrize(
    "item",
    [
        "rotate:degrees=30",
        "crop:scale=0.3/0.6",
        "color_jitter",
        "brightness",
        "randaugment",
        "trivialaugment",
        "erasing:p=1",
    ],
)
def test_transforms_change_pixels_and_keep_size(item):
    image = _photo()
    # Several seeds: trivialaugment may draw its identity op for one of them.
    outs = [_run(item, image, seed) for seed in range(4)]
    assert all(o.size == image.size and o.mode == "RGB" for o in outs)
    assert any(not np.array_equal(np.asarray(o), np.asarray(image)) for o in outs)


def test_erasing_blacks_out_a_patch():
    out = np.asarray(_run("erasing:p=1,scale=0.2/0.2", _photo(seed=3)))
    assert (out.sum(-1) == 0).mean() == pytest.approx(0.2, abs=0.05)


def test_same_seed_same_pixels_other_seed_other_pixels():
    fn = aug.build_augmenter(_spec("crop") + _spec("rotate") + _spec("color_jitter"), "image")
    image = _photo()
    a, b, c = (np.asarray(fn({"image": [image]}, [s])["image"][0]) for s in (5, 5, 6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_greyscale_palette_rgba_become_rgb():
    from PIL import Image

    grey = Image.new("L", (8, 8), 100)
    palette = grey.convert("P")
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    assert all(aug.to_rgb(im).mode == "RGB" for im in (grey, palette, rgba))
    assert aug.to_rgb(grey).getpixel((0, 0)) == (100, 100, 100)
    assert aug.to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # composited on white
    assert _run("hflip", grey).mode == "RGB"
    # Undecoded rows (Image(decode=False)) and arrays are accepted too.
    import io

    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    assert (
        _run("hflip:p=0", {"bytes": buffer.getvalue(), "path": None}).getpixel((0, 0)) == (100,) * 3
    )
    assert _run("hflip:p=0", np.full((4, 4), 7, np.uint8)).getpixel((0, 0)) == (7, 7, 7)


def test_mixup_cutmix_skipped_by_augmenter_and_mixed_by_batch_mixer():
    import torch

    specs = _spec("mixup:alpha=0.4") + _spec("cutmix")
    assert aug.build_augmenter(specs, "image") is None
    assert aug.build_batch_mixer(_spec("hflip"), 3) is None
    mixer = aug.build_batch_mixer(specs, num_labels=3)
    torch.manual_seed(0)
    batch = {"pixel_values": torch.rand(4, 3, 8, 8), "labels": torch.tensor([0, 1, 2, 1]), "x": 1}
    out = mixer(batch)
    assert out["labels"].shape == (4, 3) and out["labels"].dtype.is_floating_point
    assert torch.allclose(out["labels"].sum(-1), torch.ones(4))
    assert out["pixel_values"].shape == (4, 3, 8, 8) and out["x"] == 1
    assert not torch.equal(out["pixel_values"], batch["pixel_values"])


def test_parse_errors_name_valid_choices():
    with pytest.raises(UserError, match="unknown augmentation 'blur'.*crop"):
        _spec("blur")
    with pytest.raises(UserError, match="no parameter 'angle'.*degrees"):
        _spec("rotate:angle=3")
    with pytest.raises(UserError, match="out of range"):
        aug.build_augmenter(_spec("hflip:p=2"), "image")
    with pytest.raises(UserError, match="LOW/HIGH"):
        aug.build_augmenter(_spec("crop:scale=0.9/0.5"), "image")
    assert _spec("crop:scale=0.5/0.9")[0].params["scale"] == (0.5, 0.9)


def _image_dataset(tmp_path, n: int = 8):
    from datasets import ClassLabel, Dataset, Features, Image, load_from_disk

    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    ds = Dataset.from_dict(
        {"image": [_photo(16, 16, seed=i) for i in range(n)], "label": [i % 2 for i in range(n)]},
        features=features,
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    return load_from_disk(str(tmp_path / "ds"))  # backed by files, so map results are cached


class _CountingAugmenter:
    """Wraps an augmenter and counts rows it augments (a file, so worker processes count too)."""

    def __init__(self, fn, path):
        self.fn, self.path = fn, str(path)

    def __call__(self, batch, seeds):
        with open(self.path, "a") as fh:
            fh.write("x" * len(seeds))
        return self.fn(batch, seeds)


def _pixels(ds) -> list[bytes]:
    return [np.asarray(aug.to_rgb(im)).tobytes() for im in ds["image"]]


def test_map_copies_seeded_and_cached(tmp_path):
    ds = _image_dataset(tmp_path)
    specs = _spec("crop") + _spec("hflip") + _spec("rotate")
    counter = tmp_path / "calls"
    fn = _CountingAugmenter(aug.build_augmenter(specs, "image"), counter)

    first = apply_augment_copies(ds, fn, specs, copies=2, seed=7)
    assert len(first) == 8 * 3
    assert list(first["label"]) == list(ds["label"]) * 3
    assert counter.read_text() == "x" * 16
    assert _pixels(first)[:8] == _pixels(ds)  # originals first, untouched
    assert _pixels(first)[8:16] != _pixels(first)[16:]  # copies differ from each other

    again = apply_augment_copies(ds, fn, specs, copies=2, seed=7)
    assert counter.read_text() == "x" * 16  # cache hit: the augmenter did not run again
    assert _pixels(again) == _pixels(first)
    assert again.cache_files and all("cache-" in f["filename"] for f in again.cache_files[1:])

    other = apply_augment_copies(ds, fn, specs, copies=2, seed=8)
    assert _pixels(other)[8:] != _pixels(first)[8:]


def test_map_num_proc_2_matches_num_proc_1(tmp_path):
    ds = _image_dataset(tmp_path)
    specs = _spec("crop") + _spec("color_jitter")
    fn = aug.build_augmenter(specs, "image")
    one = apply_augment_copies(ds, fn, specs, copies=1, seed=3, num_proc=1, batch_size=3)
    # A fresh fingerprint per run (another dataset copy) so num_proc=2 really recomputes.
    ds2 = _image_dataset(tmp_path / "again")
    two = apply_augment_copies(ds2, fn, specs, copies=1, seed=3, num_proc=2, batch_size=3)
    # num_proc=2 leaves one cache file per worker shard: proof that two processes ran.
    assert len(two.cache_files) > len(one.cache_files)
    assert _pixels(two) == _pixels(one)


def test_on_the_fly_draws_new_pixels_each_call():
    image = _photo()
    fn = aug.build_augmenter(_spec("crop") + _spec("rotate"), "image")
    transform = OnTheFly(fn, lambda batch: batch, seed=0)
    a = transform({"image": [image], "label": [1]})
    b = transform({"image": [image], "label": [1]})
    assert a["label"] == b["label"] == [1]
    assert not np.array_equal(np.asarray(a["image"][0]), np.asarray(b["image"][0]))
    # one process draws as before; each rank of a distributed run draws its own stream
    same = OnTheFly(fn, lambda batch: batch, seed=0, rank=0)({"image": [image], "label": [1]})
    assert np.array_equal(np.asarray(same["image"][0]), np.asarray(a["image"][0]))
    other = OnTheFly(fn, lambda batch: batch, seed=0, rank=1)({"image": [image], "label": [1]})
    assert not np.array_equal(np.asarray(other["image"][0]), np.asarray(a["image"][0]))


def test_write_preview(tmp_path):
    from PIL import Image

    originals = {"image": [_photo(seed=i) for i in range(3)]}
    fn = aug.build_augmenter(_spec("hflip:p=1"), "image")
    copies = [fn(originals, [k * 10 + i for i in range(3)])["image"] for k in range(2)]
    paths = aug.write_preview(originals, {"image": copies[0] + copies[1]}, "image", str(tmp_path))
    assert paths == [str(tmp_path / "augment_preview.png")]
    grid = Image.open(paths[0])
    assert grid.width > grid.height * 0.5 and grid.width >= 3 * 128
