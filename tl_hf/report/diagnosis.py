"""The diagnosis of a run: underfitting, overfitting or healthy, read from its history, with
the playbook's next step (`diagnosis.json`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from tl_hf.output.atomic import write_text
from tl_hf.report.history import DIAGNOSIS_FILE, epoch_int, mean_loss_per_epoch

# Thresholds of `diagnose` (see its docstring).
UNDERFIT_CHANCE_FRACTION = 0.5
OVERFIT_RISE = 0.10
OVERFIT_GAP_RATIO = 0.5
OVERFIT_GAP_MIN = 0.1
STILL_FALLING = 0.01
EARLY_BEST_FRACTION = 0.5
ACCURACY_FALL = 0.02  # a fall of validation accuracy that is more than a row or two's noise


def _trains_backbone(strategy: str | None) -> bool:
    """What the strategy's record declares (an unknown name: assume it trains the backbone)."""
    from tl_hf.errors import UserError
    from tl_hf.strategies.base import get_strategy

    if strategy is None:
        return True
    try:
        return get_strategy(strategy).trains_backbone
    except UserError:  # a run folder made with a strategy not registered in this process
        return True


def _next_steps(verdict: str, strategy: str | None, still_falling: bool) -> list[str]:
    frozen = not _trains_backbone(strategy)
    if verdict == "underfitting":
        steps = []
        if frozen:
            steps.append(
                "unfreeze more layers: --trainable_layers K (top K blocks) or --strategy llrd"
            )
        else:
            steps.append("a larger pretrained checkpoint (--model_name_or_path)")
        steps.append("more epochs (--num_train_epochs) or a higher --learning_rate")
        if not frozen:
            steps.append("less regularisation: lower --weight_decay, fewer augmentations")
        return steps
    if verdict == "overfitting":
        return [
            "more augmentation: --augment ... with --augment_copies K or --augment_mode on_the_fly",
            "more regularisation: higher --weight_decay, or train less of the model "
            "(--strategy frozen / --trainable_layers, a lower --llrd_decay)",
            "a smaller pretrained checkpoint",
            "earlier stopping: a lower --early_stopping_patience",
        ]
    if still_falling:
        return ["more epochs may still help: validation loss was still falling"]
    return ["iterate on augmentation, the highest-return lever on small data"]


def diagnose(history: dict, strategy: str | None = None, num_labels: int | None = None) -> dict:
    """Underfitting, overfitting or healthy, read from the training history.

    Signals (losses are cross-entropy; `train` = mean training loss of the last epoch,
    `val_best` / `val_final` = lowest / last validation loss, chance = `log(num_labels)`,
    the loss of a uniform guess):
    - train loss high: `train > 0.5 * chance` (the model removed less than half of the
      chance-level loss on its own training data);
    - validation rose: `val_final > (1 + 0.10) * val_best` after the best epoch;
    - validation accuracy fell: the final accuracy is more than 0.02 below its best (when the
      history records accuracy);
    - generalisation gap: `train < 0.5 * val_final` and `val_final - train > 0.1`;
    - best epoch early: the best epoch fell in the first half of the epochs run (3+ evals).
    The two loss-based overfitting signals (validation rose, generalisation gap) are not
    counted when the validation accuracy held up (at the end no lower than at the lowest loss,
    within 0.02 of its best): a fine-tuned model growing confident raises its validation loss
    without getting worse; the reasons say so. `signals["overfit_signal"]` names what an
    overfitting verdict rests on.
    - still falling: the last validation loss is the best and more than 1% below the one
      before (training ended before the model converged).

    Rules, in order:
    1. train loss high -> `underfitting` (the model cannot fit even the training data);
    2. validation rose, or generalisation gap -> `overfitting` (best epoch early is an
       extra reason, never enough alone);
    3. still falling, and not stopped early -> `underfitting` (undertrained: more epochs);
    4. otherwise `healthy`.
    With fewer than two evaluations only rule 1 can fire.

    Next steps follow the playbook: underfitting -> unfreeze more layers (with
    `frozen`), a bigger model, more epochs; overfitting -> more augmentation,
    regularisation, a smaller model, earlier stopping.

    Args:
        history: A `training_history.json` dict (see `MonitorCallback`).
        strategy: the strategy's name (its record says whether the backbone trained), to
            tailor the next step.
        num_labels: Number of classes (default: `history["num_labels"]`).

    Returns:
        `{"verdict", "reasons": [str], "next_steps": [str], "signals": {...}}`.
    """
    evals = [e for e in history.get("eval", []) if e.get("eval_loss") is not None]
    num_labels = num_labels or history.get("num_labels")
    val = [e["eval_loss"] for e in evals]
    signals = _signals(history, evals, val, num_labels)
    reasons_under = _underfit_reasons(signals, num_labels)
    reasons_over, still_falling = _overfit_reasons(signals, val, evals)
    signals["still_falling"] = still_falling
    notes = signals.get("notes", [])
    verdict, reasons = _verdict(reasons_under, reasons_over, still_falling, history, val, notes)
    return {
        "verdict": verdict,
        "reasons": reasons,
        "next_steps": _next_steps(verdict, strategy, still_falling),
        "signals": signals,
    }


