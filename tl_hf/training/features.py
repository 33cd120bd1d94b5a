"""Cached features for a frozen backbone: the backbone runs once over every split, the head
trains on what it produced.

A step between strategy and train in the flow (config -> data -> augment -> preprocess ->
model -> strategy -> **features** -> train -> report -> save/push), used by every strategy whose
`can_cache_features` says its backbone never trains (`--strategy frozen` with no trainable
backbone layers; the probe phase of `lp_ft`), with `--cache_features` (on by default).

How the feature is captured, for any family, without a per-family table of "what the head
reads": a classifier is `head(backbone(inputs))` where the backbone is one child module of the
model (`bert`, `distilbert`, `roberta`, `deberta`, `vit`, `encoder` for Whisper) that holds
every backbone parameter, and the rest of `forward` is the head: for BERT dropout + classifier
on the pooled output, for DistilBERT `hidden[:, 0]` -> pre_classifier -> ReLU -> dropout ->
classifier, for RoBERTa/ELECTRA the classification head on `hidden[:, 0]`, for DeBERTa the
new ContextPooler, and so on. So:

1. a forward hook on that child records its output (a `ModelOutput`) while the whole model
   runs once, in eval mode, under `torch.no_grad`, through `datasets.map`;
2. what is stored is that output, reduced: 3-D sequence tensors keep only their first position
   (every supported text/vision head reads the first token or the pooled output), or, where the
   head needs more (Whisper's mean over time), the whole tensor when every example has the same
   shape;
3. for training, the child is swapped for `ReplayBackbone`, a module with no parameters that
   returns the stored output, so the model's own `forward` runs exactly its head computation,
   dropout included; the Trainer, early stopping, metrics and checkpoints see the usual model;
4. which reduction is valid is not guessed: before caching, the full model and the replayed one
   score the same rows in eval mode, and a reduction is used only if the logits agree; if none
   does, caching falls back to the uncached run with a printed reason naming the model class.

At the end `restore()` puts the backbone back: the saved model is a normal full checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from tl_hf.errors import UserError
from tl_hf.training.feature_files import (
    cache_path,
    cache_verified,
    discard_unverified,
    feature_fingerprint,
    hash_backbone,
    read_output_class,
    sidecar_path,
    split_files,
    split_key,
    write_sidecar,
)

COLUMN_PREFIX = "tl_hf_feature_"
REDUCTIONS = ("first_token", "full")
CHECK_ROWS = 4  # rows scored by both paths before a reduction is trusted
TOLERANCE = 1e-5


class CannotCache(Exception):
    """Caching cannot apply to this run; the message says why (the run goes on uncached)."""


def cache_plan(
    strategy, options, explicit: bool, on_the_fly: bool, batch_level: bool
) -> tuple[bool, str]:
    """Whether a run of `strategy` (the record; `options` its settings) caches features, and
    the reason when it does not.

    Raises `UserError` when `--cache_features true` was asked for (`explicit`) where it cannot
    apply (on-the-fly augmentation redraws the inputs every epoch, so there is nothing fixed to
    cache; batch-level augmentation changes every batch).
    """
    explicit = explicit and options.cache_features
    if not options.cache_features:
        return False, "--cache_features false"
    can, why = strategy.can_cache_features(options)
    if not can:
        if explicit:
            raise UserError(
                f"--cache_features true: {why}. Drop --cache_features or use --strategy frozen"
            )
        return False, why
    if on_the_fly:
        why = "--augment_mode on_the_fly draws new inputs every epoch, so backbone features cannot be stored"
        if explicit:
            raise UserError(
                f"--cache_features true cannot apply: {why}. Use --augment_mode map with "
                "--augment_copies K (the copies are cached too), or pass --cache_features false"
            )
        return False, why
    if batch_level:
        why = "batch-level augmentation (mixup, cutmix, SpecAugment) changes the inputs of every batch"
        if explicit:
            raise UserError(
                f"--cache_features true cannot apply: {why}. Remove it from --augment, "
                "or pass --cache_features false"
            )
        return False, why
    return True, ""


def find_backbone(model, head_names: set[str]) -> tuple[str, Any]:
    """The child module of `model` that holds every backbone (non-head) parameter."""
    owners = {
        name.split(".", 1)[0] for name, _ in model.named_parameters() if name not in head_names
    }
    if len(owners) != 1:
        raise CannotCache(
            f"the backbone parameters of {type(model).__name__} are spread over "
            f"{', '.join(sorted(owners)) or 'no module'}, not one child module that can be replayed"
        )
    name = owners.pop()
    module = getattr(model, name)
    inside = [n for n in head_names if n.startswith(name + ".")]
    if inside:
        raise CannotCache(
            f"the head of {type(model).__name__} sits inside its backbone module {name!r} "
            f"(e.g. {inside[0]}), so the backbone's output is not the head's input"
        )
    return name, module


def _replay_class():
    """`ReplayBackbone`: stands in for the backbone and returns the stored output of the
    current batch (a class built on first use: torch is imported inside functions only)."""
    import torch.nn as nn

    class ReplayBackbone(nn.Module):
        def __init__(self, output_cls, dtype):
            super().__init__()
            self.output_cls = output_cls
            self.dtype = dtype
            self.pending = None

        def forward(self, *args, **kwargs):
            outputs, self.pending = self.pending, None
            if outputs is None:
                raise RuntimeError(
                    "the cached-feature backbone was called without stored features: "
                    "pass the tl_hf_feature_* columns to the model"
                )
            return outputs

    return ReplayBackbone


def _reduce(outputs, reduction: str) -> dict[str, Any]:
    """The tensors of a backbone output worth storing, under one reduction."""
    import torch

    kept = {}
    for key, value in outputs.items():
        if not isinstance(value, torch.Tensor):
            continue  # tuples of all hidden states / attentions are not requested, so not stored
        if reduction == "first_token" and value.dim() == 3:
            value = value[:, :1]
        kept[key] = value.detach()
    return kept


@dataclass
class FeatureCache:
    """A model switched to cached features; `restore()` switches it back."""

    model: Any
    backbone_name: str
    backbone: Any
    replay: Any
    reduction: str
    columns: list[str]
    features: Any = None  # the cached DatasetDict (labels + tl_hf_feature_* columns)
    handles: list[Any] = field(default_factory=list)

    def attach(self) -> None:
        """Train/evaluate on stored features: the backbone is replaced by the replay module."""
        if self.handles:
            return
        setattr(self.model, self.backbone_name, self.replay)
        self.handles.append(self.model.register_forward_pre_hook(self._feed, with_kwargs=True))

    def restore(self) -> None:
        """Put the real backbone back (the model then takes raw inputs again)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        setattr(self.model, self.backbone_name, self.backbone)

    def _feed(self, module, args, kwargs):
        stored = {
            k[len(COLUMN_PREFIX) :]: kwargs.pop(k)
            for k in list(kwargs)
            if k.startswith(COLUMN_PREFIX)
        }
        if stored:
            self.replay.pending = self.replay.output_cls(
                **{
                    k: v.to(self.replay.dtype) if v.is_floating_point() else v
                    for k, v in stored.items()
                }
            )
        return args, kwargs


