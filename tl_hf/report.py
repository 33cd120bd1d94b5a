"""What a run tells its user: the training monitor, the diagnosis, report.html and the model card.

The report step of the flow (... -> train -> report -> save/push):
- `MonitorCallback`: a `TrainerCallback` that records the history and, on the main process,
  rewrites `training_history.json` and redraws `training_curves.png` after every evaluation;
- `diagnose` / `write_diagnosis`: underfitting, overfitting or healthy, with the playbook's
  next step, read from the history;
- `write_report_html`: a self-contained `report.html`;
- `build_model_card`: the `README.md` model card with Hub metadata.
All of them read the files a finished run leaves in its output folder, so they also work on
an old run's folder.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any

# The one heavy import at module level: MonitorCallback subclasses it. `import tl_hf` does
# not import this module.
from transformers import TrainerCallback

HISTORY_FILE = "training_history.json"
CURVES_FILE = "training_curves.png"
DIAGNOSIS_FILE = "diagnosis.json"
REPORT_FILE = "report.html"
CARD_FILE = "README.md"
PREVIEW_FILE = "augment_preview.png"
PREDICTIONS_FILE = "test_predictions.json"

TASKS = {
    "text": "text-classification",
    "image": "image-classification",
    "audio": "audio-classification",
}

# Record the learning rates at about this many optimizer steps over a run: enough for a
# smooth curve, small enough that a 100k-step run keeps a small history file.
LR_POINTS = 1000


# ----------------------------------------------------------------------------- history


def _atomic_write(path: Path, data: bytes) -> None:
    # A reader watching the run (an image viewer, a notebook) never sees a half-written file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _metric_key(metric: str | None) -> str:
    metric = metric or "loss"
    return metric if metric.startswith("eval_") else f"eval_{metric}"


def best_eval(history: dict) -> dict | None:
    """The evaluation record that wins under the history's metric and direction.

    Ties go to the earliest, as in `Trainer` (a checkpoint replaces the best only when
    strictly better).
    """
    key = _metric_key(history.get("metric_for_best_model"))
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


def _epoch_int(epoch: float | None) -> int | None:
    return None if epoch is None else int(round(epoch))


def finalize_history(history: dict) -> dict:
    """Fill in `best_epoch`, `best_step` and `best_metric` from the evaluations (in place)."""
    best = best_eval(history)
    key = _metric_key(history.get("metric_for_best_model"))
    history["best_epoch"] = _epoch_int(best["epoch"]) if best else None
    history["best_step"] = best["step"] if best else None
    history["best_metric"] = best[key] if best else None
    if history.get("eval"):
        history["stopped_epoch"] = _epoch_int(history["eval"][-1]["epoch"])
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
    """

    def __init__(
        self,
        output_dir: str | os.PathLike | None = None,
        early_stopping_patience: int | None = None,
        plot: bool = True,
    ):
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.plot = plot
        self.history = new_history()
        self.history["early_stopping_patience"] = early_stopping_patience
        self.plot_writes = 0  # how many times the PNG was drawn (tests, watchers)
        self.last_marks: dict[str, Any] = {}  # what the last drawing marked
        self._training = False

    # -- events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._training = True
        self.history["metric_for_best_model"] = _metric_key(args.metric_for_best_model)
        greater = args.greater_is_better
        if greater is None:  # what Trainer infers: only names ending in "loss" are lower-is-better
            greater = not self.history["metric_for_best_model"].endswith("loss")
        self.history["greater_is_better"] = bool(greater)
        self.history["num_train_epochs"] = args.num_train_epochs
        config = getattr(model, "config", None)
        if config is not None and getattr(config, "num_labels", None):
            self.history["num_labels"] = int(config.num_labels)

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        every = max(1, (state.max_steps or 0) // LR_POINTS)
        if optimizer is not None and (state.global_step % every == 0 or state.global_step == 1):
            self._record_lr(state, optimizer)

    def on_log(self, args, state, control, logs=None, optimizer=None, **kwargs):
        if logs and "loss" in logs and self._training:
            self.history["train"].append(
                {"step": state.global_step, "epoch": state.epoch, "loss": float(logs["loss"])}
            )

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        record = {"step": state.global_step, "epoch": state.epoch}
        record.update({k: v for k, v in (metrics or {}).items() if isinstance(v, int | float)})
        if not self._training:
            self.history["after_training"].append(record)
            self._write(state, draw=False)
            return
        self.history["eval"].append(record)
        finalize_history(self.history)
        self._write(state, draw=True)

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False
        finalize_history(self.history)
        # EarlyStoppingCallback ends training before max_steps; nothing else does.
        self.history["early_stopped"] = bool(
            state.max_steps and state.global_step < state.max_steps
        )
        self.history["finished"] = True
        self._write(state, draw=True)

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
        self.output_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.output_dir / HISTORY_FILE, json.dumps(self.history, indent=2).encode())
        if draw and self.plot and self.history["eval"]:
            self.last_marks = write_training_curves(self.history, self.output_dir / CURVES_FILE)
            self.plot_writes += 1

    def on_init_end(self, args, state, control, **kwargs):
        if self.output_dir is None:
            self.output_dir = Path(args.output_dir)


