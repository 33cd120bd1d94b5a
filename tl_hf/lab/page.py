"""What the lab leaves: `lab_results.csv` / `.json` (one row per trial), the per-configuration
summary (mean +- std over seeds, ranked by validation) and `lab_report.html` (validation
curves of every trial overlaid, mean +- std bars, the table, the winner and its command)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from typing import Any

from tl_hf.report.folder import fmt

COLUMNS = (
    "number",
    "config",
    "strategy",
    "learning_rate",
    "trainable_layers",
    "llrd_decay",
    "augment_set",
    "seed",
    "epochs",
    "state",
    "objective_value",
    "best_epoch",
    "stopped_epoch",
    "pruned_at_epoch",
    "train_time_s",
    "wall_time_s",
    "trainable_params",
    "peak_memory_mb",
    "fail_reason",
    "model",
)


def trial_rows(trials) -> list[dict[str, Any]]:
    """One row per trial (an Optuna FrozenTrial), with its per-epoch validation values."""
    rows = []
    for t in trials:
        a = t.user_attrs
        state = t.state.name.lower()
        row = {c: a.get(c) for c in COLUMNS}
        row.update(
            key=a.get("key"),
            number=t.number,
            state="stopped"
            if a.get("stopped_by_user")
            else {
                "complete": "complete",
                "pruned": "pruned",
                "fail": "failed",
                "running": "running",
                "waiting": "waiting",
            }.get(state, state),
        )
        if row["objective_value"] is None and t.value is not None:
            row["objective_value"] = t.value
        row["curve"] = {int(k): float(v) for k, v in sorted(t.intermediate_values.items())}
        rows.append(row)
    return rows


def summarize(rows: list[dict], greater_is_better: bool) -> list[dict[str, Any]]:
    """Per configuration: mean and std of the objective over its complete seeds, ranked."""
    configs: dict[str, dict[str, Any]] = {}
    for row in rows:
        c = configs.setdefault(
            row["config"],
            {
                "config": row["config"],
                "values": [],
                "complete": 0,
                "pruned": 0,
                "failed": 0,
                "pending": 0,
                "strategy": row["strategy"],
            },
        )
        state = row["state"]
        if state == "complete" and row["objective_value"] is not None:
            c["values"].append(float(row["objective_value"]))
            c["complete"] += 1
        elif state in ("pruned", "failed", "stopped"):  # stopped in the page: counted as pruned
            c["failed" if state == "failed" else "pruned"] += 1
        else:
            c["pending"] += 1
    out = []
    for c in configs.values():
        values = c.pop("values")
        c["mean"] = sum(values) / len(values) if values else None
        c["std"] = (
            math.sqrt(sum((v - c["mean"]) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1
            else 0.0
            if values
            else None
        )
        out.append(c)
    sign = -1 if greater_is_better else 1
    out.sort(key=lambda c: (c["mean"] is None, sign * (c["mean"] or 0.0)))
    for rank, c in enumerate(out, start=1):
        c["rank"] = rank if c["mean"] is not None else None
    return out


def write_results(
    lab_dir: str, rows: list[dict], summary: list[dict], extra: dict[str, Any]
) -> None:
    """`lab_results.csv`, `lab_results.json` (rows, summary, winner, skipped)."""
    from tl_hf.output.save import write_json

    write_json(
        os.path.join(lab_dir, "lab_results.json"), {"trials": rows, "summary": summary, **extra}
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    from tl_hf.output.atomic import write_text

    write_text(os.path.join(lab_dir, "lab_results.csv"), buffer.getvalue())


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _charts(rows: list[dict], summary: list[dict], objective: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10")
    index = {c["config"]: i for i, c in enumerate(summary)}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labelled = set()
    for row in rows:
        curve = row["curve"]
        if not curve:
            continue
        colour = colours(index[row["config"]] % 10)
        label = row["config"] if row["config"] not in labelled else None
        labelled.add(row["config"])
        ax.plot(
            list(curve),
            list(curve.values()),
            ".-",
            lw=0.9,
            ms=4,
            alpha=0.8,
            color=colour,
            label=label,
        )
        if row["state"] == "pruned":
            last = max(curve)
            ax.plot([last], [curve[last]], "X", ms=9, color=colour)
    ax.plot([], [], "X", color="grey", label="pruned here")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {objective}")
    ax.set_title(
        "Validation per epoch, every trial (one colour per configuration, one line per seed)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    parts = [_png(fig)]
    ranked = [c for c in summary if c["mean"] is not None]
    if ranked:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(ranked) + 1.2))
        names = [c["config"] for c in ranked][::-1]
        ax.barh(
            names,
            [c["mean"] for c in ranked][::-1],
            xerr=[c["std"] for c in ranked][::-1],
            color=[colours(index[n] % 10) for n in names],
            capsize=3,
        )
        low = min(c["mean"] - c["std"] for c in ranked)
        high = max(c["mean"] + c["std"] for c in ranked)
        pad = max((high - low) * 0.15, 1e-3)
        ax.set_xlim(low - pad, high + pad)
        ax.set_xlabel(f"validation {objective}: mean +- std over seeds")
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3, axis="x")
        parts.append(_png(fig))
    return "".join(parts)


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary_table(summary: list[dict], objective: str, not_run: bool = True) -> str:
    """The configurations, ranked: mean and std of `objective` and the trials' states (the
    column of trials not run only with `not_run`)."""
    keys = ["rank", "config", "mean", "std", "complete", "pruned", "failed"]
    header = ["rank", "configuration", f"mean {objective}", "std", "complete", "pruned", "failed"]
    if not_run:
        keys.append("pending")
        header.append("not run")
    return _table([[c[k] for k in keys] for c in summary], header)


def _test_metrics(metrics: dict[str, Any]) -> str:
    """The winner's test metrics (the test split is evaluated once, for the winner only)."""
    return "<p>Test split, evaluated once, for the winner only:</p>" + _table(
        [[k, v] for k, v in metrics.items()], ["metric", "value"]
    )


