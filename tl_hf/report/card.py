"""The model card `README.md` of a finished run, with the metadata the Hub reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tl_hf.output.atomic import write_text
from tl_hf.report.folder import PER_CLASS_HEADER, fmt, load_run, metric_rows, per_class_rows
from tl_hf.report.history import CARD_FILE, CURVES_FILE
from tl_hf.report.share import embedded_hub_id, shareable, shareable_name

_NOT_METRICS = {
    "loss",
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "samples",
    "epoch",
    "per_class",
}


_TIMING_SUFFIXES = ("_runtime", "_per_second", "_flos")


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
    from tl_hf.errors import UserError
    from tl_hf.modalities.base import get_modality

    try:
        modality = get_modality(modality_name)
    except UserError:  # a folder written by a modality that is not registered here
        return "text-classification", "..."
    return modality.task, modality.example_input


def base_model_of(cfg: dict) -> tuple[str | None, str | None]:
    """(the Hub id of the checkpoint a run started from, or None; how to name it, or None
    when the folder has no run config).

    `model_name_or_path` unset in `run_config.yaml` means the modality's embedded default,
    named by the Hub id it was copied from; a local folder is named by its folder name."""
    if "model_name_or_path" not in cfg:
        return None, None
    base = cfg.get("model_name_or_path")
    if not base:
        hub_id = embedded_hub_id(cfg.get("modality"))
        return hub_id, hub_id or "the embedded default checkpoint"
    if is_hub_id(base):
        return base, base
    return None, str(shareable_name(base)).removeprefix("./")


def _lr_by_depth(groups: list[dict]) -> list[tuple[Any, float, int]]:
    """(depth, learning rate, parameters) per layer depth, from the optimizer's groups."""
    depths: dict[Any, list] = {}
    for g in groups:
        row = depths.setdefault(g.get("depth"), [g.get("lr"), 0])
        row[1] += g.get("num_params") or 0
    return [(d, lr, n) for d, (lr, n) in sorted(depths.items(), key=lambda x: (x[0] is None, x[0]))]


def _what_was_done(cfg: dict, results: dict, groups: list[dict]) -> list[str]:
    """The training, in plain words: strategy, learning rate per layer, augmentation, stopping."""
    strategy = results.get("strategy") or cfg.get("strategy")
    lr = cfg.get("learning_rate")
    by_depth = _lr_by_depth(groups)
    top = max((d for d, _, _ in by_depth if isinstance(d, int)), default=None)
    record = _registered(strategy)
    if record is not None and record.card_text is not None:
        text = record.card_text(cfg, results, by_depth)
    else:  # the strategy's description and details
        text = _registered_description(record, strategy, cfg) + f" Learning rate {fmt(lr)}."
    lines = [f"- Strategy `{strategy}`: {text}"]
    if by_depth:
        named = []
        for depth, rate, params in by_depth:
            where = (
                "embeddings"
                if depth == 0
                else (
                    "head"
                    if record is not None and not record.trains_backbone
                    else "final norm and head"
                )
                if depth == top
                else f"layer {depth}"
            )
            named.append(f"depth {depth} ({where}, {params:,} parameters): {fmt(rate)}")
        lines.append("- Learning rate by depth: " + "; ".join(named) + ".")
    augment = [a for a in cfg.get("augment") or [] if a != "none"]
    if augment:
        how = (
            "drawn afresh every epoch (on the fly)"
            if cfg.get("augment_mode") == "on_the_fly"
            else f"{cfg.get('augment_copies') or 1} stored augmented "
            f"{'copy' if (cfg.get('augment_copies') or 1) == 1 else 'copies'} of each training "
            "example"
        )
        lines.append(f"- Augmentations: {', '.join(f'`{a}`' for a in augment)}, {how}.")
    else:
        lines.append("- Augmentations: none.")
    epochs = cfg.get("num_train_epochs")
    size = f"{results['train_samples']} training rows, " if results.get("train_samples") else ""
    lines.append(
        f"- Data and schedule: {size}up to {fmt(epochs)} epochs, batch size "
        f"{cfg.get('per_device_train_batch_size')} per device, seed {cfg.get('seed')}."
    )
    patience = results.get("early_stopping_patience", cfg.get("early_stopping_patience"))
    if results.get("best_epoch") is not None:
        stop = (
            f"stopped early at epoch {results.get('stopped_epoch')}"
            if results.get("early_stopped")
            else f"ran all epochs (to epoch {results.get('stopped_epoch')})"
        )
        lines.append(
            f"- Early stopping on `{results.get('metric_for_best_model', 'eval_loss')}` with "
            f"patience {patience}: training {stop}; the best epoch, {results.get('best_epoch')}, "
            "is the checkpoint saved here."
        )
    return lines