def _signals(history: dict, evals: list[dict], val: list[float], num_labels) -> dict[str, Any]:
    """The numbers `diagnose` reads (`still_falling` is added once the trend is read)."""
    train = history.get("train", [])
    chance = math.log(num_labels) if num_labels and num_labels > 1 else None
    means = mean_loss_per_epoch(train) if train else {}
    train_final = means[max(means)] if means else None
    val_best = min(val) if val else None
    val_final = val[-1] if val else None
    best_i = val.index(val_best) if val else None
    return {
        "train_loss_final": train_final,
        "val_loss_best": val_best,
        "val_loss_final": val_final,
        "chance_loss": chance,
        "num_evaluations": len(evals),
        "best_loss_epoch": epoch_int(evals[best_i]["epoch"]) if evals else None,
        "early_stopped": bool(history.get("early_stopped")),
    }


def _underfit_reasons(signals: dict[str, Any], num_labels) -> list[str]:
    """Rule 1: the training loss is high (empty when it is not)."""
    train_final, chance = signals["train_loss_final"], signals["chance_loss"]
    if (
        train_final is not None
        and chance is not None
        and (train_final > UNDERFIT_CHANCE_FRACTION * chance)
    ):
        return [
            f"final training loss {train_final:.3f} is above {UNDERFIT_CHANCE_FRACTION:g} x chance "
            f"(log {num_labels} = {chance:.3f}): the model does not fit its training data"
        ]
    return []


def _accuracy_trend(evals: list[dict], best_i: int) -> tuple[float, float, float] | None:
    """(validation accuracy at the lowest loss, its best, its last), when the history has it."""
    accuracy = [e.get("eval_accuracy") for e in evals]
    if any(a is None for a in accuracy):
        return None
    return accuracy[best_i], max(accuracy), accuracy[-1]


def _loss_signals(signals: dict[str, Any]) -> list[tuple[str, str]]:
    """The loss-based overfitting signals that fire: (name, sentence) pairs."""
    train_final, val_best, val_final = (
        signals["train_loss_final"],
        signals["val_loss_best"],
        signals["val_loss_final"],
    )
    loss_signals = []
    if val_final > (1 + OVERFIT_RISE) * val_best:
        loss_signals.append(
            (
                "validation loss",
                f"validation loss rose from {val_best:.3f} (epoch {signals['best_loss_epoch']}) "
                f"to {val_final:.3f} at the end (more than {OVERFIT_RISE:.0%})",
            )
        )
    if (
        train_final is not None
        and train_final < OVERFIT_GAP_RATIO * val_final
        and (val_final - train_final > OVERFIT_GAP_MIN)
    ):
        loss_signals.append(
            (
                "generalisation gap",
                f"training loss {train_final:.3f} is less than {OVERFIT_GAP_RATIO:g} x "
                f"validation loss {val_final:.3f}: a large generalisation gap",
            )
        )
    return loss_signals