def _mean_loss_per_epoch(train: list[dict]) -> dict[int, float]:
    """Mean training loss of the logging steps that fall in each epoch (1-based)."""
    sums: dict[int, list[float]] = {}
    for row in train:
        epoch = max(1, math.ceil((row["epoch"] or 0) - 1e-9))
        sums.setdefault(epoch, []).append(row["loss"])
    return {e: sum(v) / len(v) for e, v in sums.items()}


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
    has_lr = any(r["lr"] for r in history.get("learning_rates", []))
    fig, axes = plt.subplots(2 if has_lr else 1, 1, figsize=(8, 7 if has_lr else 4), squeeze=False)
    ax = axes[0][0]
    train = history.get("train", [])
    if train:
        ax.plot(
            [r["epoch"] for r in train],
            [r["loss"] for r in train],
            color="tab:blue",
            alpha=0.35,
            lw=1,
            label="train loss (per logging step)",
        )
        means = _mean_loss_per_epoch(train)
        ax.plot(
            list(means),
            list(means.values()),
            "o-",
            color="tab:blue",
            label="train loss (epoch mean)",
        )
    if evals:
        ax.plot(
            [e["epoch"] for e in evals],
            [e["eval_loss"] for e in evals],
            "s-",
            color="tab:orange",
            label="validation loss",
        )
    marks: dict[str, Any] = {"best_epoch": history.get("best_epoch"), "stop_epoch": None}
    best = best_eval(history)
    if best is not None:
        ax.axvline(best["epoch"], color="tab:green", ls="--", lw=1.2)
        metric = history.get("metric_for_best_model", "eval_loss")
        ax.annotate(
            f"best epoch {marks['best_epoch']}: restored checkpoint\n({metric} = {best[_metric_key(metric)]:.4g})",
            xy=(best["epoch"], best.get("eval_loss", best[_metric_key(metric)])),
            xytext=(8, 20),
            textcoords="offset points",
            color="tab:green",
            fontsize=8,
            arrowprops={"arrowstyle": "->", "color": "tab:green"},
        )
    if history.get("early_stopped") and evals:
        last = evals[-1]
        marks["stop_epoch"] = _epoch_int(last["epoch"])
        patience = history.get("early_stopping_patience")
        label = "early stopping triggered" + (f" (patience {patience})" if patience else "")
        ax.plot([last["epoch"]], [last["eval_loss"]], "X", color="tab:red", ms=12, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if has_lr:
        ax = axes[1][0]
        rows = history["learning_rates"]
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
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    _atomic_write(Path(path), buffer.getvalue())
    return marks


# ----------------------------------------------------------------------------- diagnosis

# Thresholds of `diagnose` (see its docstring).
UNDERFIT_CHANCE_FRACTION = 0.5
OVERFIT_RISE = 0.10
OVERFIT_GAP_RATIO = 0.5
OVERFIT_GAP_MIN = 0.1
STILL_FALLING = 0.01
EARLY_BEST_FRACTION = 0.5


def _next_steps(verdict: str, strategy: str | None, still_falling: bool) -> list[str]:
    if verdict == "underfitting":
        steps = []
        if strategy == "frozen":
            steps.append(
                "unfreeze more layers: --trainable_layers K (top K blocks) or --strategy llrd"
            )
        else:
            steps.append("a larger pretrained checkpoint (--model_name_or_path)")
        steps.append("more epochs (--num_train_epochs) or a higher --learning_rate")
        if strategy != "frozen":
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
    - generalisation gap: `train < 0.5 * val_final` and `val_final - train > 0.1`;
    - best epoch early: the best epoch fell in the first half of the epochs run (3+ evals);
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
        strategy: "frozen", "full" or "llrd", to tailor the next step.
        num_labels: Number of classes (default: `history["num_labels"]`).

    Returns:
        `{"verdict", "reasons": [str], "next_steps": [str], "signals": {...}}`.
    """
    evals = [e for e in history.get("eval", []) if e.get("eval_loss") is not None]
    train = history.get("train", [])
    num_labels = num_labels or history.get("num_labels")
    chance = math.log(num_labels) if num_labels and num_labels > 1 else None
    means = _mean_loss_per_epoch(train) if train else {}
    train_final = means[max(means)] if means else None
    val = [e["eval_loss"] for e in evals]
    val_best = min(val) if val else None
    val_final = val[-1] if val else None
    best_i = val.index(val_best) if val else None
    signals: dict[str, Any] = {
        "train_loss_final": train_final,
        "val_loss_best": val_best,
        "val_loss_final": val_final,
        "chance_loss": chance,
        "num_evaluations": len(evals),
        "best_loss_epoch": _epoch_int(evals[best_i]["epoch"]) if evals else None,
        "early_stopped": bool(history.get("early_stopped")),
    }
    reasons_under, reasons_over = [], []
    train_high = (
        train_final is not None
        and chance is not None
        and (train_final > UNDERFIT_CHANCE_FRACTION * chance)
    )
    if train_high:
        reasons_under.append(
            f"final training loss {train_final:.3f} is above {UNDERFIT_CHANCE_FRACTION:g} x chance "
            f"(log {num_labels} = {chance:.3f}): the model does not fit its training data"
        )
    still_falling = False
    if len(evals) >= 2:
        rose = val_final > (1 + OVERFIT_RISE) * val_best
        if rose:
            reasons_over.append(
                f"validation loss rose from {val_best:.3f} (epoch {signals['best_loss_epoch']}) to "
                f"{val_final:.3f} at the end (more than {OVERFIT_RISE:.0%})"
            )
        if (
            train_final is not None
            and train_final < OVERFIT_GAP_RATIO * val_final
            and (val_final - train_final > OVERFIT_GAP_MIN)
        ):
            reasons_over.append(
                f"training loss {train_final:.3f} is less than {OVERFIT_GAP_RATIO:g} x validation loss "
                f"{val_final:.3f}: a large generalisation gap"
            )
        if reasons_over and len(evals) >= 3 and best_i + 1 <= EARLY_BEST_FRACTION * len(evals):
            reasons_over.append(
                f"the best epoch ({signals['best_loss_epoch']}) fell in the first half of "
                f"the {len(evals)} epochs run"
            )
        still_falling = best_i == len(val) - 1 and val[-1] < (1 - STILL_FALLING) * val[-2]
    signals["still_falling"] = still_falling
    if train_high:
        verdict, reasons = "underfitting", reasons_under
    elif reasons_over:
        verdict, reasons = "overfitting", reasons_over
    elif still_falling and not history.get("early_stopped"):
        verdict = "underfitting"
        reasons = [
            f"validation loss was still falling at the last epoch ({val[-2]:.3f} -> {val[-1]:.3f}): "
            "training ended before the model converged"
        ]
    else:
        verdict = "healthy"
        reasons = [
            "training loss is well below chance and validation loss levelled off without rising"
        ]
        if len(evals) < 2:
            reasons = ["fewer than two evaluations: too few to read a trend"]
    return {
        "verdict": verdict,
        "reasons": reasons,
        "next_steps": _next_steps(verdict, strategy, still_falling),
        "signals": signals,
    }


def write_diagnosis(output_dir: str | os.PathLike, diagnosis: dict) -> Path:
    """Write `diagnosis.json` to `output_dir`; returns its path."""
    path = Path(output_dir) / DIAGNOSIS_FILE
    path.write_text(json.dumps(diagnosis, indent=2))
    return path


def format_diagnosis(diagnosis: dict) -> str:
    """A few lines for the console: verdict, reasons, next steps."""
    lines = [f"Diagnosis: {diagnosis['verdict']}"]
    lines += [f"  - {r}" for r in diagnosis["reasons"]]
    lines += [f"  next: {s}" for s in diagnosis["next_steps"]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- output folder


def _read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    import yaml

    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}


def _load_run(output_dir: Path) -> dict[str, Any]:
    config = _read_json(output_dir / "config.json", {})
    id2label = config.get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=lambda k: int(k))]
    return {
        "results": _read_json(output_dir / "all_results.json", {}),
        "groups": _read_json(output_dir / "param_groups.json", []),
        "run": _read_yaml(output_dir / "run_config.yaml"),
        "config": config,
        "labels": labels,
        "history": load_history(output_dir),
        "diagnosis": _read_json(output_dir / DIAGNOSIS_FILE),
        "predictions": _read_json(output_dir / PREDICTIONS_FILE),
    }


def confusion_matrix(
    labels: list[int], predictions: list[int], num_classes: int
) -> list[list[int]]:
    """Counts: row = true class, column = predicted class."""
    matrix = [[0] * num_classes for _ in range(num_classes)]
    for t, p in zip(labels, predictions, strict=True):
        matrix[int(t)][int(p)] += 1
    return matrix


def _confusion_png(matrix: list[list[int]], names: list[str]) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    top = max((max(r) for r in matrix), default=0)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                matrix[i][j],
                ha="center",
                va="center",
                fontsize=8,
                color="white" if matrix[i][j] > top / 2 else "black",
            )
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


PER_CLASS_HEADER = ["label", "precision", "recall", "f1", "support"]


def _per_class_rows(results: dict) -> list[list[Any]]:
    """The test split's per-class report as table rows (report.html and the card)."""
    return [
        [name, m.get("precision"), m.get("recall"), m.get("f1"), m.get("support")]
        for name, m in (results.get("test_per_class") or {}).items()
    ]


def _metric_rows(results: dict) -> list[list[Any]]:
    rows = []
    for key, value in results.items():
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and key.split("_", 1)[0] in ("train", "eval", "test")
        ):
            rows.append([key, value])
    return rows


