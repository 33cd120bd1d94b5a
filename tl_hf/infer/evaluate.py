"""`tl-hf evaluate OUTPUT_DIR --input LABELLED`: the run's report for new labelled data, as
`eval_<name>/` inside the run folder (`metrics.json` and `report.html`: accuracy, macro-F1,
loss, the per-class table and the confusion matrix of the run's report, the expected
calibration error before and after the run's temperature scaling).

Labels are matched by name (the run's `config.json` names its classes); rows whose label the
model never saw are counted apart, by label, and left out of the metrics."""

from __future__ import annotations

import html
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tl_hf.errors import UserError
from tl_hf.infer.predict import Skipped, parse, score_input

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"


def eval_name(input_path: str, name: str | None) -> str:
    """`eval_<name>`: `--name`, else the input's file or folder name without its suffix."""
    base = name or Path(os.path.abspath(input_path)).name.split(".")[0]
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("._") or "data"
    return f"eval_{cleaned}"


def _label_name(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def compute_evaluation(logits, labels: list[int], names: list[str], temperature: float) -> dict:
    """The metrics of the run's report from gathered logits and label indices."""
    from types import SimpleNamespace

    import numpy as np

    from tl_hf.report.html_report import confusion_matrix
    from tl_hf.training.metrics import (
        compute_metrics,
        expected_calibration_error,
        per_class_report,
        softmax,
    )

    logits = np.asarray(logits, dtype=np.float64)
    labels_array = np.asarray(labels, dtype=np.int64)
    metrics = compute_metrics(SimpleNamespace(predictions=logits, label_ids=labels_array))
    predictions = logits.argmax(-1)
    return {
        "accuracy": metrics["accuracy"],
        "f1": metrics["f1"],
        "loss": metrics["loss"],
        "samples": int(len(labels)),
        "ece": metrics["ece"],
        "ece_calibrated": expected_calibration_error(softmax(logits, temperature), labels_array),
        "temperature": temperature,
        "per_class": per_class_report(predictions, labels_array, names),
        "confusion_matrix": confusion_matrix(labels, predictions.tolist(), len(names)),
    }


def collect(run, source, batch_size: int, skip_bad: bool, skipped: Skipped):
    """(logits, label indices, unknown label counts, rows without a label) over `source`."""
    import torch

    index = {n: i for i, n in enumerate(run.names)}
    chunks, labels, unknown, missing = [], [], Counter(), 0
    for scored in score_input(run, source, batch_size, skip_bad, False, skipped):
        keep = []
        for i, raw in enumerate(scored.labels):
            name = _label_name(raw)
            if name is None:
                missing += 1
            elif name not in index:
                unknown[name] += 1
            else:
                keep.append(i)
                labels.append(index[name])
        if keep:
            chunks.append(scored.logits[keep])
    if not labels:
        raise UserError(
            f"no row of {source.path} has a label the model knows ({', '.join(run.names[:8])}"
            f"{' ...' if len(run.names) > 8 else ''}): check --label_column"
        )
    return torch.cat(chunks).numpy(), labels, dict(unknown), missing


def render_html(result: dict, names: list[str], title: str) -> str:
    from tl_hf.report.folder import PER_CLASS_HEADER, per_class_rows
    from tl_hf.report.html_report import REPORT_STYLE, confusion_table, html_table
    from tl_hf.report.live import page

    summary = [
        ["accuracy", result["accuracy"]],
        ["macro-F1", result["f1"]],
        ["loss", result["loss"]],
        ["examples", result["samples"]],
        ["expected calibration error (raw softmax)", result["ece"]],
        [
            f"expected calibration error (temperature {result['temperature']:.3g})",
            result["ece_calibrated"],
        ],
    ]
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Run: {html.escape(result['run'])}; input: {html.escape(result['input'])}</p>",
        html_table(summary, ["metric", "value"]),
        "<h2>Per class</h2>",
        html_table(per_class_rows(result, "per_class"), PER_CLASS_HEADER),
        "<h2>Confusion matrix</h2>",
        confusion_table(result["confusion_matrix"], names),
    ]
    if result["unknown_labels"]:
        rows = sorted(result["unknown_labels"].items(), key=lambda kv: -kv[1])
        parts += [
            "<h2>Labels the model never saw (left out of the metrics)</h2>",
            html_table([list(r) for r in rows], ["label", "rows"]),
        ]
    return page(title, "\n".join(parts), REPORT_STYLE)


def evaluate(argv: list[str]) -> int:
    """Evaluate a finished run on a labelled input (see the module docstring)."""
    from tl_hf.console import say
    from tl_hf.infer.inputs import open_input
    from tl_hf.infer.loaded import load_run, read_run_config, run_settings
    from tl_hf.output.atomic import write_json, write_text
    from tl_hf.output.ownership import claim, open_output_folder

    args = parse(argv, "tl-hf evaluate", __doc__)
    root = Path(args.output_dir)
    config = read_run_config(root)
    source = open_input(args.input, *run_settings(config), True, args.label_column)
    name = eval_name(args.input, args.name)
    folder = open_output_folder(
        str(root), allow_other_files=True, would_write=[name], what="tl-hf evaluate"
    )
    try:
        run = load_run(root, args.device, config, args.tta)
        skipped = Skipped()
        logits, labels, unknown, missing = collect(
            run, source, args.batch_size, args.skip_bad_files, skipped
        )
        temperature = 1.0 if args.no_calibration else run.temperature
        result = compute_evaluation(logits, labels, run.names, temperature)
        result.update(
            run=str(root),
            input=str(args.input),
            unknown_labels=unknown,
            unlabelled_rows=missing,
            skipped_rows=[{"row": r, "problem": p} for r, p in skipped.rows],
        )
        target = root / name
        target.mkdir(exist_ok=True)
        claim(str(root), [name])
        write_json(target / METRICS_FILE, result)
        write_text(target / REPORT_FILE, render_html(result, run.names, f"{name}: {root.name}"))
    finally:
        folder.release()
    say(
        f"{name}: accuracy {result['accuracy']:.4f}  macro-F1 {result['f1']:.4f}  loss "
        f"{result['loss']:.4f}  ({result['samples']} examples{run.views_label})"
    )
    if unknown:
        shown = ", ".join(f"{k} ({v})" for k, v in sorted(unknown.items())[:5])
        say(f"{sum(unknown.values())} rows with labels the model never saw, left out: {shown}")
    if skipped.rows:
        say(f"skipped {len(skipped.rows)} unreadable rows")
    say(f"written to {target}")
    return 0
