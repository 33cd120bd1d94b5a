"""Label-preserving augmentation of the training split, shared by every modality.

Each modality's augmentation module (`Modality.augment_module`: `tl_hf.augment.text`,
`.image`, `.audio`) provides:
- `BATCH_LEVEL` (optional): the names applied to collated batches by the modality's
  `build_batch_augment` (mixup, cutmix, SpecAugment), not per example;
- `AUGMENTATIONS`: name -> {parameter: default value} (the catalogue `--augment` checks);
- `DEFAULT_AUGMENT`: the list used when augmentation is asked for without `--augment`;
- `build_augmenter(specs, column, **context)`: a picklable callable
  `fn(batch: dict[str, list], seeds: list[int]) -> dict[str, list]` that returns the batch
  with `column` augmented, one seed per row (labels and other columns untouched);
- `write_preview(originals, augmented, column, output_dir) -> list[str]`;
- `PLAYBOOK_POLICIES` (optional): the `--augment` lists the playbook's augmentation step
  compares (`tl_hf.lab.augment_step`; "default" is `DEFAULT_AUGMENT`);
- `SMALL_DATA` (optional, a `SmallData`): the augmentation a run gets when the user leaves
  `--augment` open and the training split is small (`small_data_rule`).

Every modality also takes `FEATURE_LEVEL` (`feature_mixup`): mixup on the cached output of a
frozen backbone (`tl_hf.training.features`), for the heads trained on it (`frozen`, LP-FT's
probe), where an epoch costs a few small kernels and input augmentation would take the cache
away.

This module holds what is common: parsing `--augment`, adding K copies through
`datasets.map` (seeded, fingerprinted so reruns hit the cache, parallel), and the
on-the-fly transform that re-draws every epoch.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tl_hf.errors import UserError

AugmentFn = Callable[[dict, list], dict]

# Valid values of augmentation parameters, by parameter name, in every modality (a range
# parameter, written LOW/HIGH, has both ends checked and LOW <= HIGH). Notation: tl_hf.ranges.
PARAM_RANGES = {
    "p": "[0, 1]",
    "char_p": "[0, 1]",
    "min": "[0, inf)",
    "max": "[1, inf)",
    "char_max": "[1, inf)",
    "top_k": "[1, inf)",
    "batch_size": "[1, inf)",
    "num_beams": "[1, inf)",
    "temperature": "[0, inf)",
    "max_length": "[1, inf)",
    "scale": "(0, 1]",
    "ratio": "(0, inf)",
    "degrees": "[0, 180]",
    "brightness": "[0, inf)",
    "contrast": "[0, inf)",
    "saturation": "[0, inf)",
    "factor": "[0, inf)",
    "hue": "[0, 0.5]",
    "num_ops": "[1, inf)",
    "magnitude": "[0, 30]",
    "alpha": "(0, inf)",
    "rate": "(0, 10]",
    "semitones": "[-24, 24]",
    "fraction": "[-1, 1]",
    "time_masks": "[0, inf)",
    "freq_masks": "[0, inf)",
    "time_width": "[0, inf)",
    "freq_width": "[0, inf)",
}


# Augmentations of every modality that act on cached backbone features, not on inputs.
FEATURE_LEVEL: dict[str, dict[str, Any]] = {"feature_mixup": {"alpha": 0.4, "p": 1.0}}


def check_param(name: str, key: str, value: Any) -> None:
    """`UserError` for an augmentation parameter outside `PARAM_RANGES` (or a LOW/HIGH range
    whose LOW is above its HIGH)."""
    from tl_hf.ranges import describe_range, in_range

    values = value if isinstance(value, tuple) else (value,)
    shown = "/".join(str(v) for v in values)
    spec = PARAM_RANGES.get(key)
    if spec and any(isinstance(v, int | float) and not in_range(v, spec) for v in values):
        raise UserError(
            f"augmentation {name}:{key}={shown} is out of range: {key} must be "
            f"{describe_range(spec)}"
        )
    if isinstance(value, tuple) and len(value) == 2 and value[0] > value[1]:
        raise UserError(f"augmentation {name}:{key}={shown}: write the range LOW/HIGH")


@dataclass(frozen=True)
class AugmentSpec:
    """One `--augment` item: a name and its parameters (defaults filled in)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))


