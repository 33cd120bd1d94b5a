"""Choose the checkpoint: rank candidate checkpoints on the user's own data before anything
trains (`tl-hf select`, `tl_hf.select_checkpoint`, and `--candidates` in the recipes).

    config -> **select** (data once; per candidate: frozen features, LogME, a linear probe,
    size, forward time; the rule) -> the recipe trains the chosen checkpoint

The candidates are all checked before any work: one that cannot be used (a missing folder, a
checkpoint of another modality) or that fails to load or run is left out with its reason and
the others go on; fewer than two usable is one line naming each reason. The data is loaded
once and never its test split.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from tl_hf.errors import UserError
from tl_hf.output.names import SELECTION_FILE
from tl_hf.select.rank import RULE, Score

__all__ = ["SELECTION_FILE", "Selection", "select_checkpoint", "select_with_args"]


@dataclass
class Selection:
    """A ranking: `scores` in the rule's order (the first is `chosen`)."""

    modality: str
    scores: list[Score]
    train_rows: int
    validation_rows: int
    seconds: float
    rule: str = RULE
    paths: dict[str, str] = field(default_factory=dict)  # candidate name -> folder or Hub id
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (name, why) not ranked

    @property
    def chosen(self) -> str:
        return self.scores[0].name

    @property
    def chosen_path(self) -> str:
        return self.paths.get(self.chosen, self.chosen)

    def to_dict(self) -> dict[str, Any]:
        """What `selection.json` holds."""
        from tl_hf.report.share import shareable, shareable_name

        def named(name: str) -> str:  # as the card names checkpoints: no local path
            return str(shareable_name(name)).removeprefix("./")

        candidates = [{**s.as_dict(), "name": named(s.name)} for s in self.scores]
        return shareable(
            {
                "tool": "tl-hf select",
                "modality": self.modality,
                "chosen": named(self.chosen),
                "rule": self.rule,
                "train_rows": self.train_rows,
                "validation_rows": self.validation_rows,
                "seconds": round(self.seconds, 3),
                "candidates": candidates,
                "left_out": [
                    {"name": named(n), "reason": why.replace(n, named(n))}
                    for n, why in self.left_out
                ],
            }
        )


def _score(feats, seed: int) -> Score:
    from tl_hf.select.logme import logme
    from tl_hf.select.rank import probe_accuracy

    return Score(
        name=feats.candidate.name,
        logme=logme(feats.train, feats.train_labels),
        probe_accuracy=probe_accuracy(
            feats.train, feats.train_labels, feats.validation, feats.validation_labels, seed
        ),
        parameters=feats.parameters,
        ms_per_example=feats.ms_per_example,
        feature_dim=int(feats.train.shape[1]),
        features=feats.source,
        pooling=feats.pooling,
        seconds=feats.seconds,
    )


def select_with_args(args, dataset=None) -> Selection:
    """Rank `args.model.candidates` (none: the modality's installed ladder) on the data `args`
    names (or `dataset`): the work behind every entry point. Prints one line per candidate and a progress bar per feature pass."""
    import gc

    from tl_hf.config.resolve import options_for
    from tl_hf.console import say
    from tl_hf.data.load import load_classification_data
    from tl_hf.modalities.base import get_modality
    from tl_hf.select.extract import (
        check_candidates,
        extract_candidate,
        ladder_candidates,
        too_few,
    )
    from tl_hf.select.rank import format_score, rank_scores
    from tl_hf.strategies.base import get_strategy

    start = time.perf_counter()
    modality = get_modality(args.modality)
    names = list(args.model.candidates or []) or ladder_candidates(modality.name)
    candidates, left_out = check_candidates(names, modality, args.model)
    for name, reason in left_out:
        say(f"candidate {name} left out: {reason}")
    if len(candidates) < 2:
        raise too_few(len(candidates), left_out)
    frozen = get_strategy("frozen")
    options = options_for(args, frozen, trainable_layers=0, cache_features=True)
    training = args.training
    with training.main_process_first(desc="selection data"):  # ranks share the dataset cache
        dsd = load_classification_data(
            args.data, modality, training.seed, dataset, args.model.cache_dir
        )
    n_train, n_val = len(dsd["train"]), len(dsd["validation"])
    say(
        f"selection: {len(candidates)} candidates on {n_train} training and {n_val} validation "
        "rows (frozen features; the test split is not used)"
    )
    scores = []
    for candidate in candidates:
        try:
            feats = extract_candidate(candidate, args, modality, dsd, options)
        except Exception as err:  # loading or running it failed: the others go on
            reason = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"
            say(f"candidate {candidate.name} left out: {reason}")
            left_out.append((candidate.name, reason))
            continue
        scores.append(_score(feats, training.seed))
        del feats
        gc.collect()
    if len(scores) < 2:
        raise too_few(len(scores), left_out)
    ordered = rank_scores(scores, n_val)
    for score in ordered:
        say(format_score(score))
    say(f"rule: {RULE}")
    paths = {c.name: c.path for c in candidates}
    seconds = time.perf_counter() - start
    return Selection(
        args.modality, ordered, n_train, n_val, seconds, paths=paths, left_out=left_out
    )


def write_selection(selection: Selection, output_dir: str) -> str:
    """`selection.json` in `output_dir` (whole or absent); refuses to replace a file of that
    name tl-hf did not write."""
    import json

    from tl_hf.output.save import write_json

    path = os.path.join(output_dir, SELECTION_FILE)
    if os.path.exists(path):
        try:
            with open(path) as f:
                ours = json.load(f).get("tool") == "tl-hf select"
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise UserError(
                f"{path} exists and was not written by tl-hf select: move it or choose another "
                "--output_dir"
            )
    os.makedirs(output_dir, exist_ok=True)
    write_json(path, selection.to_dict())
    return path


def select_checkpoint(
    modality: str, candidates: list[str] | None = None, dataset=None, **kwargs: Any
) -> Selection:
    """Rank candidate checkpoints on the user's data (frozen features: LogME, a linear probe's
    validation accuracy, size, forward time) and return the ranking; `selection.json` is
    written when `output_dir` is given.

    Args:
        modality: "text", "image", "audio", or a registered modality's name.
        candidates: two or more checkpoints (folders, Hub ids, `embedded`, ladder names);
            None: the modality's installed ladder (`tl_hf.embedded.ladder`).
        dataset: optional in-memory `datasets.Dataset`/`DatasetDict`.
        **kwargs: any recipe flag by name (`dataset_name`, `train_file`, `max_train_samples`,
            `validation_split_percentage`, `per_device_eval_batch_size`, `output_dir`).
    """
    from tl_hf.config import build_args

    args = build_args(modality, dataset, candidates=list(candidates or []) or None, **kwargs)
    selection = select_with_args(args, dataset)
    if "output_dir" in kwargs:
        write_selection(selection, args.training.output_dir)
    return selection