def _winner_parts(winner: dict, objective: str) -> list[str]:
    """The winner: its validation score, test metrics, folder and the command that reruns it."""
    parts = [
        "<h2>Winner (chosen on validation)</h2>",
        f"<p><b>{html.escape(winner['config'])}</b>: validation {objective} "
        f"{fmt(winner['mean'])} +- {fmt(winner['std'])} over {winner['complete']} seed(s).</p>",
    ]
    if winner.get("test_metrics"):
        parts.append(_test_metrics(winner["test_metrics"]))
    if winner.get("folder"):
        parts.append(f"<p>Complete run folder: <code>{html.escape(winner['folder'])}</code></p>")
    parts.append(f"<p>Reproduce it:</p><pre>{html.escape(winner['command'])}</pre>")
    return parts


_TRIAL_COLUMNS = (
    ("number", "#"),
    ("config", "configuration"),
    ("seed", "seed"),
    ("state", "state"),
    ("objective_value", None),  # headed by the objective's name
    ("best_epoch", "best epoch"),
    ("stopped_epoch", "stopped"),
    ("pruned_at_epoch", "pruned at"),
    ("train_time_s", "train s"),
    ("trainable_params", "trainable params"),
    ("peak_memory_mb", "peak MB"),
    ("fail_reason", "reason"),
)


def _trials_table(rows: list[dict], objective: str) -> str:
    """Every trial: its configuration, seed, state, score, epochs, cost."""
    return _table(
        [[r[key] for key, _ in _TRIAL_COLUMNS] for r in rows],
        [head or objective for _, head in _TRIAL_COLUMNS],
    )


def write_lab_report(
    lab_dir: str,
    rows: list[dict],
    summary: list[dict],
    objective: str,
    winner: dict | None,
    skipped: list[str],
    title: str,
) -> str:
    """Write the self-contained `lab_report.html`; returns its path."""
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        _charts(rows, summary, objective),
        "<h2>Configurations</h2>",
        _summary_table(summary, objective),
    ]
    if winner:
        parts += _winner_parts(winner, objective)
    if skipped:
        parts += [
            f"<h2>Not run ({len(skipped)}): the time budget ran out</h2>",
            "<ul>" + "".join(f"<li>{html.escape(k)}</li>" for k in skipped) + "</ul>",
        ]
    parts += ["<h2>Trials</h2>", _trials_table(rows, objective)]
    path = os.path.join(lab_dir, "lab_report.html")
    write_page(path, title, "".join(parts))
    return path


PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
    "text-align:left;font-size:85%}img{max-width:100%}pre{background:#f4f4f4;padding:8px;"
    "white-space:pre-wrap}"
)


def write_page(path: str, title: str, body: str) -> None:
    """A self-contained HTML page (the lab's and the playbook's reports), written atomically."""
    from tl_hf.output.atomic import write_text

    write_text(
        path,
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{PAGE_STYLE}</style></head><body>{body}</body></html>",
    )


def load_results(lab_dir: str) -> dict:
    with open(os.path.join(lab_dir, "lab_results.json")) as f:
        return json.load(f)
