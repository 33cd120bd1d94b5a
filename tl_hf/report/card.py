"""The model card `README.md` of a finished run, with the metadata the Hub reads."""

from __future__ import annotations

import os
from pathlib import Path

from tl_hf.output.atomic import write_text
from tl_hf.report.card_sections import (
    CardFacts,
    how_to_reproduce,
    intro_lines,
    selection_lines,
    training_lines,
    usage_and_results_lines,
    versions,
)
from tl_hf.report.folder import load_run
from tl_hf.report.history import CARD_FILE
from tl_hf.report.share import embedded_hub_id, shareable, shareable_name

_NOT_METRICS = {
    "loss",
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "samples",
    "epoch",
    "per_class",
    "temperature",  # the calibration's, a setting rather than a score (calibration.json)
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
            if metric in _NOT_METRICS or metric.endswith("loss"):  # scaled_loss too
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
    from huggingface_hub import ModelCard

    facts = _read_facts(Path(output_dir), results)
    data = _card_data(facts)
    lines = [*intro_lines(facts), *usage_and_results_lines(facts), *training_lines(facts)]
    lines += selection_lines(facts.cfg)
    lines += how_to_reproduce(facts.cfg, facts.modality, facts.base_hub)
    lines += ["## Framework versions", "", *[f"- {p} {v}" for p, v in versions()], ""]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    path = facts.root / CARD_FILE
    write_text(path, str(card))
    return str(path)


def _read_facts(root: Path, results: dict | None) -> CardFacts:
    """Read a finished run's folder into what its card says (no local absolute path)."""
    run = load_run(root, results)
    results, cfg = shareable(run["results"]), shareable(run["run"])
    modality = cfg.get("modality") or "text"
    task, example = _task_and_example(modality)
    base_hub, base_name = base_model_of(cfg)
    if base_name is None:  # not written by tl-hf: what config.json says, as a name
        found = shareable_name(run["config"].get("_name_or_path"))
        base_name = str(found).removeprefix("./") if found else "an unnamed checkpoint"
    dataset = cfg.get("dataset_name") or cfg.get("train_file")
    return CardFacts(
        root=root,
        run=run,
        results=results,
        cfg=cfg,
        modality=modality,
        task=task,
        example=example,
        base_hub=base_hub,
        base_name=base_name,
        dataset=dataset,
        data_is_hub=is_hub_id(dataset),
        repo=cfg.get("hub_model_id") or root.resolve().name,
        dataset_label=str(dataset).removeprefix("./") if dataset else "local data",
        strategy=results.get("strategy") or cfg.get("strategy"),
    )


def _card_data(facts: CardFacts):
    """The YAML metadata the Hub reads (`ModelCardData`), with the run's results."""
    from huggingface_hub import ModelCardData

    dataset, task, strategy = facts.dataset, facts.task, facts.strategy
    evals = card_eval_results(
        facts.results, task, dataset if facts.data_is_hub else "local", str(facts.dataset_label)
    )
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=task,
        base_model=facts.base_hub,
        datasets=[dataset] if facts.data_is_hub else None,
        metrics=sorted({r.metric_type for r in evals}) or None,
        tags=["tl-hf", task, "transfer-learning", *([f"strategy-{strategy}"] if strategy else [])],
        model_name=facts.repo,
        eval_results=evals or None,
    )