@dataclass(frozen=True)
class SmallData:
    """A modality's augmentation for small training splits, set from measurements: `augment`
    in `mode` when the training split has at most `most_per_class` rows per class and the
    strategy trains the backbone for at least `min_epochs`; `evidence` says where it was
    measured (printed)."""

    augment: tuple[str, ...]
    mode: str
    most_per_class: int
    min_epochs: float
    evidence: str


def small_data(modality) -> SmallData | None:
    """The modality's `SmallData` (its augmentation module's `SMALL_DATA`), or None."""
    if not modality.augment_module:
        return None
    return getattr(augment_module(modality), "SMALL_DATA", None)


def small_data_rule(modality, strategy, args, train) -> list:
    """The modality's `SmallData` augmentation as a rule (`tl_hf.modalities.base.DataRule`),
    when the user left augmentation open (no `--augment`, `--augment_copies` or
    `--augment_mode`), the training split `train` is at most its size per class, and the
    strategy trains the backbone from the first step (a head on frozen features keeps its
    feature cache, which on-the-fly augmentation would take away) for at least the epochs it
    was measured with (fresh draws need epochs to pay). Returns [rule] or []."""
    from tl_hf.data.load import rows_per_class
    from tl_hf.modalities.base import DataRule

    small = small_data(modality)
    left_open = args.augment.augment is None and args.augment.augment_copies == 0
    left_open = left_open and not {"augment", "augment_mode", "augment_copies"} & args.explicit
    if small is None or not left_open or strategy.head_on_frozen_features(args.strategy):
        return []
    training = args.training
    if training.max_steps > 0 or training.num_train_epochs < small.min_epochs:
        return []
    per_class = rows_per_class(train)
    if per_class > small.most_per_class:
        return []
    reason = (
        f"{per_class:.0f} training rows per class (at most {small.most_per_class}); "
        f"{small.evidence}; --augment none turns it off"
    )
    return [DataRule("augment", list(small.augment), reason, (("augment_mode", small.mode),))]


def augment_module(modality):
    """The augmentation module of a `Modality` (imported only when augmentation is used)."""
    if not modality.augment_module:
        raise UserError(f"the {modality.name} modality has no augmentations: pass --augment none")
    return importlib.import_module(modality.augment_module)


def build_augmenter(
    modality, specs: list[AugmentSpec], context: dict[str, Any]
) -> AugmentFn | None:
    """The modality's per-example augmenter of `specs` (see the module docstring); None when
    every spec acts on features (`FEATURE_LEVEL`)."""
    specs = [s for s in specs if s.name not in FEATURE_LEVEL]
    if not specs:
        return None
    return augment_module(modality).build_augmenter(specs, modality.input_column, **context)


def _cast(value: str, default: Any, where: str) -> Any:
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):  # a range written LOW-HIGH or LOW/HIGH
            sep = "/" if "/" in value else "~"
            low, high = value.split(sep) if sep in value else (value, value)
            return (type(default[0])(low), type(default[1])(high))
    except ValueError as err:
        raise UserError(f"{where}: cannot read {value!r} as {type(default).__name__}") from err
    return value  # strings and None-default parameters stay strings


def parse_augment_specs(
    items: list[str] | None, catalogue: dict[str, dict[str, Any]], defaults: list[str]
) -> list[AugmentSpec]:
    """Parse `--augment` items against a modality's catalogue.

    `None` means "the modality's default list"; `["none"]` means no augmentation.
    Unknown names or keys raise `UserError` listing the valid ones.
    """
    if items is None:
        items = defaults
    if [i.lower() for i in items] in (["none"], []):
        return []
    specs = []
    for item in items:
        name, _, rest = item.partition(":")
        name = name.strip()
        if name not in catalogue:
            raise UserError(
                f"unknown augmentation {name!r}: choose from {', '.join(sorted(catalogue))}"
            )
        params = dict(catalogue[name])
        for pair in filter(None, rest.split(",")):
            key, eq, value = pair.partition("=")
            key = key.strip()
            if not eq:
                raise UserError(
                    f"augmentation {item!r}: write parameters as KEY=VALUE, got {pair!r}"
                )
            if key not in params:
                valid = ", ".join(sorted(catalogue[name])) or "none"
                raise UserError(
                    f"augmentation {name!r} has no parameter {key!r}: valid ones are {valid}"
                )
            params[key] = _cast(value.strip(), catalogue[name][key], f"augmentation {name}:{key}")
            check_param(name, key, params[key])
        specs.append(AugmentSpec(name, params))
    return specs


