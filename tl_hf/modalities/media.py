"""Media files shared by the image and audio modalities (part of the data step): finding the
media column, class-per-subfolder folders, path columns turned into `Image`/`Audio`
features, and the decode check of every file (`--skip_bad_files`).

Each media modality passes what differs: the `datasets` feature (`Image()`, `Audio()`), the
file extensions, the usual column names, and a `can_read(value)` check.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from tl_hf.console import say
from tl_hf.data.load import SPLIT_ALIASES, find_column
from tl_hf.errors import UserError


def sampled_undecoded(train, column: str, feature_type: type, limit: int) -> list:
    """Up to `limit` values of `column`, evenly spaced over the split, undecoded where the
    column is a `feature_type` (datasets `Image` or `Audio`: {"bytes", "path"}, so a rule from
    the data reads file headers, not pixels or samples)."""
    raw = train
    if isinstance(train.features.get(column), feature_type):
        raw = train.cast_column(column, feature_type(decode=False))
    step = max(1, len(raw) // limit)
    return raw.select(range(0, len(raw), step))[column]


def find_media_column(
    columns: list[str],
    features,
    label: str,
    requested: str | None,
    feature_type,
    candidates: tuple[str, ...],
    kind: str,
) -> str:
    """The media column: the one named by `--{kind}_column`, else the only column of
    `feature_type` (`Image`, `Audio`), else the first usual name among `candidates`."""
    return find_column(
        columns, features, requested, feature_type, candidates, kind, f"the {kind}", (label,)
    )


def validate_media(
    dsd, data_args, column: str, feature, can_read: Callable[[dict], str | None], kind: str
):
    """Turn a path column (relative paths resolved against the data file) or in-memory
    arrays into `feature`, then decode-check every file (see `check_media_files`)."""
    current = dsd["train"].features[column]
    if not isinstance(current, type(feature)):
        if getattr(current, "dtype", None) in ("string", "large_string"):
            source = data_args.train_file or data_args.dataset_name
            base = (
                os.path.dirname(os.path.abspath(source))
                if source and os.path.isfile(source)
                else None
            )
            dsd = path_column_to_feature(dsd, column, feature, base)
        else:  # e.g. {"array", "sampling_rate"} dicts for audio
            dsd = dsd.cast_column(column, feature)
    return check_media_files(dsd, column, feature, can_read, data_args.skip_bad_files, kind)


def check_media_files(dsd, column: str, feature, can_read, skip_bad_files: bool, kind: str):
    """Decode-check every file of an Image/Audio `column`; unreadable ones stop the run
    (named by file) or, with `--skip_bad_files`, are dropped and counted.

    `feature` is the decoding feature to cast back to; `can_read(value)` gets the undecoded
    `{"path", "bytes"}` value and returns an error message, or None when the file is fine.
    """
    import dataclasses

    from datasets import DatasetDict

    out = {}
    for split, ds in dsd.items():
        raw = ds.cast_column(column, dataclasses.replace(feature, decode=False))
        bad = []
        for i, value in enumerate(raw[column]):
            problem = can_read(value)
            if problem:
                bad.append((i, (value or {}).get("path") or f"row {i}", problem))
        if bad and not skip_bad_files:
            first = "; ".join(f"{os.path.basename(str(p))}: {why}" for _, p, why in bad[:3])
            raise UserError(
                f"{len(bad)} unreadable {kind} file(s) in the {split} split ({first}"
                f"{' ...' if len(bad) > 3 else ''}): fix or remove them, or pass --skip_bad_files"
            )
        if bad:
            say(f"skipped {len(bad)} unreadable {kind} file(s) in the {split} split")
            drop = {i for i, _, _ in bad}
            raw = raw.select([i for i in range(len(raw)) if i not in drop])
        out[split] = raw.cast_column(column, feature)
    return DatasetDict(out)


def media_folder(path: str, extensions: tuple[str, ...], feature, column: str, kind: str):
    """A class-per-subfolder folder of media files as a DatasetDict; `train/`, `validation/`
    and `test/` subfolders (each holding class subfolders) become splits."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features

    def one(root: str):
        names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        files, labels = [], []
        for label, name in enumerate(names):
            for dirpath, _, filenames in os.walk(os.path.join(root, name)):
                for fname in sorted(filenames):
                    if fname.lower().endswith(extensions):
                        files.append(os.path.join(dirpath, fname))
                        labels.append(label)
        if len(names) == 1:
            raise UserError(
                f"{root} has a single class subfolder ({names[0]}): a classifier needs at least two"
            )
        if not files:
            raise UserError(
                f"{root} holds no class subfolders with {kind} files ({', '.join(extensions)}): "
                "give a folder with one subfolder per class"
            )
        features = Features({column: feature, "label": ClassLabel(names=names)})
        return Dataset.from_dict({column: files, "label": labels}, features=features)

    splits = [
        s
        for s in os.listdir(path)
        if SPLIT_ALIASES.get(s.lower()) and os.path.isdir(os.path.join(path, s))
    ]
    if "train" in [SPLIT_ALIASES[s.lower()] for s in splits]:
        return DatasetDict({s: one(os.path.join(path, s)) for s in splits})
    return DatasetDict(train=one(path))