def write_report_html(output_dir: str | os.PathLike) -> str:
    """Write a self-contained `report.html` (images embedded) to `output_dir`.

    Sections appear for what the folder holds: curves, diagnosis, final metrics, per-class
    test metrics, confusion matrix (from `test_predictions.json`), parameter groups,
    augmentation preview, run configuration.

    Returns:
        The path of the report.
    """
    root = Path(output_dir)
    run = _load_run(root)
    results, cfg = run["results"], run["run"]
    title = f"tl-hf report: {cfg.get('model_name_or_path') or root.name}"
    parts = [f"<h1>{html.escape(title)}</h1>"]
    summary = [
        ["modality", cfg.get("modality")],
        ["dataset", cfg.get("dataset_name")],
        ["strategy", results.get("strategy") or cfg.get("strategy")],
        ["labels", ", ".join(run["labels"])],
        ["best epoch", results.get("best_epoch")],
        ["stopped epoch", results.get("stopped_epoch")],
        ["early stopped", results.get("early_stopped")],
        ["patience", results.get("early_stopping_patience", cfg.get("early_stopping_patience"))],
    ]
    parts.append(_table([r for r in summary if r[1] not in (None, "")], ["", ""]))
    if (root / CURVES_FILE).is_file():
        parts += [
            "<h2>Training curves</h2>",
            _img((root / CURVES_FILE).read_bytes(), "training curves"),
        ]
    diagnosis = run["diagnosis"]
    if diagnosis is None and run["history"]:
        diagnosis = diagnose(run["history"], strategy=cfg.get("strategy"))
    if diagnosis:
        parts.append(f"<h2>Diagnosis: {html.escape(diagnosis['verdict'])}</h2><ul>")
        parts += [f"<li>{html.escape(r)}</li>" for r in diagnosis["reasons"]]
        parts.append("</ul><p>Next steps:</p><ul>")
        parts += [f"<li>{html.escape(s)}</li>" for s in diagnosis["next_steps"]]
        parts.append("</ul>")
    if results:
        parts += ["<h2>Final metrics</h2>", _table(_metric_rows(results), ["metric", "value"])]
    per_class = _per_class_rows(results)
    if per_class:
        parts += ["<h2>Per-class test metrics</h2>", _table(per_class, PER_CLASS_HEADER)]
    predictions = run["predictions"]
    if predictions:
        names = predictions.get("label_names") or run["labels"]
        matrix = confusion_matrix(predictions["labels"], predictions["predictions"], len(names))
        parts += [
            "<h2>Confusion matrix (test)</h2>",
            _img(_confusion_png(matrix, names), "confusion matrix"),
            _table(
                [[n, *row] for n, row in zip(names, matrix, strict=True)],
                ["true \\ predicted", *names],
            ),
        ]
    if run["groups"]:
        rows = [
            [g.get("name"), g.get("depth"), g.get("num_params"), g.get("lr"), g.get("weight_decay")]
            for g in run["groups"]
        ]
        parts += [
            "<h2>Parameter groups</h2>",
            _table(rows, ["group", "depth", "parameters", "lr", "weight decay"]),
        ]
    if (root / PREVIEW_FILE).is_file():
        parts += [
            "<h2>Augmentation preview</h2>",
            _img((root / PREVIEW_FILE).read_bytes(), "augmentation preview"),
        ]
    if cfg:
        parts += [
            "<h2>Run configuration</h2>",
            _table([[k, v] for k, v in sorted(cfg.items())], ["argument", "value"]),
        ]
    style = (
        "body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:left;font-size:90%}img{max-width:100%}"
    )
    page = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
    path = root / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return str(path)


