"""`tl-hf predict OUTPUT_DIR --input FILE|FOLDER`: one row per input with the label, its
probability and the top k, written as CSV in batches (memory flat in the input's size).

Probabilities are calibrated with the temperature fitted on the validation split at the end
of training (`calibration.json`; `--no_calibration` for the raw softmax). A row that cannot be
read (an empty text, an unreadable file) stops the command with one line before the output
appears (it is written under a temporary name and renamed at the end), or with
`--skip_bad_files` is left out and counted."""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tl_hf.errors import UserError
from tl_hf.infer.inputs import InputSource, describe, iter_batches, open_input
from tl_hf.infer.loaded import LoadedRun

HEADER = ["row", "input", "label", "probability"]


@dataclass
class Scored:
    """One batch's scored rows: their indices in the input, inputs, raw labels, probabilities."""

    rows: list[int]
    inputs: list[Any]
    labels: list[Any]
    logits: Any  # float tensor [rows, classes]
    probabilities: Any  # softmax of the logits (divided by the run's temperature if calibrated)


@dataclass
class Skipped:
    rows: list[tuple[int, str]] = field(default_factory=list)


def _bad_value(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return "empty or missing"
    return None


def _row_logits(run: LoadedRun, row: dict[str, list]) -> tuple[Any, str | None]:
    """One row's logits, or None and why it cannot be scored."""
    for values in row.values():
        problem = _bad_value(values[0])
        if problem:
            return None, problem
    try:
        return run.logits(row), None
    except Exception as err:  # decoders raise many types: the row is named with the cause
        return (
            None,
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}",
        )


def _score_rows(run, start, inputs, skipped: Skipped, skip_bad: bool, where: str):
    """The rows of a batch that score and their logits, found one by one (the batch as a whole
    did not score): a bad row stops the command with one line, or is recorded in `skipped`."""
    import torch

    good, logits = [], []
    for i in range(len(next(iter(inputs.values())))):
        row_logits, problem = _row_logits(run, {k: [v[i]] for k, v in inputs.items()})
        if problem is None:
            good.append(i)
            logits.append(row_logits)
            continue
        if not skip_bad:
            cell = describe(next(iter(inputs.values()))[i])[:60]
            raise UserError(
                f"row {start + i} of {where} ({cell!r}) cannot be read ({problem}): fix or "
                "remove it, or pass --skip_bad_files to leave it out"
            )
        skipped.rows.append((start + i, problem))
    return good, (torch.cat(logits) if logits else None)


def _score_batch(run, start, batch, calibrated, skipped: Skipped, skip_bad: bool, where: str):
    inputs = {k: v for k, v in batch.items() if k != "label"}
    keep = list(range(len(batch["label"])))
    logits = None
    if not any(_bad_value(v) for values in inputs.values() for v in values):
        try:
            logits = run.logits(inputs)
        except Exception:  # an unreadable file somewhere in the batch: found row by row below
            logits = None
    if logits is None:
        keep, logits = _score_rows(run, start, inputs, skipped, skip_bad, where)
        if not keep:
            return None
    return Scored(
        rows=[start + i for i in keep],
        inputs=[next(iter(inputs.values()))[i] for i in keep],
        labels=[batch["label"][i] for i in keep],
        logits=logits,
        probabilities=run.scaled(logits, calibrated),
    )


def score_input(
    run: LoadedRun,
    source: InputSource,
    batch_size: int,
    skip_bad: bool,
    calibrated: bool = True,
    skipped: Skipped | None = None,
) -> Iterator[Scored]:
    """Score `source` batch by batch under a progress bar (`skipped` collects left-out rows)."""
    from tl_hf.console import phase

    skipped = skipped if skipped is not None else Skipped()
    with phase("predicting", source.total, unit="row") as bar:
        for start, batch in iter_batches(source, batch_size):
            scored = _score_batch(
                run, start, batch, calibrated, skipped, skip_bad, str(source.path)
            )
            bar.update(len(batch["label"]))
            if scored is not None:
                yield scored


def prediction_rows(run: LoadedRun, scored: Scored, top_k: int) -> Iterator[list[Any]]:
    for row, value, ranked in zip(
        scored.rows, scored.inputs, run.ranked(scored.probabilities, top_k), strict=True
    ):
        cells: list[Any] = [row, describe(value)]
        for label, p in ranked:
            cells += [label, f"{p:.6f}"]
        yield cells


def header(top_k: int) -> list[str]:
    extra = [f"{name}_{k}" for k in range(2, top_k + 1) for name in ("label", "probability")]
    return HEADER + extra


def check_output(path: str) -> None:
    """An existing file is overwritten only when tl-hf wrote it (its header is ours)."""
    if os.path.isdir(path):
        raise UserError(f"--output {path} is a folder: give a file name such as predictions.csv")
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().strip()
        if not first.startswith(",".join(HEADER)):
            raise UserError(
                f"--output {path} exists and tl-hf did not write it: choose another file name"
            )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"--output {path}: the folder {folder} does not exist; create it first")


def add_tta_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tta",
        type=int,
        default=None,
        help="images: test-time views averaged (default: the run's own --tta; 0: off)",
    )


def parse(argv: list[str], prog: str, doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    parser.add_argument("output_dir", help="the --output_dir of a finished run")
    parser.add_argument("--input", required=True, help="a data file or a folder")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: a GPU if any)")
    parser.add_argument("--skip_bad_files", action="store_true", help="leave unreadable rows out")
    parser.add_argument(
        "--no_calibration", action="store_true", help="raw softmax, not temperature-scaled"
    )
    add_tta_flag(parser)
    if prog.endswith("predict"):
        parser.add_argument("--output", default="predictions.csv")
        parser.add_argument("--top_k", type=int, default=1, help="the k most probable labels")
    else:
        parser.add_argument("--label_column", default=None)
        parser.add_argument("--name", default=None, help="eval_<name>/ (default: the input's name)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch_size {args.batch_size} must be 1 or more")
    if getattr(args, "top_k", 1) < 1:
        raise UserError(f"--top_k {args.top_k} must be 1 or more")
    if args.tta is not None and args.tta < 0:
        raise UserError(f"--tta {args.tta} must be 0 (one view) or more")
    return args


def predict(argv: list[str]) -> int:
    """Write the predictions of a finished run on new inputs (see the module docstring)."""
    from tl_hf.console import say
    from tl_hf.infer.loaded import load_run, read_run_config, run_settings
    from tl_hf.output.atomic import atomic_path

    args = parse(argv, "tl-hf predict", __doc__)
    check_output(args.output)
    from pathlib import Path

    config = read_run_config(Path(args.output_dir))
    source = open_input(args.input, *run_settings(config))
    run = load_run(args.output_dir, args.device, config, args.tta)
    top_k = min(args.top_k, len(run.names))
    skipped, written = Skipped(), 0
    calibrated = not args.no_calibration
    with atomic_path(args.output) as temporary, open(temporary, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header(top_k))
        for scored in score_input(
            run, source, args.batch_size, args.skip_bad_files, calibrated, skipped
        ):
            for cells in prediction_rows(run, scored, top_k):
                writer.writerow(cells)
                written += 1
    if skipped.rows:
        shown = ", ".join(f"row {r} ({p})" for r, p in skipped.rows[:5])
        say(
            f"skipped {len(skipped.rows)} unreadable rows: {shown}{' ...' if len(skipped.rows) > 5 else ''}"
        )
    calibration = "raw softmax" if args.no_calibration else f"temperature {run.temperature:.3g}"
    say(f"{written} predictions ({calibration}{run.views_label}) written to {args.output}")
    return 0
