"""The embedded image and audio defaults on their real checkpoints and data (slow: minutes).
Budgets are cut down from the full defaults; the closing notes quote the full runs."""

import json

import pytest
from transformers import pipeline

from tl_hf.cli.recipe import main


@pytest.mark.slow
def test_embedded_image_default(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    out = tmp_path / "image"
    code = main(
        "image",
        [
            "--output_dir",
            str(out),
            "--max_train_samples",
            "300",
            "--max_eval_samples",
            "100",
            "--max_test_samples",
            "200",
            "--num_train_epochs",
            "2",
            "--image_size",
            "64",
        ],
    )
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "all_results.json").read_text())
    assert results["test_samples"] == 200
    assert results["test_accuracy"] >= 0.5  # chance is 0.1: the ImageNet features transfer
    assert {g["depth"] for g in json.loads((out / "param_groups.json").read_text())} == set(
        range(9)
    )
    classify = pipeline("image-classification", model=str(out))
    label = classify(Image.fromarray(np.zeros((28, 28), dtype=np.uint8)))[0]["label"]
    assert label in results["test_per_class"]


@pytest.mark.slow
def test_embedded_audio_default(tmp_path, capsys):
    out = tmp_path / "audio"
    code = main(
        "audio",
        [
            "--output_dir",
            str(out),
            "--max_train_samples",
            "400",
            "--max_eval_samples",
            "100",
            "--max_test_samples",
            "200",
            "--num_train_epochs",
            "1",  # test accuracy 0.965 measured (0.98 after 2 epochs)
        ],
    )
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "all_results.json").read_text())
    assert set(results["test_per_class"]) == {
        "yes",
        "no",
        "up",
        "down",
        "left",
        "right",
        "on",
        "off",
        "stop",
        "go",
    }
    assert results["test_accuracy"] >= 0.5  # held-out voices; chance is 0.1
    from tl_hf.embedded.audio import synthesize_speech

    classify = pipeline("audio-classification", model=str(out))
    assert (
        classify(synthesize_speech("stop", voice="espeak:en-us"))[0]["label"]
        in results["test_per_class"]
    )