def _device_of(model):
    return next(model.parameters()).device


def _run_rows(model, backbone, collator, rows: list[dict]) -> tuple[Any, Any]:
    """Logits of the full model and the backbone's output on rows (eval mode, no grad)."""
    unlabelled = [{k: v for k, v in r.items() if k != "labels"} for r in rows]
    return _run_batch(model, backbone, collator(unlabelled))


def _run_batch(model, backbone, batch: dict) -> tuple[Any, Any]:
    import torch

    captured = {}

    def hook(module, args, output):
        captured["out"] = output

    device = _device_of(model)
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    handle = backbone.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(**batch).logits
    finally:
        handle.remove()
    if "out" not in captured:
        raise CannotCache(f"{type(model).__name__}.forward never called its backbone module")
    return logits, captured["out"]


def _check_reduction(cache: FeatureCache, collator, rows: list[dict]) -> str | None:
    """Score rows through the full model and through the replay; None when they agree."""
    import torch

    if cache.reduction == "full" and any("attention_mask" in r for r in rows):
        return "inputs of different lengths (the whole sequence would have to be stored padded)"
    logits, outputs = _run_rows(cache.model, cache.backbone, collator, rows)
    stored = _reduce(outputs, cache.reduction)
    cache.replay.output_cls = type(outputs)
    cache.attach()
    try:
        with torch.no_grad():
            replayed = cache.model(**{COLUMN_PREFIX + k: v for k, v in stored.items()}).logits
    except Exception as err:  # the head reads something the stored output does not hold
        return f"the head failed on the stored output ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
    finally:
        cache.restore()
    gap = (replayed - logits).abs().max().item()
    if gap > TOLERANCE * max(1.0, logits.abs().max().item()):
        return f"logits differ by {gap:.3g}"
    return None


