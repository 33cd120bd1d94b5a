"""Test-time augmentation (`--tta N`, issue 26): deterministic views of the right shape and
number, mirrors only when the run's augmentation says mirrored images keep their label, the
averaged prediction equal to a manual average of the views' softmaxes, in training's evaluation
and in inference on the finished folder, and a frozen backbone's feature cache holding every view."""

import json

import pytest
import torch
import yaml
from test_recipe_image import make_image_folder, make_tiny_resnet

from tl_hf.augment.tta import flip_allowed, max_views, pixel_views, view_logits


def _pixels(batch=3, side=32, seed=0):
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


def test_views_are_deterministic_the_right_shape_and_plain_first():
    pixels = _pixels()
    views = pixel_views(pixels, 6, flip=False)
    assert len(views) == 6 and all(v.shape == pixels.shape for v in views)
    assert torch.equal(views[0], pixels)  # the plain input first
    again = pixel_views(pixels.clone(), 6, flip=False)
    assert all(torch.equal(a, b) for a, b in zip(views, again, strict=True))
    # the crops differ from the plain input and from each other
    assert all(not torch.equal(v, pixels) for v in views[1:])
    assert len({tuple(v.flatten()[:50].tolist()) for v in views}) == 6
    # a centre crop of a constant-border image: the middle of the image, resized back
    marked = torch.zeros(1, 3, 32, 32)
    marked[..., 1:31, 1:31] = 1.0  # m = 1: the centre crop drops exactly that 1 px border
    centre = pixel_views(marked, 2, flip=False)[1]
    assert torch.allclose(centre, torch.ones_like(centre))


def test_mirrors_only_with_hflip_in_the_augmentation():
    pixels = _pixels()
    assert max_views(False) == 6 and max_views(True) == 12
    plain = pixel_views(pixels, 6, flip=False)
    mirrored = pixel_views(pixels, 12, flip=True)
    assert torch.equal(mirrored[1], pixels.flip(-1))  # the mirror comes second
    assert not any(torch.equal(v, pixels.flip(-1)) for v in plain)
    assert all(torch.equal(a, b) for a, b in zip(mirrored[2:7], plain[1:], strict=True))
    assert flip_allowed(["crop", "hflip:p=0.5"]) and not flip_allowed(["crop", "rotate"])
    assert not flip_allowed(None)
    with pytest.raises(ValueError):
        pixel_views(pixels, 7, flip=False)


def test_a_negative_view_count_is_refused_not_silently_off():
    """`tl-hf predict/serve --tta -1` has no range check of its own: the one check refuses it."""
    from tl_hf.augment.tta import test_time_views
    from tl_hf.errors import UserError
    from tl_hf.modalities.base import get_modality

    image = get_modality("image")
    assert test_time_views(image, 0, None) == (0, False) == test_time_views(image, 1, None)
    assert test_time_views(image, 4, ["hflip"]) == (4, True)
    with pytest.raises(UserError, match=r"--tta -1: give 0 or 1 \(off\) or 2 to 6"):
        test_time_views(image, -1, None)