def row_seed(seed: int, copy: int, index: int) -> int:
    """A 32-bit seed for one row of one copy: a pure function of (seed, copy, index), so
    results do not depend on `num_proc` or batch boundaries."""
    return (seed * 0x9E3779B1 + copy * 0x85EBCA77 + index * 0xC2B2AE3D + 0x27D4EB2F) % (2**32)


def _augment_copy(batch: dict, indices: list[int], *, fn: AugmentFn, seed: int, copy: int) -> dict:
    return fn(batch, [row_seed(seed, copy, i) for i in indices])


def augment_fingerprint(dataset, specs: list[AugmentSpec], seed: int, copy: int) -> str:
    """The cache key of one augmented copy: the data, the augmentations, the seed, the copy."""
    key = f"{dataset._fingerprint}|{';'.join(map(str, specs))}|seed={seed}|copy={copy}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def apply_augment_copies(
    dataset,
    fn: AugmentFn,
    specs: list[AugmentSpec],
    copies: int,
    seed: int,
    num_proc: int | None = None,
    batch_size: int = 64,
):
    """Return the originals followed by `copies` augmented copies (N * (K + 1) rows).

    Each copy is one `datasets.map` call with a fingerprint built from the data, the
    augmentations, the seed and the copy index: a rerun with the same seed is read back
    from the cache, another seed draws new augmentations.
    """
    from datasets import concatenate_datasets

    if copies <= 0 or not specs:
        return dataset
    pieces = [dataset]
    for copy in range(1, copies + 1):
        pieces.append(
            dataset.map(
                _augment_copy,
                fn_kwargs={"fn": fn, "seed": seed, "copy": copy},
                batched=True,
                batch_size=batch_size,
                with_indices=True,
                num_proc=num_proc if num_proc and num_proc > 1 else None,
                new_fingerprint=augment_fingerprint(dataset, specs, seed, copy),
                desc=f"Augmenting copy {copy}/{copies} ({', '.join(s.name for s in specs)})",
            )
        )
    return concatenate_datasets(pieces)


