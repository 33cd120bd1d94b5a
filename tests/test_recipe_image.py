"""The image recipe end to end on tiny local models and an image folder: launch through
accelerate, pipeline() on the output, file checks, mixed modes, mixup."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from tl_hf.cli.recipe import main

LAUNCH = [
    os.path.join(os.path.dirname(sys.executable), "accelerate"),
    "launch",
    "--num_processes",
    "1",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def make_image_folder(root, per_class=12, modes=("RGB",)):
    """Two classes a tiny CNN separates easily: bright-on-left vs bright-on-right images,
    in assorted sizes and modes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("left", "right"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (24 + 4 * (i % 3), 24 + 2 * (i % 2))
            array = rng.integers(0, 60, size=(size[1], size[0], 3), dtype=np.uint8)
            half = size[0] // 2
            if label == "left":
                array[:, :half] += 180
            else:
                array[:, half:] += 180
            image = Image.fromarray(array).convert(modes[i % len(modes)])
            image.save(root / label / f"{i}.png")
    return str(root)


def make_tiny_resnet(path, num_labels=2):
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        num_labels=num_labels,
        layer_type="basic",
    )
    ResNetForImageClassification(config).save_pretrained(path)
    ConvNextImageProcessor(
        size={"shortest_edge": 32}, crop_pct=1.0, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_resnet(tmp_path_factory):
    return make_tiny_resnet(tmp_path_factory.mktemp("resnet"))


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return make_image_folder(
        tmp_path_factory.mktemp("images") / "data", modes=("RGB", "L", "RGBA", "P")
    )


def test_accelerate_launch_image_recipe(tiny_resnet, image_folder, tmp_path):
    from PIL import Image
    from transformers import pipeline

    out = tmp_path / "out"
    cmd = [
        *LAUNCH,
        os.path.join(REPO, "recipes", "image_classify.py"),
        "--model_name_or_path",
        tiny_resnet,
        "--dataset_name",
        image_folder,
        "--output_dir",
        str(out),
        "--strategy",
        "full",
        "--learning_rate",
        "3e-3",
        "--num_train_epochs",
        "8",
        "--per_device_train_batch_size",
        "4",
        "--validation_split_percentage",
        "25",
        "--augment",
        "hflip:p=0",
        "crop:scale=0.9/1.0",
        "--augment_copies",
        "1",
        "--augment_preview",
        "4",
        "--use_cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_samples"] == 18 * 2  # 18 originals + 1 augmented copy each
    assert results["eval_samples"] == 6
    assert results["eval_accuracy"] >= 0.8
    assert (out / "augment_preview.png").exists()
    groups = json.loads((out / "param_groups.json").read_text())
    assert {g["depth"] for g in groups} == {0, 1, 2, 3}  # embedder, 2 stages x 1 block, head
    classify = pipeline("image-classification", model=str(out))
    bright_left = np.zeros((30, 30, 3), dtype=np.uint8)
    bright_left[:, :15] = 230
    top = classify(Image.fromarray(bright_left))[0]["label"]
    assert top in ("left", "right")


def test_corrupt_image_stops_or_is_skipped(tiny_resnet, tmp_path, capsys):
    folder = tmp_path / "imgs"
    make_image_folder(folder, per_class=8)
    (folder / "left" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    base = [
        "--model_name_or_path",
        tiny_resnet,
        "--dataset_name",
        str(folder),
        "--num_train_epochs",
        "1",
        "--validation_split_percentage",
        "25",
        "--use_cpu",
    ]
    code = main("image", [*base, "--output_dir", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "1 unreadable image file(s) in the train split (broken.png" in err
    assert "--skip_bad_files" in err and not (tmp_path / "a").exists()
    code = main("image", [*base, "--output_dir", str(tmp_path / "b"), "--skip_bad_files"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "skipped 1 unreadable image file(s)" in captured.out
    results = json.loads((tmp_path / "b" / "all_results.json").read_text())
    assert results["train_samples"] + results["eval_samples"] == 16


def test_one_class_folder_and_missing_column(tiny_resnet, tmp_path, capsys):
    folder = tmp_path / "one"
    make_image_folder(folder, per_class=4)
    import shutil

    shutil.rmtree(folder / "right")
    code = main(
        "image",
        [
            "--model_name_or_path",
            tiny_resnet,
            "--dataset_name",
            str(folder),
            "--output_dir",
            str(tmp_path / "o"),
        ],
    )
    assert code == 2 and "single class subfolder (left)" in capsys.readouterr().err
    csv = tmp_path / "d.csv"
    csv.write_text("file_name,label\nx.png,a\n")
    code = main(
        "image",
        [
            "--model_name_or_path",
            tiny_resnet,
            "--train_file",
            str(csv),
            "--image_column",
            "img",
            "--output_dir",
            str(tmp_path / "o"),
        ],
    )
    assert (
        code == 2
        and "image column 'img' not found; columns are: file_name, label" in capsys.readouterr().err
    )


def test_csv_with_relative_image_paths_and_mixup(tiny_resnet, tmp_path):
    import tl_hf

    folder = tmp_path / "pics"
    make_image_folder(folder, per_class=10)
    rows = ["path,label"] + [
        f"{label}/{i}.png,{label}" for label in ("left", "right") for i in range(10)
    ]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    result = tl_hf.train_image_classifier(
        model_name_or_path=tiny_resnet,
        train_file=str(folder / "train.csv"),
        output_dir=str(tmp_path / "mix"),
        augment=["mixup:alpha=0.4", "cutmix"],
        num_train_epochs=2,
        per_device_train_batch_size=4,
        use_cpu=True,
        validation_split_percentage=20,
    )
    # mixup/cutmix act on batches: no stored copies, soft-label loss trains
    assert result.metrics["train_samples"] == 16
    assert np.isfinite(result.metrics["train_loss"])


def _corrupt_after_first_epoch(monkeypatch, path):
    """Replace `path` by garbage when the first epoch ends (between epochs 1 and 2)."""
    import tl_hf.training.callbacks

    original = tl_hf.training.callbacks.ProgressCallback.on_epoch_end

    def on_epoch_end(self, args, state, control, **kwargs):
        if round(state.epoch) == 1:
            path.write_bytes(b"this is no longer an image")
        return original(self, args, state, control, **kwargs)

    monkeypatch.setattr(tl_hf.training.callbacks.ProgressCallback, "on_epoch_end", on_epoch_end)


@pytest.mark.parametrize("skip", [False, True])
def test_image_corrupted_mid_training_named_or_skipped(
    tiny_resnet, tmp_path, capsys, monkeypatch, skip
):
    """A file that decoded in epoch 1 is garbage in epoch 2: the run stops naming it, or with
    --skip_bad_files drops it from its batches, counts it, and finishes."""
    folder = tmp_path / "imgs"
    make_image_folder(folder, per_class=8)
    victim = folder / "left" / "3.png"
    _corrupt_after_first_epoch(monkeypatch, victim)
    argv = [
        "--model_name_or_path",
        tiny_resnet,
        "--dataset_name",
        str(folder),
        "--output_dir",
        str(tmp_path / "out"),
        "--num_train_epochs",
        "2",
        "--validation_split_percentage",
        "25",
        "--per_device_train_batch_size",
        "4",
        "--use_cpu",
        "--seed",
        "1",
        *(["--skip_bad_files"] if skip else []),
    ]
    code = main("image", argv)
    out, err = capsys.readouterr()
    if not skip:
        assert code == 2
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in err
        assert errors[0].startswith("error: 3.png no longer decodes (")
        assert "--resume" in errors[0] and "--skip_bad_files" in errors[0]
        return
    assert code == 0, err
    assert "[tl-hf] skipped 3.png: no longer decodes" in out
    assert out.count("[tl-hf] skipped 3.png") == 1  # counted once, however often it is read
    results = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert results["stopped_epoch"] == 2
