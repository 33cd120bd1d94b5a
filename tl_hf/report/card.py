"""The model card `README.md` of a finished run, with the metadata the Hub reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tl_hf.atomic import write_text
from tl_hf.report.folder import PER_CLASS_HEADER, fmt, load_run, metric_rows, per_class_rows
from tl_hf.report.history import CARD_FILE, CURVES_FILE

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


def md_table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _task_and_example(modality_name: str) -> tuple[str, str]:
    """The `pipeline()` task and the usage example of a modality (read from its declaration)."""
    from tl_hf.config import UserError
    from tl_hf.modality import get_modality

    try:
        modality = get_modality(modality_name)
    except UserError:  # a folder written by a modality that is not registered here
        return "text-classification", "..."
    return modality.task, modality.example_input


def build_model_card(output_dir: str | os.PathLike, results: dict | None = None) -> str:
    """Write the model card `README.md` to `output_dir` from the files of a finished run.

    The YAML metadata holds what the Hub reads: `library_name`, `pipeline_tag`,
    `base_model` and `datasets` (only when they are Hub ids, not local paths), `metrics`,
    `tags` and a `model-index` with the validation and test results of
    `all_results.json`.

    Args:
        output_dir: The run's folder.
        results: The run's results when `all_results.json` is not written yet.

    Returns:
        The path of the card.
    """
    from huggingface_hub import ModelCard, ModelCardData

    root = Path(output_dir)
    run = load_run(root, results)
    results, cfg, groups = run["results"], run["run"], run["groups"]
    modality = cfg.get("modality") or "text"
    task, example = _task_and_example(modality)
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
        f"classifier({example})",
        "```",
        "",
    ]
    lines += ["## Results", ""]
    rows = metric_rows(results)
    if rows:
        lines += [md_table(rows, ["metric", "value"]), ""]
    per_class = per_class_rows(results)
    if per_class:
        lines += [
            "Per class (test):",
            "",
            md_table(per_class, PER_CLASS_HEADER),
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
            md_table(rows, ["group", "depth", "parameters", "lr", "weight decay"]),
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
    write_text(path, str(card))
    return str(path)
