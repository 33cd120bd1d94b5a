"""`report.html`: one self-contained page (images inline) of a finished run: curves,
diagnosis, metrics, per-class results, confusion matrix, parameter groups, augmentation
preview and the run configuration."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

from tl_hf.report.card import base_model_of
from tl_hf.report.card_sections import GROUP_HEADER, group_rows
from tl_hf.report.diagnosis import diagnose
from tl_hf.report.folder import (
    PER_CLASS_HEADER,
    calibration_lines,
    fmt,
    load_run,
    metric_rows,
    per_class_rows,
)
from tl_hf.report.history import CURVES_FILE, PREVIEW_FILE, REPORT_FILE, atomic_write
from tl_hf.report.live import PAGE_STYLE, live_payload, mark_final, page, render_monitor
from tl_hf.report.share import shareable

# the static pages' style: the live page's, with ruled tables (report.html, eval_<name>/)
REPORT_STYLE = PAGE_STYLE + (
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
    "text-align:left;font-size:90%}img{max-width:100%}"
)


def confusion_matrix(
    labels: list[int], predictions: list[int], num_classes: int
) -> list[list[int]]:
    """Counts: row = true class, column = predicted class."""
    matrix = [[0] * num_classes for _ in range(num_classes)]
    for t, p in zip(labels, predictions, strict=True):
        matrix[int(t)][int(p)] += 1
    return matrix


def confusion_table(matrix: list[list[int]], names: list[str]) -> str:
    """The confusion matrix as an HTML table, each cell shaded by its count (darkest = the
    largest); no image, so writing the report needs no plotting library."""
    top = max((max(r) for r in matrix), default=0) or 1
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["true \\ predicted", *names])
    body = ""
    for name, row in zip(names, matrix, strict=True):
        cells = "".join(
            f'<td style="background:rgba(31,119,180,{0.85 * c / top:.2f})'
            + (";color:white" if c > top / 2 else "")
            + f'">{c}</td>'
            for c in row
        )
        body += f"<tr><th>{html.escape(name)}</th>{cells}</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def img_tag(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def html_table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report_html(output_dir: str | os.PathLike, results: dict | None = None) -> str:
    """Write a self-contained `report.html` (images embedded) to `output_dir`.

    Sections appear for what the folder holds: curves, diagnosis, final metrics, per-class
    test metrics, confusion matrix (from `test_predictions.json`), parameter groups,
    augmentation preview, run configuration.

    Args:
        output_dir: The run's folder.
        results: The run's results when `all_results.json` is not written yet.

    Returns:
        The path of the report.
    """
    root = Path(output_dir)
    run = load_run(root, results)
    # the report is pushed beside the card: no local absolute path in it (share.py)
    results, cfg = shareable(run["results"]), shareable(run["run"])
    base_name = base_model_of(cfg)[1]
    title = (
        f"tl-hf report: {base_name} ({root.resolve().name})"
        if base_name
        else (f"tl-hf report: {root.resolve().name}")
    )
    parts = [f"<h1>{html.escape(title)}</h1>", *_summary_parts(run, results, cfg)]
    parts += _curve_parts(root, run)
    parts += _diagnosis_parts(run, cfg)
    parts += _result_parts(run, results)
    parts += _setup_parts(root, run, cfg)
    path = root / REPORT_FILE
    atomic_write(path, page(title, "".join(parts), REPORT_STYLE).encode())
    mark_final(root)  # a live page still open in a browser reloads into this one
    return str(path)


def _summary_parts(run: dict, results: dict, cfg: dict) -> list[str]:
    """The run at a glance: modality, data, strategy, labels, epochs, stopping."""
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
    summary = [r for r in summary if r[1] not in (None, "")]
    return [html_table(summary, ["", ""])] if summary else []


def _curve_parts(root: Path, run: dict) -> list[str]:
    """The training curves: the live monitor's charts, and the PNG folded away."""
    parts = []
    if run["history"]:
        # the live monitor, frozen: same interactive charts, data inline, no polling
        parts += [
            "<h2>Training curves</h2>",
            render_monitor(live_payload(run["history"], final=True)),
        ]
    if (root / CURVES_FILE).is_file():
        image = img_tag((root / CURVES_FILE).read_bytes(), "training curves")
        parts.append(f"<details><summary>Training curves as an image</summary>{image}</details>")
    return parts


def _diagnosis_parts(run: dict, cfg: dict) -> list[str]:
    """The diagnosis (read now from the history when the folder holds none) and next steps."""
    diagnosis = run["diagnosis"]
    if diagnosis is None and run["history"]:
        diagnosis = diagnose(run["history"], strategy=cfg.get("strategy"))
    if not diagnosis:
        return []
    parts = [f"<h2>Diagnosis: {html.escape(diagnosis['verdict'])}</h2><ul>"]
    parts += [f"<li>{html.escape(r)}</li>" for r in diagnosis["reasons"]]
    parts.append("</ul><p>Next steps:</p><ul>")
    parts += [f"<li>{html.escape(s)}</li>" for s in diagnosis["next_steps"]]
    parts.append("</ul>")
    return parts


def _result_parts(run: dict, results: dict) -> list[str]:
    """Final metrics, per-class test metrics and the test confusion matrix."""
    parts = []
    if results:
        parts += ["<h2>Final metrics</h2>", html_table(metric_rows(results), ["metric", "value"])]
    per_class = per_class_rows(results)
    if per_class:
        parts += ["<h2>Per-class test metrics</h2>", html_table(per_class, PER_CLASS_HEADER)]
    predictions = run["predictions"]
    if predictions:
        names = predictions.get("label_names") or run["labels"]
        matrix = confusion_matrix(predictions["labels"], predictions["predictions"], len(names))
        parts += ["<h2>Confusion matrix (test)</h2>", confusion_table(matrix, names)]
    calibration = calibration_lines(run.get("calibration"))
    if calibration:
        parts += ["<h2>Calibration</h2>"] + [f"<p>{html.escape(c)}</p>" for c in calibration]
    return parts


def _setup_parts(root: Path, run: dict, cfg: dict) -> list[str]:
    """How the run was set up: parameter groups, augmentation preview, configuration."""
    parts = []
    if run["groups"]:
        parts += [
            "<h2>Parameter groups</h2>",
            html_table(group_rows(run["groups"]), GROUP_HEADER),
        ]
    if (root / PREVIEW_FILE).is_file():
        parts += [
            "<h2>Augmentation preview</h2>",
            img_tag((root / PREVIEW_FILE).read_bytes(), "augmentation preview"),
        ]
    if cfg:
        parts += [
            "<h2>Run configuration</h2>",
            html_table([[k, v] for k, v in sorted(cfg.items())], ["argument", "value"]),
        ]
    return parts