# ----------------------------------------------------------------------------- model card

_NOT_METRICS = {
    "loss",
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "samples",
    "epoch",
    "per_class",
}


def is_hub_id(name: str | None) -> bool:
    """Whether `name` reads as a Hub repo id (not a local path or a data file)."""
    if not name or os.path.exists(name) or name.startswith((".", "/", "~")):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    suffix = Path(name).suffix.lower()
    return suffix not in {".csv", ".json", ".jsonl", ".parquet", ".txt", ".tsv", ".arrow"}


def card_eval_results(results: dict, task: str, dataset_id: str, dataset_name: str) -> list:
    """`EvalResult`s for the validation and test metrics of `all_results.json` (losses excluded)."""
    from huggingface_hub import EvalResult

    out = []
    for prefix, split in (("eval", "validation"), ("test", "test")):
        for key, value in results.items():
            if (
                not key.startswith(prefix + "_")
                or isinstance(value, bool)
                or not isinstance(value, int | float)
            ):
                continue
            metric = key[len(prefix) + 1 :]
            if metric in _NOT_METRICS:
                continue
            out.append(
                EvalResult(
                    task_type=task,
                    task_name=task.replace("-", " ").title(),
                    dataset_type=dataset_id,
                    dataset_name=dataset_name,
                    dataset_split=split,
                    metric_type=metric,
                    metric_value=float(value),
                    metric_name=f"{'Validation' if prefix == 'eval' else 'Test'} {metric}",
                )
            )
    return out