def test_averaged_prediction_equals_a_manual_average():
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    pixels = _pixels()
    got = view_logits(layer, pixels, 4, flip=False)
    manual = torch.stack([layer(v).softmax(-1) for v in pixel_views(pixels, 4, False)]).mean(0)
    assert torch.allclose(got.exp(), manual, atol=1e-6)
    assert torch.allclose(got.softmax(-1), manual, atol=1e-6)  # what every metric reads
    assert not torch.allclose(manual, layer(pixels).softmax(-1), atol=1e-4)  # views matter


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny ResNet run with --tta 4 (and one without, same seed) on a small image folder."""
    from tl_hf.cli.recipe import main

    root = tmp_path_factory.mktemp("tta")
    model = make_tiny_resnet(root / "resnet")
    data = make_image_folder(root / "data", per_class=10)
    common = [
        "--model_name_or_path", model, "--dataset_name", data, "--strategy", "full",
        "--learning_rate", "3e-3", "--num_train_epochs", "2", "--use_cpu",
        "--per_device_train_batch_size", "8",
    ]  # fmt: skip
    assert main("image", [*common, "--output_dir", str(root / "tta"), "--tta", "4"]) == 0
    assert main("image", [*common, "--output_dir", str(root / "plain")]) == 0
    return root


def test_training_evaluates_on_the_views_and_inference_reads_them(trained):
    from tl_hf.infer.loaded import load_run

    config = yaml.safe_load((trained / "tta" / "run_config.yaml").read_text())
    assert config["tta"] == 4
    run = load_run(trained / "tta", "cpu")
    assert (run.tta, run.tta_flip) == (4, False)
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in sorted((trained / "data" / "left").iterdir())]
    inputs = {"image": images[:5]}
    pixels = run.encode(inputs)["pixel_values"]
    with torch.inference_mode():
        manual = torch.stack(
            [run.model(pixel_values=v).logits.softmax(-1) for v in pixel_views(pixels, 4, False)]
        ).mean(0)
    assert torch.allclose(run.logits(inputs).exp(), manual, atol=1e-5)
    plain = load_run(trained / "tta", "cpu", tta=0)  # `--tta 0` on predict/evaluate/serve
    with torch.inference_mode():
        single = run.model(pixel_values=pixels).logits.softmax(-1)
    assert torch.allclose(plain.logits(inputs).softmax(-1), single, atol=1e-5)
    card = (trained / "tta" / "README.md").read_text()
    assert "average 4 test-time views per image (`--tta 4`)" in card
    assert "test-time views" not in (trained / "plain" / "README.md").read_text()
    # the run's own evaluation scored the views: its validation loss differs from a run
    # trained the same way and scored on one view
    tta, plain_results = (
        json.loads((trained / d / "all_results.json").read_text()) for d in ("tta", "plain")
    )
    assert tta["eval_loss"] != pytest.approx(plain_results["eval_loss"], abs=1e-6)


def test_frozen_run_caches_every_view_and_scores_as_the_uncached_run(trained, tmp_path):
    """A frozen backbone with --tta 4: validation and test store the backbone's output on the
    4 views (train one), and the head scores exactly as the uncached run, which views pixels."""
    from tl_hf.cli.recipe import main

    common = [
        "--model_name_or_path", str(trained / "resnet"), "--dataset_name", str(trained / "data"),
        "--strategy", "frozen", "--learning_rate", "1e-2", "--num_train_epochs", "2",
        "--use_cpu", "--per_device_train_batch_size", "8", "--tta", "4", "--seed", "3",
        "--validation_split_percentage", "30", "--test_split_percentage", "30",
    ]  # fmt: skip
    assert main("image", [*common, "--output_dir", str(tmp_path / "cached")]) == 0
    off = ["--cache_features", "false", "--output_dir", str(tmp_path / "live")]
    assert main("image", [*common, *off]) == 0
    cached, live = (
        json.loads((tmp_path / d / "all_results.json").read_text()) for d in ("cached", "live")
    )
    assert cached.get("cached_features") is True and "cached_features" not in live
    for key in ("eval_loss", "eval_accuracy", "test_loss", "test_accuracy"):
        assert cached[key] == pytest.approx(live[key], abs=1e-4), key
    # the cached run scored views: one view through the same weights gives another test loss
    from tl_hf.infer.loaded import load_run

    assert load_run(tmp_path / "cached", "cpu").tta == 4


def test_cached_views_replay_as_the_pixel_views():
    """`view_features` + `cached_view_logits` equal `view_logits` on the pixels for a model
    split into a backbone and a head."""
    from tl_hf.augment.tta import VIEW_PREFIX, cached_view_logits, view_features

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 8))
    head = torch.nn.Linear(8, 3)
    pixels = _pixels()
    stored = view_features(
        {"pixel_values": pixels}, 4, False, lambda b: {"h": backbone(b["pixel_values"])}
    )
    assert stored[VIEW_PREFIX + "h"].shape == (3, 4, 8)
    inputs = {k: torch.as_tensor(v) for k, v in stored.items()}
    replayed = cached_view_logits(lambda c: head(c["f_h"]), inputs, "f_")
    direct = view_logits(lambda p: head(backbone(p)), pixels, 4, False)
    assert torch.allclose(replayed, direct, atol=1e-5)


def test_predict_uses_the_runs_views_and_tta_overrides_them(trained, tmp_path, capsys):
    """`tl-hf predict` reads `tta` from run_config.yaml; `--tta 0` scores one view."""
    import csv

    from tl_hf.errors import UserError
    from tl_hf.infer.loaded import load_run
    from tl_hf.infer.predict import predict

    folder = trained / "data" / "left"

    def probabilities(name, *extra):
        out = tmp_path / name
        argv = [str(trained / "tta"), "--input", str(folder), "--output", str(out)]
        assert predict([*argv, "--no_calibration", "--device", "cpu", *extra]) == 0
        with open(out) as f:
            return [float(r["probability"]) for r in csv.DictReader(f)]

    own = probabilities("own.csv")
    assert "4 test-time views averaged" in capsys.readouterr().out
    one = probabilities("one.csv", "--tta", "0")
    assert "test-time views" not in capsys.readouterr().out
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in sorted(folder.iterdir())]
    with torch.inference_mode():
        expected = load_run(trained / "tta", "cpu").logits({"image": images}).exp().max(-1)
    assert own == pytest.approx(expected.values.tolist(), abs=2e-6)
    assert own != pytest.approx(one, abs=1e-4)
    from tl_hf.infer.evaluate import evaluate

    assert (
        evaluate([str(trained / "tta"), "--input", str(trained / "data"), "--device", "cpu"]) == 0
    )
    assert "examples, 4 test-time views averaged)" in capsys.readouterr().out
    with pytest.raises(UserError, match="--tta 7: there are 6 views"):
        predict([str(trained / "tta"), "--input", str(folder), "--tta", "7"])
    with pytest.raises(UserError, match="--tta -1 must be 0"):
        predict([str(trained / "tta"), "--input", str(folder), "--tta", "-1"])
