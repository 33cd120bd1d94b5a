"""`MonitorCallback`: records the training history while the `Trainer` runs and, on the main
process, keeps the live `report.html` up to date from the first step (`live`), rewrites
`training_history.json` after every evaluation and redraws `training_curves.png` (after every
evaluation, or within a time budget, and at the end)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# The one heavy import at module level: MonitorCallback subclasses it. `import tl_hf` does
# not import this module.
from transformers import TrainerCallback

import tl_hf.report.history as _history
from tl_hf.report.curves import write_training_curves
from tl_hf.report.history import (
    CURVES_FILE,
    HISTORY_FILE,
    MONITOR_STATE,
    finalize_history,
    metric_key,
    new_history,
)
from tl_hf.report.live import live_payload, progress_fields, write_live


def load_monitor_state(checkpoint: str | os.PathLike) -> dict | None:
    """The history a checkpoint folder holds (None for a checkpoint made without tl-hf)."""
    path = Path(checkpoint) / MONITOR_STATE
    return json.loads(path.read_text()) if path.is_file() else None


# Record the learning rates at about this many optimizer steps over a run: enough for a
# smooth curve, small enough that a 100k-step run keeps a small history file.
LR_POINTS = 1000
# The live page's data is rewritten at most this often between evaluations (a fast GPU logs
# many steps a second; the page polls every 2 s), and never more often than LIVE_COST_SHARE
# of the time allows: a long run's history takes longer to write (bench/bench_live_report.py).
LIVE_MIN_INTERVAL_S = 1.0
LIVE_COST_SHARE = 0.02
TYPICAL_DRAW_SECONDS = 0.5  # drawing the curves (matplotlib's import aside) on a 2-core machine


class MonitorCallback(TrainerCallback):
    """Records the training history and redraws the curves after every evaluation.

    Add it to the `Trainer` (`callbacks=[..., MonitorCallback(output_dir)]`). On the main
    process (`state.is_world_process_zero`) it writes `training_history.json` and
    `training_curves.png` to `output_dir` (default: `args.output_dir`) after every
    evaluation and once more at the end of training, when the early-stopping outcome is
    known. Evaluations after training (the restored best model, a test set) go to
    `history["after_training"]`, not into the per-epoch curve.

    Args:
        output_dir: Where to write; default `args.output_dir`.
        early_stopping_patience: Shown on the plot and kept in the history.
        plot: Draw the PNG (the history JSON is always written).
        live: Keep the live `report.html` (and its data file `report.live.js`) up to date.
        title: The live page's title.
        draw_budget: When set (a fraction, e.g. 0.1), a drawing after an evaluation is skipped
            when drawing since the last one would take more than this share of the time
            between them (a drawing takes about half a second: on quick epochs it would
            cost more than the epochs); the drawing at the end of training always happens.
            None: redraw after every evaluation.
        resume_from: A checkpoint folder being resumed: the history recorded up to it (saved
            there by `on_save`) is loaded, so the curves, diagnosis and card cover every
            epoch, not only the resumed ones.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike | None = None,
        early_stopping_patience: int | None = None,
        plot: bool = True,
        live: bool = True,
        title: str = "tl-hf training monitor",
        draw_budget: float | None = None,
        resume_from: str | os.PathLike | None = None,
    ):
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.plot = plot
        self.live, self.title = live, title
        self.live_writes = 0  # how many times the live data was written (tests, watchers)
        self._started = time.time()
        self._last_live = 0.0
        self._live_interval = LIVE_MIN_INTERVAL_S
        self.history = new_history()
        self.history["early_stopping_patience"] = early_stopping_patience
        self.plot_writes = 0  # how many times the PNG was drawn (tests, watchers)
        self.last_marks: dict[str, Any] = {}  # what the last drawing marked
        self.write_seconds = 0.0  # time spent writing the history and drawing (--profile)
        self._drawn_key: Any = None  # what the last drawing showed
        self.draw_budget = draw_budget
        self._last_draw_end = 0.0
        self._last_draw_seconds = 0.0
        self._training = False
        if resume_from is not None:
            self.history = load_monitor_state(resume_from) or self.history

    # -- events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._training = True
        self._started = time.time()
        # before the first drawing its cost is not known: assume a typical one, so a run whose
        # first epochs take seconds is not slowed by a drawing (and matplotlib's import)
        self._last_draw_end = time.perf_counter()
        self._last_draw_seconds = TYPICAL_DRAW_SECONDS
        self.history["metric_for_best_model"] = metric_key(args.metric_for_best_model)
        greater = args.greater_is_better
        if greater is None:  # what Trainer infers: only names ending in "loss" are lower-is-better
            greater = not self.history["metric_for_best_model"].endswith("loss")
        self.history["greater_is_better"] = bool(greater)
        self.history["num_train_epochs"] = args.num_train_epochs
        config = getattr(model, "config", None)
        if config is not None and getattr(config, "num_labels", None):
            self.history["num_labels"] = int(config.num_labels)
        self._write_live(state, page_too=True)  # report.html exists before the first step

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        every = max(1, (state.max_steps or 0) // LR_POINTS)
        if optimizer is not None and (state.global_step % every == 0 or state.global_step == 1):
            self._record_lr(state, optimizer)

    def on_log(self, args, state, control, logs=None, optimizer=None, **kwargs):
        if logs and "loss" in logs and self._training:
            self.history["train"].append(
                {"step": state.global_step, "epoch": state.epoch, "loss": float(logs["loss"])}
            )
            if time.time() - self._last_live >= self._live_interval:
                self._write_live(state)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        record = {"step": state.global_step, "epoch": state.epoch}
        record.update({k: v for k, v in (metrics or {}).items() if isinstance(v, int | float)})
        if not self._training:
            self.history["after_training"].append(record)
            self._write(state, draw=False)
            return
        self.history["eval"].append(record)
        finalize_history(self.history)
        self._write(state, draw=self._worth_drawing())
        self._write_live(state)

    def on_save(self, args, state, control, **kwargs):
        # The history up to this checkpoint goes into it: a resumed run continues it. Written
        # after the Trainer's own files, so its presence marks the checkpoint complete.
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            _history.atomic_write(folder / MONITOR_STATE, json.dumps(self.history).encode())

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False
        finalize_history(self.history)
        # EarlyStoppingCallback ends training before max_steps; nothing else does.
        self.history["early_stopped"] = bool(
            state.max_steps and state.global_step < state.max_steps
        )
        self.history["finished"] = True
        self._write(state, draw=True)
        self._write_live(state)

    # -- helpers
    def _record_lr(self, state, optimizer) -> None:
        lrs = {}
        for i, group in enumerate(optimizer.param_groups):
            name = str(group.get("name", f"group_{i}"))
            lrs[name if name not in lrs else f"{name}_{i}"] = float(group["lr"])
        self.history["learning_rates"].append(
            {"step": state.global_step, "epoch": state.epoch, "lr": lrs}
        )

    def _write(self, state, draw: bool) -> None:
        # Under multi-process runs every rank sees the events; one writes.
        if not state.is_world_process_zero or self.output_dir is None:
            return
        start = time.perf_counter()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        _history.atomic_write(
            self.output_dir / HISTORY_FILE, json.dumps(self.history, indent=2).encode()
        )
        # A drawing takes a good part of a second; at the end of a run that was not stopped
        # early the picture is the last evaluation's again, so it is not redrawn.
        key = self._drawing_key()
        if draw and self.plot and self.history["eval"] and key != self._drawn_key:
            drawing = time.perf_counter()
            self.last_marks = write_training_curves(self.history, self.output_dir / CURVES_FILE)
            self.plot_writes += 1
            self._drawn_key = key
            self._last_draw_end = time.perf_counter()
            self._last_draw_seconds = self._last_draw_end - drawing
        self.write_seconds += time.perf_counter() - start

    def _worth_drawing(self) -> bool:
        if self.draw_budget is None:
            return True
        since = time.perf_counter() - self._last_draw_end
        return self._last_draw_seconds <= self.draw_budget * since

    def _drawing_key(self) -> tuple:
        """Everything `write_training_curves` draws from, in short."""
        h = self.history
        return (
            len(h["train"]),
            len(h["eval"]),
            len(h["learning_rates"]),
            h.get("best_epoch"),
            bool(h.get("early_stopped")),
            h.get("early_stopping_patience"),
        )

    def _write_live(self, state, page_too: bool = False) -> None:
        if not self.live or not state.is_world_process_zero or self.output_dir is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        began = time.time()
        payload = live_payload(self.history, **progress_fields(state, self._started))
        write_live(self.output_dir, payload, self.title, page_too)
        self._last_live = time.time()
        cost = self._last_live - began
        self._live_interval = max(LIVE_MIN_INTERVAL_S, cost / LIVE_COST_SHARE)
        self.live_writes += 1

    def on_init_end(self, args, state, control, **kwargs):
        if self.output_dir is None:
            self.output_dir = Path(args.output_dir)