def soft_cross_entropy(logits, soft_labels):
    """Cross-entropy with soft targets (mixup, cutmix): mean over the batch of -sum(y log p)."""
    import torch

    return -(soft_labels * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


class OnTheFly:
    """A `set_transform` callable: augments (training only), then preprocesses, drawing new
    randomness on every call so each epoch sees other augmentations. Each process of a
    distributed run (`rank`) draws its own stream: with one stream per seed, the k-th row of
    every rank's batch got the same augmentation."""

    def __init__(
        self,
        augment_fn: AugmentFn | None,
        preprocess_fn: Callable[[dict], dict],
        seed: int,
        rank: int = 0,
    ):
        import numpy as np

        self.augment_fn = augment_fn
        self.preprocess_fn = preprocess_fn
        self.rng = np.random.default_rng(seed if rank == 0 else [seed, rank])

    def __call__(self, batch: dict) -> dict:
        if self.augment_fn is not None:
            n = len(next(iter(batch.values())))
            batch = self.augment_fn(
                dict(batch), [int(s) for s in self.rng.integers(0, 2**32, size=n)]
            )
        return self.preprocess_fn(batch)


def batch_level(modality, specs: list[AugmentSpec]) -> list[AugmentSpec]:
    """The specs applied to collated batches (mixup, cutmix, SpecAugment: the module's
    `BATCH_LEVEL`), not to examples."""
    if not specs:
        return []
    names = getattr(augment_module(modality), "BATCH_LEVEL", ())
    return [s for s in specs if s.name in names]


def resolve_augment_specs(modality, augment_args, explicit: set[str]) -> list[AugmentSpec]:
    """The augmentations a run asked for, validated (before any data is loaded).

    The modality's default list applies when `--augment_copies` > 0 or `--augment_mode
    on_the_fly` is given without `--augment`; `--augment none` turns augmentation off.
    """
    wanted = (
        augment_args.augment is not None
        or augment_args.augment_copies > 0
        or (augment_args.augment_mode == "on_the_fly" and "augment_mode" in explicit)
    )
    if not wanted or [i.lower() for i in augment_args.augment or ()] == ["none"]:
        return []
    module = augment_module(modality)
    catalogue = {**module.AUGMENTATIONS, **FEATURE_LEVEL}
    return parse_augment_specs(augment_args.augment, catalogue, module.DEFAULT_AUGMENT)


def feature_level(specs: list[AugmentSpec]) -> list[AugmentSpec]:
    """The specs that mix cached backbone features (`FEATURE_LEVEL`)."""
    return [s for s in specs if s.name in FEATURE_LEVEL]


def soft_labels(labels, num_labels: int):
    """[B, num_labels] float labels from class ids [B] (one-hot) or soft labels [B, C]."""
    import torch

    if labels.dim() == 2:
        return labels.float()
    return torch.nn.functional.one_hot(labels.long(), num_labels).float()


def mix_rows(
    batch: dict, keys: list[str], num_labels: int, alpha: float, rng, union: tuple = ()
) -> dict:
    """Mixup of a collated batch: each tensor under `keys` becomes lam x + (1 - lam) x[perm]
    (lam ~ Beta(alpha, alpha), one permutation of the rows, both drawn from the numpy `rng`),
    the labels soft and mixed the same way; masks under `union` keep every position either row
    had (a mixed clip spans both inputs)."""
    import torch

    soft = soft_labels(batch["labels"], num_labels)
    out = dict(batch)
    if soft.shape[0] > 1:
        lam = float(rng.beta(alpha, alpha)) if alpha > 0 else 1.0
        perm = torch.from_numpy(rng.permutation(soft.shape[0])).to(soft.device)
        for key in keys:
            out[key] = lam * batch[key] + (1 - lam) * batch[key][perm]
        for key in union:
            if key in batch:
                out[key] = torch.maximum(batch[key], batch[key][perm])
        soft = lam * soft + (1 - lam) * soft[perm]
    out["labels"] = soft
    return out


class FeatureMixup:
    """`feature_mixup`: mixup on the stored backbone output of a training batch (the floating
    `tl_hf_feature_*` tensors a frozen run's head reads), soft labels out. A batch without
    stored features (a phase that runs the backbone) passes unchanged."""

    on_features = True  # the trainer keeps it where the feature cache is on

    def __init__(self, spec: AugmentSpec, num_labels: int, seed: int, prefix: str):
        import numpy as np

        self.alpha, self.p = float(spec.params["alpha"]), float(spec.params["p"])
        self.num_labels, self.prefix = num_labels, prefix
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: dict) -> dict:
        keys = [
            k
            for k, v in batch.items()
            if k.startswith(self.prefix) and getattr(v, "is_floating_point", lambda: False)()
        ]
        if not keys or "labels" not in batch or self.rng.random() >= self.p:
            return batch
        return mix_rows(batch, keys, self.num_labels, self.alpha, self.rng)


def preview_indices(labels: list, n: int) -> list[int]:
    """`n` row indices taking each class in turn (its rows in order), so a preview of a split
    sorted by class shows several classes, not `n` examples of the first."""
    by_class: dict = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    queues, picked = list(by_class.values()), []
    depth = 0
    while len(picked) < min(n, len(labels)):
        picked += [q[depth] for q in queues if depth < len(q)][: n - len(picked)]
        depth += 1
    return picked


def write_augment_preview(
    modality, dataset, fn: AugmentFn, n: int, seed: int, output_dir: str, **context
) -> list[str]:
    """Write `n` training originals beside their augmented versions (the modality decides how:
    text pairs, an image grid, spectrograms and wav files), one class after another
    (`preview_indices`), each drawn with the seed of its copy-1 row in `datasets.map`."""
    column = modality.input_column
    labels = dataset["label"] if "label" in dataset.column_names else [0] * len(dataset)
    indices = preview_indices(labels, n)
    batch = dataset.select(indices)[:]  # decoded (images, audio), as the augmenter sees them
    augmented = fn(dict(batch), [row_seed(seed, 1, i) for i in indices])
    originals = [{column: v} for v in batch[column]]
    changed = [{column: v} for v in augmented[column]]
    return augment_module(modality).write_preview(originals, changed, column, output_dir, **context)
