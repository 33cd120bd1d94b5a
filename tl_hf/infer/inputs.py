"""The inputs of `tl-hf predict` / `tl-hf evaluate`, read in batches so memory stays flat in
the input's size: a CSV/TSV/JSON lines file (read row by row), a JSON document, a Parquet
file (row group by row group), a `save_to_disk` folder (memory-mapped) or a folder of media
files (class subfolders name the labels, as in training).

The input column is found as training found it (the modality's `find_input_columns`, with the
run's own `--text_column`/`--image_column`/`--audio_column` when the input has that column);
the label column, for `evaluate`, with the data step's `find_label_column`."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_hf.data.load import FILE_BUILDERS as FILE_KINDS  # suffix -> datasets builder
from tl_hf.errors import UserError

SNIFF_ROWS = 200  # rows read to find the columns (their types) before streaming


@dataclass
class InputSource:
    """Where rows come from and which columns hold what (standard name -> the input's name)."""

    path: Path
    kind: str  # csv, json, jsonl, parquet, disk, folder
    columns: dict[str, str]
    label: str | None
    total: int | None
    base_dir: Path | None = None  # relative media paths are resolved against it
    _files: list[tuple[str, str | None]] = field(default_factory=list)


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter, strict=True)
        try:
            yield from reader
        except UnicodeDecodeError as err:
            raise UserError(
                f"{path} is not UTF-8 text (near line {reader.line_num + 1}): save it as UTF-8, "
                f"e.g. iconv -f latin1 -t utf-8 {path.name}"
            ) from err
        except csv.Error as err:
            raise UserError(
                f"{path} is not valid CSV near line {reader.line_num} ({err}): an unbalanced "
                'quote? Quote fields that hold commas, double quotes inside them ("")'
            ) from err


def _json_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        first = f.read(1)
        while first and first.isspace():
            first = f.read(1)
        f.seek(0)
        if first == "[":  # one JSON document: a list of objects
            yield from json.load(f)
            return
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as err:
                    raise UserError(
                        f"line {number} of {path} is not valid JSON ({err.args[0]}): fix or "
                        "remove that line (JSON lines: one object per line)"
                    ) from err


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        yield from batch.to_pylist()


def _disk_rows(path: Path) -> Iterator[dict[str, Any]]:
    from datasets import ClassLabel

    dataset = _disk_dataset(path)
    named = {k: f.names for k, f in dataset.features.items() if isinstance(f, ClassLabel)}
    for start in range(0, len(dataset), 256):
        for row in dataset.select(range(start, min(start + 256, len(dataset)))).to_list():
            for column, names in named.items():  # labels by name, as training named them
                if isinstance(row[column], int) and 0 <= row[column] < len(names):
                    row[column] = names[row[column]]
            yield row


def _disk_dataset(path: Path):
    from datasets import Audio, DatasetDict, Image, load_from_disk

    dataset = load_from_disk(str(path))
    if isinstance(dataset, DatasetDict):
        split = "test" if "test" in dataset else next(iter(dataset))
        dataset = dataset[split]
    for name, feature in dataset.features.items():  # undecoded: the modality decodes
        if isinstance(feature, (Image, Audio)):
            dataset = dataset.cast_column(name, type(feature)(decode=False))
    return dataset


