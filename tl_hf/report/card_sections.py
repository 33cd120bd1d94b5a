"""The sections of the model card `README.md` (`tl_hf.report.card` reads the run and puts
them together): the introduction, usage and results, what was done, how to reproduce it,
the framework versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_hf.augment.tta import views_note
from tl_hf.report.folder import (
    PER_CLASS_HEADER,
    calibration_lines,
    fmt,
    metric_rows,
    per_class_rows,
)
from tl_hf.report.history import CURVES_FILE, metric_key

_TIMING_SUFFIXES = ("_runtime", "_per_second", "_flos")
GROUP_HEADER = ["group", "depth", "parameters", "lr", "weight decay"]


@dataclass(frozen=True)
class CardFacts:
    """A finished run as its card describes it (paths already made shareable)."""

    root: Path
    run: dict[str, Any]  # what `load_run` read
    results: dict[str, Any]
    cfg: dict[str, Any]
    modality: str
    task: str
    example: str
    base_hub: str | None
    base_name: str
    dataset: Any
    data_is_hub: bool
    repo: str
    dataset_label: str
    strategy: str | None


def md_table(rows: list[list[Any]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def group_rows(groups: list[dict]) -> list[list[Any]]:
    """One row per optimizer group, in `GROUP_HEADER`'s order (the card's and the report's)."""
    return [
        [g.get("name"), g.get("depth"), g.get("num_params"), g.get("lr"), g.get("weight_decay")]
        for g in groups
    ]


def intro_lines(facts: CardFacts) -> list[str]:
    """The title, what the model is and was trained from, and its labels."""
    base_hub, dataset, task = facts.base_hub, facts.dataset, facts.task
    where = (
        f"[{base_hub}](https://huggingface.co/{base_hub})"
        if base_hub
        else f"`{facts.base_name}` (a local checkpoint)"
    )
    if facts.data_is_hub:
        data_where = f"[{dataset}](https://huggingface.co/datasets/{dataset})"
    elif str(dataset).startswith("embedded:"):
        data_where = f"tl-hf's embedded `{str(dataset).removeprefix('embedded:')}` data"
    elif dataset is None:  # passed in memory
        data_where = "local data"
    else:
        data_where = f"`{facts.dataset_label}` (local data)"
    lines = [
        f"# {facts.repo}",
        "",
        f"{_article(task)} {task.replace('-', ' ')} model fine-tuned from {where} on {data_where} with "
        f"tl-hf ({facts.strategy} strategy).",
        "",
    ]
    labels = facts.run["labels"]
    if labels:
        lines += [f"**Labels** ({len(labels)}): " + ", ".join(f"`{x}`" for x in labels), ""]
    return lines


def usage_and_results_lines(facts: CardFacts) -> list[str]:
    """How to call the model, and what it scored."""
    lines = [
        "## Usage",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("{facts.task}", model="{facts.repo}")',
        f"classifier({facts.example})",
        "```",
        "",
        *views_note(facts.cfg),
        "## Results",
        "",
    ]
    # what the model scored; timings and throughput are in all_results.json and report.html
    rows = [r for r in metric_rows(facts.results) if not r[0].endswith(_TIMING_SUFFIXES)]
    if rows:
        lines += [md_table(rows, ["metric", "value"]), ""]
    per_class = per_class_rows(facts.results)
    if per_class:
        lines += ["Per class (test):", "", md_table(per_class, PER_CLASS_HEADER), ""]
    calibration = calibration_lines(facts.run.get("calibration"))
    if calibration:
        lines += [" ".join(calibration), ""]
    return lines