def build_feature_cache(
    model, features, collator, head_names, training_args, log=print, on_rows=None, views=None
):
    """Run the frozen backbone once over every split of `features` and switch `model` to
    stored features.

    Args:
        model: the classifier, strategy already applied (backbone frozen).
        features: the preprocessed `DatasetDict` (train, validation, maybe test).
        collator: the modality's collator (pads a list of preprocessed rows into a batch).
        head_names: `tl_hf.strategy.head_parameter_names(model)`.
        training_args: the `TrainingArguments` (batch size, `main_process_first`).
        log: where progress lines go.
        on_rows: called with the number of rows after each batch through the backbone
            (the phase's progress bar).
        views: `--tta` (n, mirrors): validation/test store n views (`tta.view_features`).

    Returns:
        A `FeatureCache` whose `features` replace the preprocessed splits, with the model
        attached (training on stored features); call `restore()` before saving.

    Raises:
        CannotCache: with the reason, when no reduction reproduces the model's logits.
    """
    import torch
    from datasets import DatasetDict

    name, backbone = find_backbone(model, head_names)
    dtype = next(backbone.parameters()).dtype
    replay = _replay_class()(None, dtype)
    backbone_hash = hash_backbone(backbone)
    was_training = model.training
    model.eval()
    model.to(getattr(training_args, "device", torch.device("cpu")))
    try:
        cache = _stored_cache(model, name, backbone, replay, features, backbone_hash, views)
        if cache is None:
            cache = _checked_cache(model, name, backbone, replay, features, collator)
        cached = {}
        with training_args.main_process_first(desc="feature cache"):
            for split, ds in features.items():
                cached[split] = _cache_split(
                    cache,
                    ds,
                    collator,
                    backbone_hash,
                    training_args.per_device_eval_batch_size,
                    on_rows,
                    None if split == "train" else views,
                )
    finally:
        model.train(was_training)
    cache.features = DatasetDict(cached)
    cache.columns = [c for c in cache.features["train"].column_names if c.startswith(COLUMN_PREFIX)]
    cache.features = cache.features.with_format("torch")
    cache.attach()
    log(
        f"cached features: backbone {type(backbone).__name__} ({name}), stored {', '.join(cache.columns)} "
        f"({cache.reduction}); the backbone runs once, the head trains on the stored features"
    )
    return cache


def _stored_cache(
    model, name, backbone, replay, features, backbone_hash, views
) -> FeatureCache | None:
    """The cache under a reduction already stored for every split (None: there is none). It was
    checked when it was written: reuse it without running the backbone at all."""
    model_class = type(model).__name__

    def stored(r):
        keys = {s: split_key(r, None if s == "train" else views) for s in features}
        files = (split_files(ds, backbone_hash, model_class, keys[s]) for s, ds in features.items())
        return all(cache_verified(*f) for f in files)

    reduction = next((r for r in REDUCTIONS if stored(r)), None)
    if reduction is None:
        return None
    cache = FeatureCache(model, name, backbone, replay, reduction, [])
    sidecar = split_files(features["train"], backbone_hash, model_class, reduction)[1]
    replay.output_cls = read_output_class(sidecar)
    return cache


def _checked_cache(model, name, backbone, replay, features, collator) -> FeatureCache:
    """The cache under the first reduction whose replay reproduces the model's logits on a few
    training rows; raises `CannotCache` with every reduction's reason when none does."""
    rows = [features["train"][i] for i in range(min(CHECK_ROWS, len(features["train"])))]
    reasons = []
    for reduction in REDUCTIONS:
        cache = FeatureCache(model, name, backbone, replay, reduction, [])
        problem = _check_reduction(cache, collator, rows)
        if problem is None:
            return cache
        reasons.append(f"{reduction}: {problem}")
    raise CannotCache(
        f"no stored form of {type(model).__name__}'s backbone output reproduces its "
        f"logits ({'; '.join(reasons)})"
    )


def _cache_split(
    cache: FeatureCache, ds, collator, backbone_hash: str, batch_size: int, on_rows=None, views=None
):
    """One split through the backbone via `datasets.map`, cached by an explicit fingerprint;
    `views`: (n, mirrors) to store the backbone's output on every test-time view."""
    import torch

    from tl_hf.augment.tta import view_features

    key = split_key(cache.reduction, views)
    fingerprint = feature_fingerprint(
        ds._fingerprint, backbone_hash, type(cache.model).__name__, key
    )
    # an in-memory dataset gets a cache file of its own, so reruns find it
    cache_file = None if ds.cache_files else cache_path(ds, fingerprint)
    if cache_file is not None:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
    sidecar = sidecar_path(ds, fingerprint)
    discard_unverified(cache_path(ds, fingerprint), sidecar)
    model, backbone, reduction = cache.model, cache.backbone, cache.reduction

    def extract(batch):
        n = len(next(iter(batch.values())))
        inputs = collator([{k: batch[k][i] for k in batch if k != "labels"} for i in range(n)])

        def run(b):
            return _reduce(_run_batch(model, backbone, b)[1], reduction)

        if views is not None:
            out = view_features(inputs, *views, run)
        else:
            out = {COLUMN_PREFIX + k: v.float().cpu().numpy() for k, v in run(inputs).items()}
        out["labels"] = batch["labels"]
        if on_rows is not None:
            on_rows(n)
        return out

    with torch.no_grad():
        out = ds.map(
            extract,
            batched=True,
            batch_size=batch_size,
            remove_columns=ds.column_names,
            new_fingerprint=fingerprint,
            cache_file_name=cache_file,
            desc="Caching backbone features",
        )
    written = out.cache_files[0]["filename"] if out.cache_files else cache_file
    write_sidecar(sidecar, written, cache.replay.output_cls, key)
    return out


def feature_collator(rows: list[dict]) -> dict:
    """Stack stored features and labels into a batch."""
    import torch

    return {k: torch.stack([torch.as_tensor(r[k]) for r in rows]) for k in rows[0]}