def _overfit_reasons(
    signals: dict[str, Any], val: list[float], evals: list[dict]
) -> tuple[list[str], bool]:
    """Rule 2's reasons (validation loss rose while accuracy did not improve, validation
    accuracy fell, generalisation gap, best epoch early) and whether the validation loss was
    still falling; both need two evaluations or more. Notes why a rising loss was not read as
    overfitting go in `signals["notes"]`."""
    reasons_over: list[str] = []
    signals["overfit_signal"] = None
    if len(val) < 2:
        return reasons_over, False
    best_i = val.index(signals["val_loss_best"])
    trend = _accuracy_trend(evals, best_i)
    # the validation accuracy held up (no lower than at the lowest loss, near its best): the
    # loss-based signals then show a model growing confident, not a worse one
    held = trend is not None and trend[2] >= trend[0] and trend[1] - trend[2] <= ACCURACY_FALL
    loss_signals = _loss_signals(signals)
    if held and loss_signals:
        signals["notes"] = [
            f"{'; '.join(text for _, text in loss_signals)}; but validation accuracy went from "
            f"{trend[0]:.3f} to {trend[2]:.3f}: the model grew more confident, not worse, so "
            "this is not read as overfitting"
        ]
    elif loss_signals:
        reasons_over += [text for _, text in loss_signals]
        signals["overfit_signal"] = loss_signals[0][0]
    if trend is not None and trend[1] - trend[2] > ACCURACY_FALL:
        reasons_over.append(
            f"validation accuracy fell from its best {trend[1]:.3f} to {trend[2]:.3f} at the end"
        )
        signals["overfit_signal"] = signals["overfit_signal"] or "validation accuracy"
    if reasons_over and len(val) >= 3 and best_i + 1 <= EARLY_BEST_FRACTION * len(val):
        reasons_over.append(
            f"the best epoch ({signals['best_loss_epoch']}) fell in the first half of "
            f"the {len(val)} epochs run"
        )
    still_falling = best_i == len(val) - 1 and val[-1] < (1 - STILL_FALLING) * val[-2]
    return reasons_over, still_falling


def _verdict(
    reasons_under: list[str],
    reasons_over: list[str],
    still_falling: bool,
    history: dict,
    val: list[float],
    notes: list[str] = (),
) -> tuple[str, list[str]]:
    """Rules 1 to 4 of `diagnose`, in order: the verdict and its reasons (`notes`: signals
    read but not counted, said beside the reasons)."""
    notes = list(notes)
    if reasons_under:
        return "underfitting", reasons_under
    if reasons_over:
        return "overfitting", reasons_over + notes
    if still_falling and not history.get("early_stopped"):
        return "underfitting", [
            f"validation loss was still falling at the last epoch ({val[-2]:.3f} -> {val[-1]:.3f}): "
            "training ended before the model converged"
        ]
    if len(val) < 2:
        return "healthy", ["fewer than two evaluations: too few to read a trend"]
    if notes:
        return "healthy", notes
    return "healthy", [
        "training loss is well below chance and validation loss levelled off without rising"
    ]


def write_diagnosis(output_dir: str | os.PathLike, diagnosis: dict) -> Path:
    """Write `diagnosis.json` to `output_dir`; returns its path."""
    path = Path(output_dir) / DIAGNOSIS_FILE
    write_text(path, json.dumps(diagnosis, indent=2))
    return path


def format_diagnosis(diagnosis: dict) -> str:
    """A few lines for the console: verdict, reasons, next steps."""
    lines = [f"Diagnosis: {diagnosis['verdict']}"]
    lines += [f"  - {r}" for r in diagnosis["reasons"]]
    lines += [f"  next: {s}" for s in diagnosis["next_steps"]]
    return "\n".join(lines)