def _pooling_line(cfg: dict, root) -> list[str]:
    """What the head reads, when it is not simply the stock class's first token."""
    import json

    from tl_hf.model.pooling import declared_pooling

    try:
        with open(root / "config.json") as f:
            architecture = (json.load(f).get("architectures") or ["?"])[0]
    except (OSError, ValueError):
        architecture = "?"
    if cfg.get("pooling") == "mean":
        return [
            "- Pooling: the head reads the masked mean of the encoder's last hidden states (the "
            "pooling sentence-embedding checkpoints are trained with), computed by one pooling "
            f"block appended to the encoder: the model is a stock `{architecture}` and loads "
            "without custom code."
        ]
    path = cfg.get("model_name_or_path")
    declared = declared_pooling(path) if path else None
    if declared and declared != "cls":
        return [
            f"- Pooling: the checkpoint declares {declared} pooling; this model's head reads the "
            f"first token, as the stock `{architecture}` does (`--pooling mean` gives the head "
            "the mean where the encoder has BERT-style blocks)."
        ]
    return []


def _wrap_command(command: str) -> str:
    """One `--flag values` per line (shell continuations): a long command stays readable."""
    import shlex

    words, chunks = shlex.split(command), []
    for word in words:
        if word.startswith("--") or not chunks:
            chunks.append([word])
        else:
            chunks[-1].append(word)
    return " \\\n    ".join(shlex.join(c) for c in chunks)


def _how_to_reproduce(cfg: dict, modality: str, base_hub: str | None) -> list[str]:
    command = cfg.get("command") or f"tl-hf train {modality} --config run_config.yaml"
    lines = [
        "## How to reproduce",
        "",
        "With tl-hf installed, the `run_config.yaml` of this repository reruns the training:",
        "",
        "```bash",
        f"tl-hf train {modality} --config run_config.yaml",
        "```",
        "",
        "or, with the flags that were given:",
        "",
        "```bash",
        _wrap_command(command),
        "```",
        "",
    ]
    if not cfg.get("model_name_or_path") and base_hub:
        lines += [
            f"No `--model_name_or_path` was given: tl-hf used its embedded offline copy of "
            f"`{base_hub}`; add `--model_name_or_path {base_hub}` to download it from the Hub "
            "instead.",
            "",
        ]
    return lines


