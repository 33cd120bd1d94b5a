"""Data: load a dataset from wherever the user keeps it, find and validate its columns,
encode labels as a `ClassLabel`, and carve stratified splits.

Whatever the source, the result is a `DatasetDict` with `train`, `validation` and
optionally `test`, each holding the modality's input column(s) under standard names
(`text` [+ `text_pair`], `image`, `audio`) and `label` as a `ClassLabel` shared by all splits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tl_hf.data.files import check_data_files
from tl_hf.errors import UserError

FILE_BUILDERS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
}
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "eval": "validation",
    "test": "test",
    "testing": "test",
}
LABEL_CANDIDATES = (
    "label",
    "labels",
    "class",
    "category",
    "target",
    "intent",
    "sentiment",
    "topic",
    "emotion",
    "y",
)


def _builder_for(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FILE_BUILDERS:
        raise UserError(f"cannot read {path}: use a .csv, .tsv, .json, .jsonl or .parquet file")
    return FILE_BUILDERS[suffix]


def _load_files(files: dict[str, str], cache_dir: str | None):
    from datasets import load_dataset

    for split, path in files.items():
        if not os.path.isfile(path):
            raise UserError(f"the {split} file {path} does not exist: check the path")
    builders = {_builder_for(p) for p in files.values()}
    if len(builders) > 1:
        raise UserError(
            f"data files of different formats ({', '.join(sorted(builders))}): use one format"
        )
    builder = builders.pop()
    check_data_files(files, builder)
    kwargs: dict[str, Any] = {}
    if builder == "csv" and all(p.lower().endswith(".tsv") for p in files.values()):
        kwargs["delimiter"] = "\t"
    from datasets.exceptions import DatasetGenerationError

    try:
        return load_dataset(builder, data_files=files, cache_dir=cache_dir, **kwargs)
    except DatasetGenerationError as err:  # what the checks above did not foresee
        cause = err.__cause__ or err
        raise UserError(
            f"cannot read {', '.join(files.values())} ({type(cause).__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else ''}): check the file's format"
        ) from err


def _as_dataset_dict(obj):
    from datasets import Dataset, DatasetDict

    if isinstance(obj, DatasetDict):
        return obj
    if isinstance(obj, Dataset):
        return DatasetDict(train=obj)
    raise UserError(f"expected a datasets.Dataset or DatasetDict, got {type(obj).__name__}")


def load_raw_dataset(data_args, modality, dataset=None, cache_dir: str | None = None):
    """Load the user's data as a `DatasetDict` (splits not yet normalised).

    Sources, in order: an in-memory `dataset`; `--train_file/--validation_file/--test_file`;
    `--dataset_name` as a data file, a `save_to_disk` folder, a class-per-subfolder folder
    or a Hub id; else (or with the name `embedded:...`) the modality's embedded default.
    """
    from datasets import load_dataset, load_from_disk

    if dataset is not None:
        return _as_dataset_dict(dataset)
    files = {
        split: path
        for split, path in (
            ("train", data_args.train_file),
            ("validation", data_args.validation_file),
            ("test", data_args.test_file),
        )
        if path
    }
    if files:
        if "train" not in files:
            raise UserError("--validation_file/--test_file need a --train_file too")
        return _load_files(files, cache_dir)
    name = data_args.dataset_name
    if name is None or name == modality.default_dataset:  # run_config.yaml names it so
        return modality.load_default_dataset(data_args)
    if os.path.isfile(name):
        return _load_files({"train": name}, cache_dir)
    if os.path.isdir(name):
        if any(os.path.exists(os.path.join(name, f)) for f in ("dataset_dict.json", "state.json")):
            return _as_dataset_dict(load_from_disk(name))
        return modality.load_folder(name, data_args)
    if name.startswith((".", "/", "~")) or name.endswith(tuple(FILE_BUILDERS)):
        raise UserError(
            f"--dataset_name {name} does not exist: give an existing file or folder, or a Hub id"
        )
    try:
        return load_dataset(name, data_args.dataset_config_name, cache_dir=cache_dir)
    except Exception as err:  # the Hub client raises many types; the user needs one line
        raise UserError(
            f"cannot load dataset {name!r} from the Hub ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); check the id, or the network "
            "(HF_HUB_OFFLINE=1 blocks downloads)"
        ) from err


def normalise_splits(raw):
    """Rename split aliases (valid, dev, ...) to train/validation/test; require train."""
    from datasets import DatasetDict

    out = {}
    for split, ds in raw.items():
        canonical = SPLIT_ALIASES.get(split.lower())
        if canonical is None:
            continue
        if canonical in out:
            raise UserError(f"two splits map to {canonical!r} ({', '.join(raw)}): keep one")
        out[canonical] = ds
    if "train" not in out:
        raise UserError(f"no training split among {', '.join(raw) or 'none'}: name one 'train'")
    return DatasetDict(out)


def find_column(
    columns: list[str],
    features,
    requested: str | None,
    feature_type,
    candidates: tuple[str, ...],
    kind: str,
    what: str,
    exclude: tuple[str, ...] = (),
) -> str:
    """A column found once, the same way for labels and media: the one named by
    `--{kind}_column` (`requested`), else the only column of `feature_type` (`ClassLabel`,
    `Image`, `Audio`), else the first usual name among `candidates` (case-insensitive; not in
    `exclude`). `what` names its content in the error ("the labels")."""
    if requested:
        if requested not in columns:
            raise UserError(
                f"{kind} column {requested!r} not found; columns are: {', '.join(columns)}"
            )
        return requested
    typed = [c for c in columns if isinstance(features[c], feature_type)]
    if len(typed) == 1:
        return typed[0]
    lowered = {c.lower(): c for c in columns if c not in exclude}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    raise UserError(
        f"cannot tell which column holds {what}; columns are: {', '.join(columns)}: "
        f"pass --{kind}_column"
    )


def find_label_column(columns: list[str], features, requested: str | None) -> str:
    """The label column: the one named, else a ClassLabel column, else a usual name."""
    from datasets import ClassLabel

    return find_column(
        columns, features, requested, ClassLabel, LABEL_CANDIDATES, "label", "the labels"
    )


def select_columns(raw, inputs: dict[str, str], label: str):
    """Keep the input and label columns only, renamed to standard names."""
    from datasets import DatasetDict

    out = {}
    for split, ds in raw.items():
        missing = [c for c in [*inputs.values(), label] if c not in ds.column_names]
        if missing:
            raise UserError(
                f"column {missing[0]!r} missing from the {split} split; its columns are: "
                f"{', '.join(ds.column_names)}"
            )
        ds = ds.select_columns([*inputs.values(), label])
        renames = {src: dst for dst, src in {**inputs, "label": label}.items() if src != dst}
        out[split] = ds.rename_columns(renames) if renames else ds
    return DatasetDict(out)


def encode_labels(dsd):
    """Encode `label` as one `ClassLabel` for every split, names stable and sorted.

    A ClassLabel in train keeps its names. Strings are sorted; integers sorted and named by
    their value. Labels in validation/test that training never saw are an error.
    """
    from datasets import ClassLabel, DatasetDict

    names, index = _label_names(dsd["train"])
    target = ClassLabel(names=names)
    out = {}
    for split, ds in dsd.items():
        feature = ds.features["label"]
        if isinstance(feature, ClassLabel):
            remap = _remap_names(split, feature.names, names)
            if remap is not None:
                # the lambdas stay in this function, at these columns: their qualified name and
                # positions are part of the map's fingerprint, which names the cache files
                ds = _map_labels(
                    ds,
                    split,
                    target,
                    lambda b, r=remap: {"label": [r[v] for v in b["label"]]},
                )
            out[split] = ds.cast_column("label", target)
            continue
        values = ds["label"]
        unseen = sorted({str(v) for v in values if v not in index})
        if unseen:
            raise UserError(
                f"{split} labels unseen in training: {', '.join(unseen[:10])}"
                + (" ..." if len(unseen) > 10 else "")
            )
        out[split] = _map_labels(
            ds,
            split,
            target,
            lambda b, i=index: {"label": [i[v] for v in b["label"]]},
        )
    return DatasetDict(out)


def _label_names(train) -> tuple[list[str], dict[Any, int] | None]:
    """The class names the training split defines, and the index of each raw label value
    (None when the split already holds a `ClassLabel`)."""
    from datasets import ClassLabel

    train_feature = train.features["label"]
    if isinstance(train_feature, ClassLabel):
        names = list(train_feature.names)
        index = None
    else:
        values = train["label"]
        if any(v is None for v in values):
            raise UserError(
                f"{sum(v is None for v in values)} training rows have no label: drop or fill them"
            )
        unique = set(values)
        if all(isinstance(v, (int, bool)) for v in unique):
            ordered = sorted(unique)
            names = [str(v) for v in ordered]
        elif all(isinstance(v, str) for v in unique):
            ordered = sorted(unique)
            names = ordered
        else:
            raise UserError(
                "labels must be strings or integers; found "
                f"{', '.join(sorted({type(v).__name__ for v in unique}))} values: write class names "
                "or whole numbers (fractional labels are a regression target, not classes)"
            )
        index = {v: i for i, v in enumerate(ordered)}
    if len(names) < 2:
        raise UserError(
            f"the training data has a single class ({names[0] if names else 'none'}): "
            "a classifier needs at least two"
        )
    return names, index


def _remap_names(split: str, split_names, names: list[str]) -> dict[int, int] | None:
    """How a split's own `ClassLabel` ids map onto the training names (None: they are the same
    names); a class training never saw is an error outside training."""
    if list(split_names) == names:
        return None
    extra = sorted(set(split_names) - set(names))
    if extra and split != "train":
        raise UserError(f"{split} labels unseen in training: {', '.join(extra)}")
    return {i: names.index(n) for i, n in enumerate(split_names) if n in names}


def _map_labels(ds, split: str, target, encode):
    """`ds` with its labels encoded by `encode` (a batched map) as the `ClassLabel` `target`."""
    features = ds.features.copy()
    features["label"] = target
    return ds.map(encode, batched=True, features=features, desc=f"Encoding {split} labels")


def _check_splittable(ds, fraction: float, what: str, flag: str) -> None:
    import collections

    counts = collections.Counter(ds["label"])
    n_split = int(round(len(ds) * fraction))
    num_classes = ds.features["label"].num_classes
    small = [ds.features["label"].int2str(c) for c, n in counts.items() if n < 2]
    if n_split < len(counts) or len(ds) - n_split < len(counts) or small:
        raise UserError(
            f"dataset too small to carve a stratified {what} split: {len(ds)} rows in {num_classes} classes"
            + (f", classes with a single row: {', '.join(small[:5])}" if small else "")
            + f"; give a separate {what} file/split or raise {flag}"
        )


def stratified_split(ds, fraction: float, seed: int, what: str, flag: str):
    """Split `ds` into (rest, carved) with `fraction` of the rows carved, stratified by label."""
    _check_splittable(ds, fraction, what, flag)
    parts = ds.train_test_split(test_size=fraction, stratify_by_column="label", seed=seed)
    return parts["train"], parts["test"]


def stratified_subset(ds, n: int | None, seed: int):
    """At most `n` rows of `ds`, keeping class proportions where possible."""
    if n is None or n >= len(ds):
        return ds
    if n >= ds.features["label"].num_classes:
        try:
            return ds.train_test_split(train_size=n, stratify_by_column="label", seed=seed)["train"]
        except ValueError:
            pass  # a class too small for stratification: fall back to a shuffled head
    return ds.shuffle(seed=seed).select(range(n))


def prepare_splits(dsd, data_args, seed: int):
    """Carve missing validation/test splits (stratified) and apply the max_*_samples limits."""
    from datasets import DatasetDict

    splits = dict(dsd)
    if "test" not in splits and data_args.test_split_percentage > 0:
        splits["train"], splits["test"] = stratified_split(
            splits["train"],
            data_args.test_split_percentage / 100,
            seed,
            "test",
            "--test_split_percentage",
        )
    if "validation" not in splits:
        if data_args.validation_split_percentage <= 0:
            raise UserError(
                "no validation split: give --validation_file or a --validation_split_percentage > 0 "
                "(early stopping needs one)"
            )
        splits["train"], splits["validation"] = stratified_split(
            splits["train"],
            data_args.validation_split_percentage / 100,
            seed,
            "validation",
            "--validation_split_percentage",
        )
    splits["train"] = stratified_subset(splits["train"], data_args.max_train_samples, seed)
    present = set(splits["train"]["label"])
    if len(present) < 2:
        names = splits["train"].features["label"].names
        after = (
            f"--max_train_samples {data_args.max_train_samples}"
            if data_args.max_train_samples
            else "carving the validation/test splits"
        )
        raise UserError(
            f"after {after} the training split holds a single class "
            f"({', '.join(names[i] for i in present) or 'none'}): a classifier needs two; keep "
            "more rows or give more data of each class"
        )
    splits["validation"] = stratified_subset(splits["validation"], data_args.max_eval_samples, seed)
    if "test" in splits:
        splits["test"] = stratified_subset(splits["test"], data_args.max_test_samples, seed)
    return DatasetDict({k: splits[k] for k in ("train", "validation", "test") if k in splits})


def load_classification_data(data_args, modality, seed: int, dataset=None, cache_dir=None):
    """The whole data step: load, normalise splits, select and rename columns, encode labels,
    validate the inputs, carve splits. `modality` is a `tl_hf.modality.Modality`."""
    raw = normalise_splits(load_raw_dataset(data_args, modality, dataset, cache_dir))
    train = raw["train"]
    label = find_label_column(train.column_names, train.features, data_args.label_column)
    inputs = modality.find_input_columns(train.column_names, train.features, label, data_args)
    dsd = encode_labels(select_columns(raw, inputs, label))
    dsd = modality.validate_inputs(dsd, data_args)
    return prepare_splits(dsd, data_args, seed)


def rows_per_class(train) -> float:
    """Rows per class of a split (mean over the classes of its label feature)."""
    return len(train) / max(1, train.features["label"].num_classes)


def label_names(dsd) -> list[str]:
    return list(dsd["train"].features["label"].names)