def training_lines(facts: CardFacts) -> list[str]:
    """What was done: the training, curves, diagnosis, the LoRA adapter, parameter groups."""
    run, cfg, root = facts.run, facts.cfg, facts.root
    groups = run["groups"]
    lines = ["## What was done", "", *what_was_done(cfg, facts.results, groups)]
    lines += [*_pooling_line(cfg, root), ""]
    if (root / CURVES_FILE).is_file():
        lines += ["### Training curves", "", f"![training curves]({CURVES_FILE})", ""]
    if run["diagnosis"]:
        lines += [
            f"Diagnosis: **{run['diagnosis']['verdict']}**. "
            + " ".join(run["diagnosis"]["reasons"]),
            "",
        ]
    lines += _adapter_lines(
        cfg, root, len(run["labels"]), facts.repo, facts.base_hub or facts.base_name
    )
    if groups:
        lines += ["### Parameter groups", "", md_table(group_rows(groups), GROUP_HEADER), ""]
    return lines


def _lr_by_depth(groups: list[dict]) -> list[tuple[Any, float, int]]:
    """(depth, learning rate, parameters) per layer depth, from the optimizer's groups."""
    depths: dict[Any, list] = {}
    for g in groups:
        row = depths.setdefault(g.get("depth"), [g.get("lr"), 0])
        row[1] += g.get("num_params") or 0
    return [(d, lr, n) for d, (lr, n) in sorted(depths.items(), key=lambda x: (x[0] is None, x[0]))]


def what_was_done(cfg: dict, results: dict, groups: list[dict]) -> list[str]:
    """The training, in plain words: strategy, learning rate per layer, augmentation, stopping."""
    strategy = results.get("strategy") or cfg.get("strategy")
    lr = cfg.get("learning_rate")
    by_depth = _lr_by_depth(groups)
    record = _registered(strategy)
    if record is not None and record.card_text is not None:
        text = record.card_text(cfg, results, by_depth)
    else:  # the strategy's description and details
        text = _registered_description(record, strategy, cfg) + f" Learning rate {fmt(lr)}."
    lines = [f"- Strategy `{strategy}`: {text}"]
    if by_depth:
        lines.append("- Learning rate by depth: " + "; ".join(_depth_names(by_depth, record)) + ".")
    lines.append(_augment_line(cfg))
    epochs = cfg.get("num_train_epochs")
    size = f"{results['train_samples']} training rows, " if results.get("train_samples") else ""
    lines.append(
        f"- Data and schedule: {size}up to {fmt(epochs)} epochs, batch size "
        f"{cfg.get('per_device_train_batch_size')} per device, seed {cfg.get('seed')}."
    )
    lines += [f"- Chosen from the data: {line}." for line in cfg.get("rules_from_data") or []]
    patience = results.get("early_stopping_patience", cfg.get("early_stopping_patience"))
    if results.get("best_epoch") is not None:
        stop = (
            f"stopped early at epoch {results.get('stopped_epoch')}"
            if results.get("early_stopped")
            else f"ran all epochs (to epoch {results.get('stopped_epoch')})"
        )
        metric = results.get("metric_for_best_model", "eval_loss")
        meaning = (
            " (the validation loss after temperature scaling: a model growing confident does "
            "not raise it while its predictions improve)"
            if metric_key(metric) == "eval_scaled_loss"
            else ""
        )
        lines.append(
            f"- Early stopping on `{metric}`{meaning} with "
            f"patience {patience}: training {stop}; the best epoch, {results.get('best_epoch')}, "
            "is the checkpoint saved here."
        )
    return lines


def _depth_names(by_depth: list[tuple[Any, float, int]], record) -> list[str]:
    """Each depth named (embeddings, a layer, the head) with its parameters and rate."""
    top = max((d for d, _, _ in by_depth if isinstance(d, int)), default=None)
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
    return named


def _augment_line(cfg: dict) -> str:
    """The augmentations, and whether they were stored copies or drawn every epoch."""
    augment = [a for a in cfg.get("augment") or [] if a != "none"]
    if not augment:
        return "- Augmentations: none."
    how = (
        "drawn afresh every epoch (on the fly)"
        if cfg.get("augment_mode") == "on_the_fly"
        else f"{cfg.get('augment_copies') or 1} stored augmented "
        f"{'copy' if (cfg.get('augment_copies') or 1) == 1 else 'copies'} of each training "
        "example"
    )
    return f"- Augmentations: {', '.join(f'`{a}`' for a in augment)}, {how}."