def _media_files(root: Path, extensions: tuple[str, ...]) -> list[tuple[str, str | None]]:
    """(path, label) of every media file under `root`; the label is the class subfolder
    (the first folder level), None for files directly in `root`."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        relative = Path(folder).relative_to(root)
        label = relative.parts[0] if relative.parts else None
        for name in sorted(files):
            if name.lower().endswith(extensions):
                found.append((os.path.join(folder, name), label))
    return found


def _first_rows(rows: Iterator[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    sample = []
    for row in rows:
        if not isinstance(row, dict):
            raise UserError(f"{path} holds rows that are not objects: give one object per row")
        sample.append(row)
        if len(sample) >= SNIFF_ROWS:
            break
    if not sample:
        raise UserError(f"{path} holds no rows: give a file with data rows")
    return sample


def _features(sample: list[dict[str, Any]]):
    from datasets import Dataset

    try:
        return Dataset.from_list(sample).features
    except Exception as err:  # mixed types in a column: arrow's many errors, one line
        raise UserError(
            f"cannot read the columns of the first rows ({type(err).__name__}): give every "
            "column one type"
        ) from err


def _find_columns(features, settings, modality, want_label: bool, requested_label):
    from tl_hf.data.load import find_label_column

    columns = list(features)
    label = None
    if want_label:
        label = find_label_column(columns, features, requested_label or settings.label_column)
    flag = modality.column_flags[0] if modality.column_flags else None
    recorded = getattr(settings, flag, None) if flag else None
    override = {}
    if recorded and recorded not in columns:  # the run's columns are not there: look again
        override = dict.fromkeys(modality.column_flags)
    lookup = settings.replace(**override)
    return modality.find_input_columns(columns, features, label or "", lookup), label


def open_input(path_text: str, modality, settings, want_label: bool = False, label_column=None):
    """The input at `path_text` checked and its columns found, before anything is written."""
    path = Path(path_text)
    if not path.exists():
        raise UserError(f"--input {path} does not exist: give a data file or a folder")
    if path.is_dir() and not any((path / f).exists() for f in ("dataset_dict.json", "state.json")):
        return _open_folder(path, modality, want_label)
    if path.is_dir():
        dataset = _disk_dataset(path)
        columns, label = _find_columns(
            dataset.features, settings, modality, want_label, label_column
        )
        return InputSource(path, "disk", columns, label, len(dataset))
    kind = FILE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise UserError(
            f"cannot read {path}: give a .csv, .tsv, .json, .jsonl or .parquet file or a folder"
        )
    if os.path.getsize(path) == 0:
        raise UserError(f"--input {path} is empty: give a file with a header row and data rows")
    sample = _first_rows(_reader(path, kind), path)
    columns, label = _find_columns(_features(sample), settings, modality, want_label, label_column)
    total = None
    if kind == "parquet":
        import pyarrow.parquet as pq

        total = pq.ParquetFile(path).metadata.num_rows
    return InputSource(path, kind, columns, label, total, path.parent.resolve())


def _open_folder(path: Path, modality, want_label: bool) -> InputSource:
    extensions = modality.extensions
    if not extensions:
        raise UserError(
            f"--input {path} is a folder: the {modality.name} modality reads data files only "
            "(.csv, .jsonl, .parquet) or a save_to_disk folder"
        )
    files = _media_files(path, extensions)
    if not files:
        raise UserError(
            f"--input {path} holds no {modality.name} files ({', '.join(extensions[:4])}...)"
        )
    if want_label and any(label is None for _, label in files):
        raise UserError(
            f"--input {path} has files outside class subfolders: put each file in a subfolder "
            "named by its label"
        )
    column = modality.input_column
    source = InputSource(path, "folder", {column: column}, "label" if want_label else None, None)
    source._files = files
    source.total = len(files)
    return source


def _reader(path: Path, kind: str) -> Iterator[dict[str, Any]]:
    return {"csv": _csv_rows, "json": _json_rows, "parquet": _parquet_rows}[kind](path)


def _rows(source: InputSource) -> Iterator[dict[str, Any]]:
    if source.kind == "folder":
        column = next(iter(source.columns))
        for file, label in source._files:
            yield {column: file, "label": label}
    elif source.kind == "disk":
        yield from _disk_rows(source.path)
    else:
        yield from _reader(source.path, source.kind)


def _media_value(value: Any, base_dir: Path | None) -> Any:
    """A media cell as the modality's preprocessing reads it: `{"path", "bytes"}`."""
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return {"path": str(path), "bytes": None}
    return value


def iter_batches(source: InputSource, batch_size: int) -> Iterator[tuple[int, dict[str, list]]]:
    """(index of the first row, {standard name: values, "label": raw labels}) per batch."""
    media = next(iter(source.columns)) in ("image", "audio")
    batch: dict[str, list] = {name: [] for name in [*source.columns, "label"]}
    start = count = 0
    for row in _rows(source):
        for name, column in source.columns.items():
            if column not in row:
                raise UserError(
                    f"row {count} of {source.path} has no {column!r} column: give every row it"
                )
            value = row[column]
            batch[name].append(_media_value(value, source.base_dir) if media else value)
        batch["label"].append(row.get(source.label) if source.label else None)
        count += 1
        if count - start == batch_size:
            yield start, batch
            batch = {name: [] for name in batch}
            start = count
    if count > start:
        yield start, batch


def describe(value: Any) -> str:
    """The input of a row as one CSV cell: a path, or the text itself."""
    if isinstance(value, dict):
        return str(value.get("path") or "<bytes>")
    return "" if value is None else str(value)
