"""The training history a run records (`training_history.json`): its structure, the best
evaluation under the run's metric and direction, and the files an output folder holds.
Read by the monitor, the curves, the diagnosis, the HTML report and the card."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from tl_hf.output.names import (  # noqa: F401  (re-exported: the report's file names)
    CARD_FILE,
    CURVES_FILE,
    DIAGNOSIS_FILE,
    HISTORY_FILE,
    MONITOR_STATE,
    PREDICTIONS_FILE,
    PREVIEW_FILE,
    REPORT_FILE,
)


def atomic_write(path: Path, data: bytes) -> None:
    # A reader watching the run (an image viewer, a notebook) never sees a half-written file.
    from tl_hf.output.atomic import write_bytes

    write_bytes(path, data)


def metric_key(metric: str | None) -> str:
    metric = metric or "loss"
    return metric if metric.startswith("eval_") else f"eval_{metric}"


def best_eval(history: dict) -> dict | None:
    """The evaluation record that wins under the history's metric and direction.

    Ties go to the earliest, as in `Trainer` (a checkpoint replaces the best only when
    strictly better).
    """
    key = metric_key(history.get("metric_for_best_model"))
    greater = history.get("greater_is_better")
    if greater is None:
        greater = not key.endswith("loss")
    best = None
    for record in history.get("eval", []):
        value = record.get(key)
        if value is None:
            continue
        if best is None or (value > best[key] if greater else value < best[key]):
            best = record
    return best


def epoch_int(epoch: float | None) -> int | None:
    return None if epoch is None else int(round(epoch))


def finalize_history(history: dict) -> dict:
    """Fill in `best_epoch`, `best_step` and `best_metric` from the evaluations (in place)."""
    best = best_eval(history)
    key = metric_key(history.get("metric_for_best_model"))
    history["best_epoch"] = epoch_int(best["epoch"]) if best else None
    history["best_step"] = best["step"] if best else None
    history["best_metric"] = best[key] if best else None
    if history.get("eval"):
        history["stopped_epoch"] = epoch_int(history["eval"][-1]["epoch"])
    return history


def new_history() -> dict:
    """An empty history, the structure `training_history.json` holds."""
    return {
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
        "num_labels": None,
        "num_train_epochs": None,
        "early_stopping_patience": None,
        "train": [],  # {"step", "epoch", "loss"} per logging step
        "eval": [],  # {"step", "epoch", "eval_loss", "eval_<metric>"...} per evaluation
        "learning_rates": [],  # {"step", "epoch", "lr": {group name: lr}}
        "after_training": [],  # evaluations after training (best model on validation / test)
        "best_epoch": None,
        "best_step": None,
        "best_metric": None,
        "stopped_epoch": None,
        "early_stopped": False,
        "finished": False,
    }


def load_history(output_dir: str | os.PathLike) -> dict | None:
    """`training_history.json` of a run, or None when there is none."""
    path = Path(output_dir) / HISTORY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def mean_loss_per_epoch(train: list[dict]) -> dict[int, float]:
    """Mean training loss of the logging steps that fall in each epoch (1-based)."""
    sums: dict[int, list[float]] = {}
    for row in train:
        epoch = max(1, math.ceil((row["epoch"] or 0) - 1e-9))
        sums.setdefault(epoch, []).append(row["loss"])
    return {e: sum(v) / len(v) for e, v in sums.items()}