def _pooling_line(cfg: dict, root) -> list[str]:
    """What the head reads, when it is not simply the stock class's first token."""
    import json

    from tl_hf.embedded.ladder import local_folder
    from tl_hf.model.pooling import MEAN_LIKE, config_refuses_mean, declared_pooling

    try:
        with open(root / "config.json") as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = {}
    architecture = (config.get("architectures") or ["?"])[0]
    if cfg.get("pooling") == "mean":
        return [
            "- Pooling: the head reads the masked mean of the encoder's last hidden states (the "
            "pooling sentence-embedding checkpoints are trained with), computed by one pooling "
            f"block appended to the encoder: the model is a stock `{architecture}` and loads "
            "without custom code."
        ]
    path = local_folder(cfg.get("model_name_or_path") or "")  # a ladder name: its folder
    declared = declared_pooling(path) if path else None
    if declared and declared != "cls":
        refused = config_refuses_mean(config, f"`{architecture}`")
        if declared not in MEAN_LIKE:
            refused = "stock classes cannot express it"
        how = refused or "`--pooling mean` gives the head the mean"
        return [
            f"- Pooling: the checkpoint declares {declared} pooling; this model's head reads the "
            f"first token, as the stock `{architecture}` does ({how})."
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


def how_to_reproduce(cfg: dict, modality: str, base_hub: str | None) -> list[str]:
    """The section that reruns the training: from `run_config.yaml`, or with the flags given."""
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


def versions() -> list[list[str]]:
    """(package, version) of tl-hf and the libraries it trained with, those installed."""
    from importlib.metadata import PackageNotFoundError, version

    rows = []
    for package in ("tl-hf", "transformers", "torch", "datasets", "accelerate", "huggingface_hub"):
        try:
            rows.append([package, version(package)])
        except PackageNotFoundError:
            continue
    return rows


def selection_summary(selection: dict) -> dict[str, Any]:
    """The part of `selection.json` that `run_config.yaml` keeps: the pick, the rule, the ranking."""
    keys = ("name", "rank", "probe_accuracy", "logme", "parameters", "ms_per_example")
    return {
        "chosen": selection.get("chosen"),
        "rule": selection.get("rule"),
        "validation_rows": selection.get("validation_rows"),
        "left_out": selection.get("left_out", []),
        "ranking": [
            {k: c.get(k) for k in keys}
            for c in sorted(selection.get("candidates", []), key=lambda c: c.get("rank", 0))
        ],
    }


def selection_lines(cfg: dict) -> list[str]:
    """The card's "Checkpoint selection" section: the candidates considered and why this one
    (empty when the run was given one checkpoint)."""
    selection = cfg.get("selection")
    if not selection or not selection.get("ranking"):
        return []
    rows = [
        [
            r.get("rank"),
            f"`{r.get('name')}`",
            r.get("probe_accuracy"),
            r.get("logme"),
            f"{(r.get('parameters') or 0) / 1e6:.2f}M",
            r.get("ms_per_example"),
        ]
        for r in selection["ranking"]
    ]
    header = ["rank", "candidate", "probe accuracy", "LogME", "parameters", "ms/example"]
    return [
        "## Checkpoint selection",
        "",
        f"This model was trained from `{selection.get('chosen')}`, chosen among "
        f"{len(rows)} candidates ranked on frozen features of the training and validation rows "
        f"({selection.get('validation_rows')} validation rows; the test split was not used).",
        f"Rule: {selection.get('rule')}.",
        "",
        md_table(rows, header),
        "",
        *[
            f"Left out: `{c.get('name')}` ({c.get('reason')})."
            for c in selection.get("left_out", [])
        ],
        *([""] if selection.get("left_out") else []),
    ]
