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
    # the default rule: the lowest validation loss after temperature scaling
    assert result.args.training.metric_for_best_model == "eval_scaled_loss"
    losses = [e["eval_scaled_loss"] for e in evals]
    assert m["best_epoch"] == 1 + int(np.argmin(losses))  # lower is better
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
    assert m["eval_scaled_loss"] == pytest.approx(min(losses), rel=1e-5)
    with open(os.path.join(out, "all_results.json")) as f:
        saved = json.load(f)
    assert saved["best_epoch"] == m["best_epoch"] and saved["strategy"] == "full"
    # the monitor: one evaluation per epoch, the marked best epoch is the restored one
    with open(os.path.join(out, "training_history.json")) as f:
        history = json.load(f)
    assert [e["epoch"] for e in history["eval"]] == list(range(1, m["stopped_epoch"] + 1))
    assert history["best_epoch"] == m["best_epoch"] and history["early_stopped"] is True
    assert history["stopped_epoch"] == m["stopped_epoch"]
    # the card and run_config.yaml say which rule kept the checkpoint
    with open(os.path.join(out, "README.md")) as f:
        assert "`eval_scaled_loss` (the validation loss after temperature scaling" in f.read()
    with open(os.path.join(out, "run_config.yaml")) as f:
        assert "metric_for_best_model: eval_scaled_loss" in f.read()
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


def _epoch(correct: np.ndarray, confidence: float, wrong_confidence: float | None = None):
    """Two-class logits: each example's margin is `confidence` toward its label where
    `correct`, else toward the other class (`wrong_confidence`, default the same)."""
    wrong = confidence if wrong_confidence is None else wrong_confidence
    margin = np.where(correct, confidence, -wrong)
    labels = np.arange(len(correct)) % 2
    sign = np.where(labels == 1, 1.0, -1.0)
    return np.stack([-sign * margin / 2, sign * margin / 2], 1), labels


def _select(epochs) -> int:
    """The epoch (1-based) the default rule keeps among these evaluations."""
    from transformers import EvalPrediction

    from tl_hf.config.arguments import TRAINING_DEFAULTS
    from tl_hf.report.history import best_eval
    from tl_hf.training.metrics import compute_metrics

    history = {
        "metric_for_best_model": TRAINING_DEFAULTS["metric_for_best_model"],
        "greater_is_better": None,  # what Trainer infers from the name
        "eval": [],
    }
    for i, (logits, labels) in enumerate(epochs, start=1):
        m = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
        history["eval"].append({"epoch": i, **{f"eval_{k}": v for k, v in m.items()}})
    return best_eval(history)["epoch"], history["eval"]


def test_rule_keeps_the_confident_better_epoch_whose_raw_loss_rose():
    # 40 validation examples; epoch 2 gets 36 right (epoch 1: 32) but is far more confident,
    # so its 4 errors cost more raw loss than epoch 1's 8 timid ones: the raw loss rises
    rng = np.random.default_rng(0)
    first = rng.permutation(40) >= 8
    second = first.copy()
    second[np.flatnonzero(~first)[:4]] = True
    kept, evals = _select([_epoch(first, 0.4), _epoch(second, 8.0)])
    assert evals[1]["eval_loss"] > evals[0]["eval_loss"]  # what the old rule followed
    assert evals[1]["eval_accuracy"] > evals[0]["eval_accuracy"]
    assert kept == 2


def test_rule_keeps_the_earlier_epoch_when_accuracy_falls_and_loss_rises():
    rng = np.random.default_rng(1)
    good = rng.permutation(40) >= 4
    worse = good.copy()
    worse[np.flatnonzero(good)[:10]] = False  # overfitting: 10 more errors, more confident
    kept, evals = _select([_epoch(good, 2.0), _epoch(worse, 3.0)])
    assert evals[1]["eval_accuracy"] < evals[0]["eval_accuracy"]
    assert kept == 1


def test_rule_breaks_an_accuracy_tie_by_how_far_the_errors_are():
    # same examples right and wrong; epoch 2 is as sure of its right answers but much less
    # sure of its wrong ones: better ranked, so kept; accuracy alone would tie (keep epoch 1)
    correct = np.arange(40) % 5 != 0
    kept, evals = _select([_epoch(correct, 3.0, 3.0), _epoch(correct, 3.0, 0.5)])
    assert evals[0]["eval_accuracy"] == evals[1]["eval_accuracy"]
    assert kept == 2
    # and identical epochs keep the first, as Trainer does
    assert _select([_epoch(correct, 3.0), _epoch(correct, 3.0)])[0] == 1


def test_temperature_fit_recovers_the_scale_of_overconfident_logits():
    from tl_hf.training.metrics import TEMPERATURE_RANGE, fit_temperature, soft_nll

    rng = np.random.default_rng(2)
    calibrated = rng.normal(size=(4000, 3)) * 2
    p = np.exp(calibrated - calibrated.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])  # labels drawn from the model
    targets = np.eye(3)[labels]
    t = fit_temperature(calibrated * 4, targets)  # the same model, 4x overconfident
    assert t == pytest.approx(4, rel=0.1)
    assert soft_nll(calibrated * 4 / t, targets) < soft_nll(calibrated * 4, targets)
    # a split the model separates perfectly: the lowest temperature of the range
    assert fit_temperature(np.eye(3)[labels] * 5, targets) == TEMPERATURE_RANGE[0]
