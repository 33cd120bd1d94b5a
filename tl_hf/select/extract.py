"""One candidate checkpoint's frozen features on the user's training and validation rows.

The candidate is loaded exactly as `--strategy frozen` loads it (its own processor, a new head
for the data's labels, the pooling it declares: `tl_hf.model.pooling`), its backbone frozen,
and its output stored by the feature cache (`tl_hf.training.features`): the same files a
later frozen or LP-FT run of that checkpoint on the same data reads instead of running the
backbone again. The vector a head would read is taken from the stored output: the pooled
output when the backbone has one (BERT's pooler; the mean-pooling block for
sentence-embedding checkpoints), else the first token, or the mean over time (Whisper).
Where the backbone's output cannot be stored (`CannotCache`), the input of the classifier
layer is recorded instead, from one pass of the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tl_hf.errors import UserError

SPLITS = ("train", "validation")  # never the test split: selection is a decision
TIMED_BATCHES = 2  # batches timed for the forward time, after one warm-up batch


@dataclass
class Candidate:
    """A candidate as checked before any work: the name as given, its folder or Hub id, its
    config (read once) and how the console names it."""

    name: str
    path: str
    config: Any
    display_name: str


@dataclass
class CandidateFeatures:
    """What the ranking reads for one candidate."""

    candidate: Candidate
    train: Any  # float64 [n_train, D]
    train_labels: Any  # int [n_train]
    validation: Any  # float64 [n_validation, D]
    validation_labels: Any
    source: str  # which stored tensor (or the classifier's input) the vectors are
    pooling: str  # what the head reads: first or mean (tl_hf.model.pooling)
    parameters: int
    ms_per_example: float
    seconds: float  # the candidate's whole pass: loading, preprocessing, features


def candidate_path(name: str, modality) -> str:
    """Where a candidate's checkpoint is: the embedded default's folder for `embedded` or the
    Hub id it was copied from, an installed ladder checkpoint for its name
    (`tl_hf.embedded.ladder`), else the name itself (a folder or Hub id)."""
    import os

    from tl_hf.embedded.ladder import ladder_folder

    if name == "embedded" or (name == modality.default_model_hub_id and not os.path.isdir(name)):
        return modality.default_model()
    return ladder_folder(name, modality.name) or name


def ladder_candidates(modality_name: str) -> list[str]:
    """The installed ladder of the modality (`tl_hf.embedded.ladder`), smallest first, when no
    candidates are named; one console line per rung whose package is missing. Fewer than two
    installed is a `UserError`."""
    from tl_hf.console import say
    from tl_hf.embedded.ladder import ladder_for

    names = ladder_for(modality_name, note=say)
    if len(names) < 2:
        raise UserError(
            f"no --candidates given, and the {modality_name} model ladder has "
            f"{len(names)} installed checkpoint(s) ({', '.join(names) or 'none'}): name two or "
            "more checkpoints with --candidates, or install the ladder (scripts/setup.sh)"
        )
    say(f"no --candidates: ranking the installed {modality_name} ladder ({', '.join(names)})")
    return names


def check_candidates(names: list[str], modality, model_args) -> tuple[list[Candidate], list]:
    """Every candidate resolved and checked (a folder that exists and holds a checkpoint of this
    modality's task) before anything loads: (the usable ones, (name, reason) of each one left
    out). Fewer than two names, or one named twice, is a `UserError`."""
    from tl_hf.model.checkpoint import check_checkpoint, load_checkpoint_config
    from tl_hf.report.share import model_display_name

    if len(names) < 2:
        raise UserError(
            f"--candidates needs at least two checkpoints to rank, got {len(names)}: "
            "name two or more folders or Hub ids"
        )
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        raise UserError(f"--candidates names {', '.join(doubles)} twice: give each checkpoint once")
    usable, left_out = [], []
    for name in names:
        try:
            path = candidate_path(name, modality)  # a ladder name without its package: left out
            config = load_checkpoint_config(path, model_args)
            check_checkpoint(path, config, modality.auto_model, modality.name)
        except UserError as err:
            left_out.append((name, str(err)))
            continue
        usable.append(Candidate(name, path, config, model_display_name(name, modality.name)))
    return usable, left_out


def too_few(usable: int, left_out: list) -> UserError:
    """The error when fewer than two candidates could be ranked, naming why each was left out."""
    reasons = "; ".join(f"candidate {name}: {reason}" for name, reason in left_out)
    return UserError(
        f"only {usable} of {usable + len(left_out)} candidates can be ranked ({reasons}): fix "
        "them or name other checkpoints"
    )


def head_input(columns: dict[str, Any]):
    """[N, D] vectors from the stored backbone output (`columns`: name -> tensor), and which
    tensor they came from."""
    import numpy as np

    for key in ("pooler_output", "last_hidden_state", *sorted(columns)):
        if key not in columns:
            continue
        value = np.asarray(columns[key], dtype=np.float64)
        if value.ndim == 2:
            return value, key
        if value.ndim == 3 and value.shape[1] == 1:
            return value[:, 0], f"{key} (first token)"
        if value.ndim == 3:
            return value.mean(axis=1), f"{key} (mean over positions)"
        if value.ndim == 4:  # convolutional maps [N, C, H, W]: global average
            return value.mean(axis=(2, 3)), f"{key} (global average)"
    raise UserError(f"the stored backbone output holds no feature tensor ({', '.join(columns)})")


def _cached_vectors(model, features, collator, training_args, bar):
    """Per split: (vectors, labels), through the feature cache; the model is restored."""
    from tl_hf.model.depth import head_parameter_names
    from tl_hf.training.features import COLUMN_PREFIX, build_feature_cache

    cache = build_feature_cache(
        model,
        features,
        collator,
        head_parameter_names(model),
        training_args,
        log=lambda _: None,
        on_rows=bar.update,
    )
    cache.restore()
    out, source = {}, ""
    for split in SPLITS:
        rows = cache.features[split].with_format("numpy")[:]  # the whole split, as arrays
        columns = {c[len(COLUMN_PREFIX) :]: rows[c] for c in cache.columns}
        vectors, source = head_input(columns)
        out[split] = (vectors, rows["labels"].astype(int))
    return out, f"{source} (feature cache)"


def _cacheable(model) -> bool:
    """Whether the backbone is one child module the feature cache can store (checked before
    the pass starts, so a timm model's bar does not start twice)."""
    from tl_hf.model.depth import head_parameter_names
    from tl_hf.training.features import CannotCache, find_backbone

    try:
        find_backbone(model, head_parameter_names(model))
    except CannotCache:
        return False
    return True


def _classifier_layer(model, num_labels: int):
    """The last linear layer with one output per label: the head's classifier."""
    import torch.nn as nn

    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    layers = [m for m in layers if m.out_features == num_labels]
    if not layers:
        raise UserError(
            f"{type(model).__name__} has no linear layer with {num_labels} outputs: its features "
            "cannot be read for the ranking"
        )
    return layers[-1]


def _batches(ds, collator, batch_size: int, device):
    for start in range(0, len(ds), batch_size):
        rows = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        labels = [int(r["labels"]) for r in rows]
        batch = collator([{k: v for k, v in r.items() if k != "labels"} for r in rows])
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        yield batch, labels


def _hooked_vectors(model, features, collator, batch_size: int, num_labels: int, bar):
    """Per split: (vectors, labels), the classifier layer's input from a pass of the model."""
    import numpy as np
    import torch

    seen = []
    layer = _classifier_layer(model, num_labels)
    handle = layer.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    device = next(model.parameters()).device
    out = {}
    try:
        for split in SPLITS:
            vectors, labels = [], []
            for batch, batch_labels in _batches(features[split], collator, batch_size, device):
                seen.clear()
                with torch.no_grad():
                    model(**batch)
                vectors.append(seen[-1].float().reshape(len(batch_labels), -1).cpu().numpy())
                labels += batch_labels
                bar.update(len(batch_labels))
            out[split] = (np.concatenate(vectors).astype(np.float64), np.asarray(labels))
    finally:
        handle.remove()
    return out, "the classifier layer's input"


def time_forward(model, ds, collator, batch_size: int) -> float:
    """Milliseconds per example of the whole model's forward pass (eval mode, no grad), over
    up to `TIMED_BATCHES` batches of validation rows after one warm-up batch."""
    import torch

    device = next(model.parameters()).device
    batches = _batches(ds, collator, batch_size, device)
    warm = next(batches, None)
    if warm is None:
        return float("nan")
    rows, seconds = 0, 0.0
    with torch.no_grad():
        model(**warm[0])
        for i, (batch, labels) in enumerate(batches):
            if i >= TIMED_BATCHES:
                break
            start = time.perf_counter()
            model(**batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - start
            rows += len(labels)
    if rows == 0:  # one batch only: time it again, warm
        start = time.perf_counter()
        with torch.no_grad():
            model(**warm[0])
        seconds, rows = time.perf_counter() - start, len(warm[1])
    return 1000 * seconds / rows


def _load_frozen(candidate: Candidate, args, modality, label_names, options, train):
    """The candidate as `--strategy frozen` loads it, its processor built for the training
    split `train` as a run builds it: (model, processor, pooling, the settings the training
    split chose, e.g. Whisper's window: `DataRule`s)."""
    import dataclasses

    from tl_hf.modalities.base import data_processor
    from tl_hf.model.checkpoint import build_model
    from tl_hf.model.pooling import resolve_pooling
    from tl_hf.strategies.base import apply_strategy, get_strategy

    model_args = dataclasses.replace(args.model, model_name_or_path=candidate.path, candidates=None)
    processor, rules = data_processor(modality, candidate.path, args, candidate.config, train)
    model = build_model(
        modality.auto_model,
        candidate.path,
        model_args,
        label_names,
        candidate.config,
        verbose=args.report.verbose,
        display_name=candidate.display_name,
    )
    modality.adapt_model(model, processor)
    pooling, _ = resolve_pooling(model, candidate.path, args.model.pooling, True)
    apply_strategy(model, get_strategy("frozen"), options=options)
    return model, processor, pooling, rules


def extract_candidate(
    candidate: Candidate, args, modality, dsd, options, timed: bool = True
) -> CandidateFeatures:
    """Load one candidate frozen, preprocess the rows with its own processor, store its
    features (one progress bar) and time its forward pass (`timed`; else ms_per_example is 0).

    Args:
        candidate: from `check_candidates`.
        args: the run's `RunArgs` (data flags, batch sizes, device).
        modality: the `Modality` record.
        dsd: the loaded `DatasetDict` with at least the train and validation splits.
        options: the frozen strategy's settings (`tl_hf.config.resolve.options_for`).
    """
    import torch
    from datasets import DatasetDict

    from tl_hf.console import phase, say
    from tl_hf.data.load import label_names
    from tl_hf.modalities.base import with_rules
    from tl_hf.training.features import CannotCache

    start = time.perf_counter()
    names = label_names(dsd)
    model, processor, pooling, rules = _load_frozen(
        candidate, args, modality, names, options, dsd["train"]
    )
    for rule in rules:
        say(f"{candidate.display_name}: {rule.line}")
    data = with_rules(args, rules).data
    raw = DatasetDict({split: dsd[split] for split in SPLITS})
    features = modality.preprocess(raw, processor, data, args.data.preprocessing_num_workers)
    collator = modality.build_collator(processor)
    training = args.training
    model.to(getattr(training, "device", torch.device("cpu")))
    model.eval()
    rows = sum(len(features[s]) for s in SPLITS)
    with phase(f"features {candidate.display_name}", rows, "row") as bar:
        try:
            if not _cacheable(model):
                raise CannotCache("the head sits inside the backbone module")
            vectors, source = _cached_vectors(model, features, collator, training, bar)
        except CannotCache:
            bar.reset()
            batch = training.per_device_eval_batch_size
            vectors, source = _hooked_vectors(model, features, collator, batch, len(names), bar)
    model.eval()
    batch = training.per_device_eval_batch_size
    ms = time_forward(model, features["validation"], collator, batch) if timed else 0.0
    result = CandidateFeatures(
        candidate=candidate,
        train=vectors["train"][0],
        train_labels=vectors["train"][1],
        validation=vectors["validation"][0],
        validation_labels=vectors["validation"][1],
        source=source,
        pooling=pooling,
        parameters=sum(p.numel() for p in model.parameters()),
        ms_per_example=ms,
        seconds=time.perf_counter() - start,
    )
    del model
    return result
