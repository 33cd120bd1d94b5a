"""The early-stopping preset and metrics, through the Python API on tiny models."""

import json
import os
import random

import numpy as np
import pytest
from safetensors.torch import load_file

import tl_hf


def noisy_dataset(n=64, seed=0):
    """Labels independent of the text: a model can only memorise, so validation loss rises."""
    from conftest import FILLER, NEGATIVE, POSITIVE
    from datasets import Dataset

    rng = random.Random(seed)
    words = POSITIVE + NEGATIVE + FILLER
    return Dataset.from_list(
        [
            {"text": " ".join(rng.sample(words, 5)), "label": rng.choice(["x", "y"])}
            for _ in range(n)
        ]
    )


def eval_history(output_dir):
    ckpts = sorted(
        (d for d in os.listdir(output_dir) if d.startswith("checkpoint-")),
        key=lambda d: int(d.split("-")[1]),
    )
    with open(os.path.join(output_dir, ckpts[-1], "trainer_state.json")) as f:
        state = json.load(f)
    return [e for e in state["log_history"] if "eval_loss" in e], ckpts


def test_preset_stops_after_patience_and_keeps_best(tiny_bert, tmp_path):
    out = str(tmp_path / "run")
    result = tl_hf.train_text_classifier(
        noisy_dataset(),
        model_name_or_path=tiny_bert,
        output_dir=out,
        strategy="full",
        learning_rate=5e-3,
        num_train_epochs=25,
        early_stopping_patience=2,
        per_device_train_batch_size=8,
        validation_split_percentage=25,
        seed=1,
        use_cpu=True,
    )
    m = result.metrics
    assert m["early_stopped"] is True
    assert m["stopped_epoch"] < 25
    assert m["stopped_epoch"] - m["best_epoch"] == 2  # patience counted in evaluations
    evals, ckpts = eval_history(out)
    assert len(evals) == m["stopped_epoch"]  # one evaluation per epoch
    losses = [e["eval_loss"] for e in evals]
    assert m["best_epoch"] == 1 + int(np.argmin(losses))  # eval_loss: lower is better
    # only the best and the latest checkpoints stay on disk, and the best one is reported
    assert len(ckpts) <= 2 and os.path.basename(m["best_checkpoint"]) in ckpts
    # the saved model is the best checkpoint, not the last epoch
    final = load_file(os.path.join(out, "model.safetensors"))
    best = load_file(os.path.join(m["best_checkpoint"], "model.safetensors"))
    latest = load_file(os.path.join(out, ckpts[-1], "model.safetensors"))
    assert final.keys() == best.keys()
    assert all((final[k] == best[k]).all() for k in final)
    if os.path.basename(m["best_checkpoint"]) != ckpts[-1]:
        assert any(not (final[k] == latest[k]).all() for k in final)
    # the validation metrics reported are those of the restored model
    assert m["eval_loss"] == pytest.approx(min(losses), rel=1e-5)
    with open(os.path.join(out, "all_results.json")) as f:
        saved = json.load(f)
    assert saved["best_epoch"] == m["best_epoch"] and saved["strategy"] == "full"
    # the monitor: one evaluation per epoch, the marked best epoch is the restored one
    with open(os.path.join(out, "training_history.json")) as f:
        history = json.load(f)
    assert [e["epoch"] for e in history["eval"]] == list(range(1, m["stopped_epoch"] + 1))
    assert history["best_epoch"] == m["best_epoch"] and history["early_stopped"] is True
    assert history["stopped_epoch"] == m["stopped_epoch"]
    assert os.path.getsize(os.path.join(out, "training_curves.png")) > 10_000
    for name in (
        "diagnosis.json",
        "report.html",
        "README.md",
        "run_config.yaml",
        "param_groups.json",
    ):
        assert os.path.exists(os.path.join(out, name)), name


def test_accuracy_metric_is_maximised(tiny_bert, tmp_path):
    result = tl_hf.train_text_classifier(
        noisy_dataset(seed=3),
        model_name_or_path=tiny_bert,
        output_dir=str(tmp_path / "acc"),
        strategy="full",
        learning_rate=5e-3,
        num_train_epochs=6,
        metric_for_best_model="accuracy",
        early_stopping_patience=10,
        per_device_train_batch_size=8,
        validation_split_percentage=25,
        use_cpu=True,
    )
    assert result.args.training.greater_is_better is True
    evals, _ = eval_history(str(tmp_path / "acc"))
    accuracies = [e["eval_accuracy"] for e in evals]
    assert result.metrics["best_epoch"] == 1 + int(
        np.argmax(accuracies)
    )  # first epoch reaching the max
    assert result.metrics["early_stopped"] is False and result.metrics["stopped_epoch"] == 6


def test_compute_metrics_from_logits():
    from transformers import EvalPrediction

    from tl_hf.training.metrics import compute_metrics, per_class_report

    logits = np.array([[2.0, 0.1], [0.2, 1.0], [3.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 1])
    m = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    assert m["accuracy"] == pytest.approx(0.75)
    # class 0: P=0.5 R=1 F1=2/3; class 1: P=1 R=2/3 F1=0.8 -> macro 0.7333
    assert m["f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    report = per_class_report(logits.argmax(-1), labels, ["neg", "pos"])
    assert report["pos"]["recall"] == pytest.approx(2 / 3) and report["neg"]["support"] == 1
