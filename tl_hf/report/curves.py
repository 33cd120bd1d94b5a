"""`training_curves.png`: losses against epoch (best epoch and early-stopping point marked)
and the learning rate of every parameter group."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tl_hf.report.history as _history
from tl_hf.report.history import (
    best_eval,
    epoch_int,
    finalize_history,
    mean_loss_per_epoch,
    metric_key,
)


def write_training_curves(history: dict, path: str | os.PathLike) -> dict[str, Any]:
    """Draw the history to a PNG: losses against epoch on top, learning rate per group below.

    The best epoch is marked and labelled as the restored checkpoint; when training
    stopped early the trigger point is marked too.

    Returns:
        What was marked: `{"best_epoch": int | None, "stop_epoch": int | None}`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = finalize_history(dict(history))
    evals = [e for e in history.get("eval", []) if "eval_loss" in e]
    has_lr = any(
        r["lr"]
        for rows in [history.get("learning_rates", [])]
        + [p.get("learning_rates", []) for p in history.get("phases", [])]
        for r in rows
    )
    fig, axes = plt.subplots(2 if has_lr else 1, 1, figsize=(8, 7 if has_lr else 4), squeeze=False)
    ax = axes[0][0]
    _plot_main_losses(ax, history.get("train", []), evals)
    phases = _shifted_phases(history)
    _plot_phase_losses(ax, phases)
    marks = _mark_best_and_stop(ax, history, evals)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if has_lr:
        _plot_learning_rates(axes[1][0], history, phases)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    _history.atomic_write(Path(path), buffer.getvalue())
    return marks


def _plot_main_losses(ax, train: list[dict], evals: list[dict]) -> None:
    """The main training's losses: per logging step, epoch means, validation."""
    if train:
        ax.plot(
            [r["epoch"] for r in train],
            [r["loss"] for r in train],
            color="tab:blue",
            alpha=0.35,
            lw=1,
            label="train loss (per logging step)",
        )
        means = mean_loss_per_epoch(train)
        ax.plot(
            list(means),
            list(means.values()),
            "o-",
            color="tab:blue",
            label="train loss (epoch mean)",
        )
    for key, style, alpha, label in (
        ("eval_loss", "s-", 1.0, "validation loss"),
        ("eval_scaled_loss", "s--", 0.6, "validation loss after temperature scaling"),
    ):
        rows = [e for e in evals if key in e]
        if rows:
            ax.plot(
                [e["epoch"] for e in rows],
                [e[key] for e in rows],
                style,
                color="tab:orange",
                alpha=alpha,
                label=label,
            )


def _plot_phase_losses(ax, phases: list[dict]) -> None:
    """The losses of the phases before the main training, and where the main training starts."""
    for phase in phases:
        label = phase["name"]
        if phase["train"]:
            ax.plot(*_xy(phase["train"], "loss"), color="tab:purple", alpha=0.35, lw=1)
        if phase["eval"]:
            ax.plot(
                *_xy(phase["eval"], "eval_loss"),
                "s--",
                color="tab:purple",
                label=f"{label}: validation loss",
            )
    if phases:
        ax.axvline(0, color="grey", ls=":", lw=1)
        ax.annotate(
            "main training starts",
            xy=(0, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color="grey",
        )


def _mark_best_and_stop(ax, history: dict, evals: list[dict]) -> dict[str, Any]:
    """Mark the best epoch (the restored checkpoint) and the early-stopping point; returns
    what was marked."""
    marks: dict[str, Any] = {"best_epoch": history.get("best_epoch"), "stop_epoch": None}
    best = best_eval(history)
    metric = history.get("metric_for_best_model", "eval_loss")
    # the marks sit on the curve the rule follows when it is drawn here (a loss), else on the loss
    drawn = metric_key(metric) if metric_key(metric) in ("eval_loss", "eval_scaled_loss") else None
    if best is not None:
        ax.axvline(best["epoch"], color="tab:green", ls="--", lw=1.2)
        ax.annotate(
            f"best epoch {marks['best_epoch']}: restored checkpoint\n({metric} = {best[metric_key(metric)]:.4g})",
            xy=(best["epoch"], best.get(drawn or "eval_loss", best[metric_key(metric)])),
            xytext=(8, -30),
            textcoords="offset points",
            color="tab:green",
            fontsize=8,
            arrowprops={"arrowstyle": "->", "color": "tab:green"},
        )
    if history.get("early_stopped") and evals:
        last = evals[-1]
        marks["stop_epoch"] = epoch_int(last["epoch"])
        patience = history.get("early_stopping_patience")
        label = "early stopping triggered" + (f" (patience {patience})" if patience else "")
        y = last.get(drawn or "eval_loss", last["eval_loss"])
        ax.plot([last["epoch"]], [y], "X", color="tab:red", ms=12, label=label)
    return marks


def _plot_learning_rates(ax, history: dict, phases: list[dict]) -> None:
    """The lower panel: every parameter group's learning rate, the phases' first."""
    rows = [
        *(
            {**r, "lr": {f"{p['name']}: {k}": v for k, v in r["lr"].items()}}
            for p in phases
            for r in p["learning_rates"]
        ),
        *history["learning_rates"],
    ]
    names = list(dict.fromkeys(name for r in rows for name in r["lr"]))
    for name in names:
        points = [(r["epoch"], r["lr"][name]) for r in rows if r["lr"].get(name, 0) > 0]
        if points:
            ax.plot(*zip(*points, strict=True), lw=1.2, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning rate per parameter group")
    ax.grid(alpha=0.3, which="both")
    if names:
        ax.legend(fontsize=6, ncol=2 if len(names) > 6 else 1)


def _shifted_phases(history: dict) -> list[dict]:
    """The phases trained before the main training (LP-FT's linear probe), their epochs
    moved before 0 so the main training keeps its own epoch numbers (best epoch, stopping)."""
    phases = history.get("phases") or []
    offset = sum(p.get("epochs") or 0 for p in phases)
    shifted = []
    for phase in phases:

        def move(rows, by=offset):
            return [{**r, "epoch": (r.get("epoch") or 0) - by} for r in rows]

        shifted.append(
            {**phase, **{k: move(phase.get(k, [])) for k in ("train", "eval", "learning_rates")}}
        )
        offset -= phase.get("epochs") or 0
    return shifted


def _xy(rows: list[dict], key: str) -> tuple[list, list]:
    rows = [r for r in rows if key in r]
    return [r["epoch"] for r in rows], [r[key] for r in rows]