def _versions() -> list[list[str]]:
    from importlib.metadata import PackageNotFoundError, version

    rows = []
    for package in ("tl-hf", "transformers", "torch", "datasets", "accelerate", "huggingface_hub"):
        try:
            rows.append([package, version(package)])
        except PackageNotFoundError:
            continue
    return rows


def _md_table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


_EXAMPLE_INPUT = {
    "text": '"This is wonderful!"',
    "image": '"path/to/image.jpg"',
    "audio": '"path/to/clip.wav"',
}


def build_model_card(output_dir: str | os.PathLike) -> str:
    """Write the model card `README.md` to `output_dir` from the files of a finished run.

    The YAML metadata holds what the Hub reads: `library_name`, `pipeline_tag`,
    `base_model` and `datasets` (only when they are Hub ids, not local paths), `metrics`,
    `tags` and a `model-index` with the validation and test results of
    `all_results.json`.

    Returns:
        The path of the card.
    """
    from huggingface_hub import ModelCard, ModelCardData

    root = Path(output_dir)
    run = _load_run(root)
    results, cfg, groups = run["results"], run["run"], run["groups"]
    modality = cfg.get("modality") or "text"
    task = TASKS.get(modality, "text-classification")
    base = cfg.get("model_name_or_path") or run["config"].get("_name_or_path")
    dataset = cfg.get("dataset_name") or cfg.get("train_file")
    base_is_hub, data_is_hub = is_hub_id(base), is_hub_id(dataset)
    repo = cfg.get("hub_model_id") or root.resolve().name
    dataset_label = dataset if dataset else "local data"
    evals = card_eval_results(
        results, task, dataset if data_is_hub else "local", str(dataset_label)
    )
    strategy = results.get("strategy") or cfg.get("strategy")
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=task,
        base_model=base if base_is_hub else None,
        datasets=[dataset] if data_is_hub else None,
        metrics=sorted({r.metric_type for r in evals}) or None,
        tags=["tl-hf", task, "transfer-learning", *([f"strategy-{strategy}"] if strategy else [])],
        model_name=repo,
        eval_results=evals or None,
    )
    where = (
        f"[{base}](https://huggingface.co/{base})"
        if base_is_hub
        else f"`{base}` (a local checkpoint)"
    )
    data_where = (
        f"[{dataset}](https://huggingface.co/datasets/{dataset})"
        if data_is_hub
        else f"`{dataset_label}` (local)"
    )
    lines = [
        f"# {repo}",
        "",
        f"A {task.replace('-', ' ')} model fine-tuned from {where} on {data_where} with "
        f"tl-hf ({strategy} strategy).",
        "",
    ]
    if run["labels"]:
        lines += [
            f"**Labels** ({len(run['labels'])}): " + ", ".join(f"`{x}`" for x in run["labels"]),
            "",
        ]
    lines += [
        "## Usage",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("{task}", model="{repo}")',
        f"classifier({_EXAMPLE_INPUT.get(modality, '...')})",
        "```",
        "",
    ]
    lines += ["## Results", ""]
    metric_rows = _metric_rows(results)
    if metric_rows:
        lines += [_md_table(metric_rows, ["metric", "value"]), ""]
    per_class = _per_class_rows(results)
    if per_class:
        lines += [
            "Per class (test):",
            "",
            _md_table(per_class, PER_CLASS_HEADER),
            "",
        ]
    lines += [
        "## Training",
        "",
        f"- Strategy: **{strategy}**"
        + (f", LLRD decay {cfg.get('llrd_decay')}" if strategy == "llrd" else "")
        + (
            f", top {cfg.get('trainable_layers')} layers trainable"
            if strategy == "frozen" and cfg.get("trainable_layers")
            else ""
        ),
        f"- Learning rate {cfg.get('learning_rate')}, up to {cfg.get('num_train_epochs')} epochs, "
        f"seed {cfg.get('seed')}",
    ]
    augment = cfg.get("augment")
    if augment:
        lines.append(
            f"- Augmentations: {', '.join(f'`{a}`' for a in augment)} "
            f"(mode {cfg.get('augment_mode')}, {cfg.get('augment_copies')} copies)"
        )
    else:
        lines.append("- Augmentations: none")
    patience = results.get("early_stopping_patience", cfg.get("early_stopping_patience"))
    if results.get("best_epoch") is not None:
        stop = "stopped early" if results.get("early_stopped") else "ran all epochs"
        lines.append(
            f"- Early stopping on `{results.get('metric_for_best_model', 'eval_loss')}` with patience "
            f"{patience}: {stop} at epoch {results.get('stopped_epoch')}; the best epoch, "
            f"{results.get('best_epoch')}, is the checkpoint saved here"
        )
    lines.append("")
    if groups:
        rows = [
            [g.get("name"), g.get("depth"), g.get("num_params"), g.get("lr"), g.get("weight_decay")]
            for g in groups
        ]
        lines += [
            "### Parameter groups",
            "",
            _md_table(rows, ["group", "depth", "parameters", "lr", "weight decay"]),
            "",
        ]
    if (root / CURVES_FILE).is_file():
        lines += ["### Training curves", "", f"![training curves]({CURVES_FILE})", ""]
    if run["diagnosis"]:
        lines += [
            f"Diagnosis: **{run['diagnosis']['verdict']}**. "
            + " ".join(run["diagnosis"]["reasons"]),
            "",
        ]
    lines += ["## Framework versions", "", *[f"- {p} {v}" for p, v in _versions()], ""]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    path = root / CARD_FILE
    card.save(path)
    return str(path)