def build_model_card(output_dir: str | os.PathLike, results: dict | None = None) -> str:
    """Write the model card `README.md` to `output_dir` from the files of a finished run.

    The YAML metadata holds what the Hub reads: `library_name`, `pipeline_tag`,
    `base_model` (a Hub id, or the Hub id an embedded default was copied from) and
    `datasets` (only Hub ids), `metrics`, `tags` and a `model-index` with the validation
    and test results of `all_results.json`. The text names no local absolute path.

    Args:
        output_dir: The run's folder.
        results: The run's results when `all_results.json` is not written yet.

    Returns:
        The path of the card.
    """
    from huggingface_hub import ModelCard, ModelCardData

    root = Path(output_dir)
    run = load_run(root, results)
    results, cfg, groups = shareable(run["results"]), shareable(run["run"]), run["groups"]
    modality = cfg.get("modality") or "text"
    task, example = _task_and_example(modality)
    base_hub, base_name = base_model_of(cfg)
    if base_name is None:  # not written by tl-hf: what config.json says, as a name
        found = shareable_name(run["config"].get("_name_or_path"))
        base_name = str(found).removeprefix("./") if found else "an unnamed checkpoint"
    dataset = cfg.get("dataset_name") or cfg.get("train_file")
    data_is_hub = is_hub_id(dataset)
    repo = cfg.get("hub_model_id") or root.resolve().name
    dataset_label = str(dataset).removeprefix("./") if dataset else "local data"
    evals = card_eval_results(
        results, task, dataset if data_is_hub else "local", str(dataset_label)
    )
    strategy = results.get("strategy") or cfg.get("strategy")
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=task,
        base_model=base_hub,
        datasets=[dataset] if data_is_hub else None,
        metrics=sorted({r.metric_type for r in evals}) or None,
        tags=["tl-hf", task, "transfer-learning", *([f"strategy-{strategy}"] if strategy else [])],
        model_name=repo,
        eval_results=evals or None,
    )
    where = (
        f"[{base_hub}](https://huggingface.co/{base_hub})"
        if base_hub
        else f"`{base_name}` (a local checkpoint)"
    )
    if data_is_hub:
        data_where = f"[{dataset}](https://huggingface.co/datasets/{dataset})"
    elif str(dataset).startswith("embedded:"):
        data_where = f"tl-hf's embedded `{str(dataset).removeprefix('embedded:')}` data"
    elif dataset is None:  # passed in memory
        data_where = "local data"
    else:
        data_where = f"`{dataset_label}` (local data)"
    lines = [
        f"# {repo}",
        "",
        f"{_article(task)} {task.replace('-', ' ')} model fine-tuned from {where} on {data_where} with "
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
        "## Results",
        "",
    ]
    # what the model scored; timings and throughput are in all_results.json and report.html
    rows = [r for r in metric_rows(results) if not r[0].endswith(_TIMING_SUFFIXES)]
    if rows:
        lines += [md_table(rows, ["metric", "value"]), ""]
    per_class = per_class_rows(results)
    if per_class:
        lines += ["Per class (test):", "", md_table(per_class, PER_CLASS_HEADER), ""]
    lines += ["## What was done", "", *_what_was_done(cfg, results, groups)]
    lines += [*_pooling_line(cfg, root), ""]
    if (root / CURVES_FILE).is_file():
        lines += ["### Training curves", "", f"![training curves]({CURVES_FILE})", ""]
    if run["diagnosis"]:
        lines += [
            f"Diagnosis: **{run['diagnosis']['verdict']}**. "
            + " ".join(run["diagnosis"]["reasons"]),
            "",
        ]
    lines += _adapter_lines(cfg, root, len(run["labels"]), repo, base_hub or base_name)
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
    lines += _how_to_reproduce(cfg, modality, base_hub)
    lines += ["## Framework versions", "", *[f"- {p} {v}" for p, v in _versions()], ""]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    path = root / CARD_FILE
    write_text(path, str(card))
    return str(path)


def _registered(strategy: str | None):
    """The registered `Strategy` called `strategy`, or None (one registered in the process
    that trained, not in this one)."""
    from tl_hf.errors import UserError
    from tl_hf.strategies.base import get_strategy

    try:
        return get_strategy(strategy)
    except UserError:
        return None


def _registered_description(record, strategy: str | None, cfg: dict) -> str:
    """`Strategy.description` and `.describe(cfg)` of the registered strategy `record` (None:
    not registered in this process), as one sentence."""
    if record is None:
        return f"the `{strategy}` strategy."
    detail = record.describe(cfg)
    return f"{record.description[0].upper()}{record.description[1:]}" + (
        f" ({detail})." if detail else "."
    )


def _adapter_lines(cfg: dict, root: Path, num_labels: int, repo: str, base: str) -> list[str]:
    """Card lines for LoRA's adapter folder, when the run saved one: how to load it on the
    base checkpoint `base` (a Hub id, or the local checkpoint's name)."""
    if not (root / "adapter" / "adapter_config.json").is_file():
        return []
    return [
        "The LoRA adapter is in `adapter/` (the model above has it merged in, no peft "
        "needed). To load the adapter on the base checkpoint instead:",
        "",
        "```python",
        "from peft import PeftModel",
        f"from transformers import {_auto_class(cfg)}",
        "",
        f'base = {_auto_class(cfg)}.from_pretrained("{base}", num_labels={num_labels})',
        f'model = PeftModel.from_pretrained(base, "{repo}", subfolder="adapter")',
        "```",
        "",
    ]


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


def _auto_class(cfg: dict) -> str:
    from tl_hf.errors import UserError
    from tl_hf.modalities.base import get_modality

    try:
        return get_modality(cfg.get("modality") or "text").auto_model
    except UserError:  # a modality registered in the process that trained, not in this one
        return "AutoModelForSequenceClassification"