def path_column_to_feature(dsd, column: str, feature, base_dir: str | None):
    """A column of file paths (relative ones resolved against `base_dir`) as a media feature."""
    from datasets import DatasetDict, Value

    def absolute(batch):
        return {
            column: [
                p if os.path.isabs(p) or base_dir is None else os.path.join(base_dir, p)
                for p in batch[column]
            ]
        }

    # via plain string: CSV columns may load as large_string, which Audio cannot be cast from
    return DatasetDict(
        {
            split: ds.map(absolute, batched=True)
            .cast_column(column, Value("string"))
            .cast_column(column, feature)
            for split, ds in dsd.items()
        }
    )


class DecodeGuard:
    """A batched transform that decodes media files itself, so a file that stops decoding
    during training (replaced, truncated, its disk gone) is named instead of failing deep in
    a `datasets` traceback: the run stops with one line, or with `--skip_bad_files` the rows
    are dropped from their batch and counted.

    Args:
        preprocess: the modality's batched transform (it accepts undecoded `{"path", "bytes"}`).
        column: the media column.
        skip_bad_files: drop and count instead of stopping.
    """

    def __init__(self, preprocess: Callable, column: str, skip_bad_files: bool):
        self.preprocess = preprocess
        self.column = column
        self.skip_bad_files = skip_bad_files
        self.skipped: dict[str, str] = {}  # file -> why, over the whole run

    def __call__(self, batch):
        try:
            return self.preprocess(batch)
        except UserError:
            raise
        except Exception:  # find the rows that fail, one by one
            pass
        n = len(batch[self.column])
        good, bad = [], []
        for i in range(n):
            try:
                self.preprocess({k: v[i : i + 1] for k, v in batch.items()})
                good.append(i)
            except Exception as err:  # decoders raise many types
                value = batch[self.column][i]
                name = (value or {}).get("path") if isinstance(value, dict) else None
                bad.append((name or f"row {i}", f"{type(err).__name__}: {str(err)[:120]}"))
        if not bad:  # the batch as a whole failed, no single row did: not a file problem
            return self.preprocess(batch)
        name, why = bad[0]
        if not self.skip_bad_files or not good:
            raise UserError(
                f"{os.path.basename(str(name))} no longer decodes ({why}); it changed after the "
                "run started: restore or remove it and rerun with --resume, or pass --skip_bad_files"
            )
        for name, why in bad:
            if name not in self.skipped:
                self.skipped[name] = why
                say(
                    f"skipped {os.path.basename(str(name))}: no longer decodes ({why}); "
                    f"{len(self.skipped)} file(s) skipped so far",
                    every_rank=True,  # this rank's data loader met it
                )
        return self.preprocess({k: [v[i] for i in good] for k, v in batch.items()})


def guard_decoding(ds, column: str, preprocess: Callable, skip_bad_files: bool):
    """`ds` with `preprocess` as its transform, the media `column` decoded inside it (through
    `DecodeGuard`) rather than by `datasets` before it."""
    import dataclasses

    feature = ds.features.get(column)
    if feature is None or not hasattr(feature, "decode"):
        return ds.with_transform(preprocess)
    undecoded = ds.cast_column(column, dataclasses.replace(feature, decode=False))
    return undecoded.with_transform(DecodeGuard(preprocess, column, skip_bad_files))
