"""Data files checked before `datasets` reads them (part of the data step): an empty file, a
file that is not UTF-8, a CSV with unbalanced quotes, ragged rows, duplicated column names
or no data rows, a JSON lines file with a broken line. Each is one line naming the file,
where it goes wrong and the fix, instead of a `DatasetGenerationError` traceback.
"""

from __future__ import annotations

import csv
import json
import os

from tl_hf.errors import UserError


def _text(path: str, split: str) -> str:
    if os.path.getsize(path) == 0:
        raise UserError(
            f"the {split} file {path} is empty: give a file with a header row and data rows"
        )
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(
            f"the {split} file {path} is not UTF-8 text (byte 0x{data[err.start]:02x} on line "
            f"{line}): save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {os.path.basename(path)}"
        ) from err


def check_csv(path: str, split: str, delimiter: str = ",") -> None:
    """Header present and unique, every row as wide as the header, quotes balanced."""
    text = _text(path, split)
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise UserError(
                f"the {split} file {path} has no header row: add one naming the columns"
            )
        seen, duplicated = set(), []
        for name in header:
            if name in seen:
                duplicated.append(name)
            seen.add(name)
        if duplicated:
            raise UserError(
                f"the {split} file {path} has duplicated column names ({', '.join(duplicated)}): "
                "give every column its own name"
            )
        rows = 0
        for row in reader:
            if not row:
                continue  # blank line
            rows += 1
            if len(row) != len(header):
                raise UserError(
                    f"line {reader.line_num} of the {split} file {path} has {len(row)} fields, the "
                    f"header has {len(header)}: check its quotes and delimiters"
                )
    except csv.Error as err:
        raise UserError(
            f"the {split} file {path} is not valid CSV near line {reader.line_num} ({err}): "
            'an unbalanced quote? Quote fields that hold commas, double quotes inside them ("")'
        ) from err
    if rows == 0:
        raise UserError(f"the {split} file {path} has a header but no data rows: add some")


def check_json(path: str, split: str) -> None:
    """A JSON document, or JSON lines each of which parses."""
    text = _text(path, split)
    try:
        json.loads(text)
        return
    except ValueError:
        pass  # not one document: JSON lines
    rows = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except ValueError as err:
            raise UserError(
                f"line {number} of the {split} file {path} is not valid JSON ({err.args[0]}): "
                "fix or remove that line (JSON lines: one object per line)"
            ) from err
        rows += 1
    if rows == 0:
        raise UserError(f"the {split} file {path} holds no rows: add some")


def check_data_files(files: dict[str, str], builder: str) -> None:
    """Check each `{split: path}` file that `builder` ("csv", "json", ...) is about to read."""
    for split, path in files.items():
        if builder == "csv":
            check_csv(path, split, "\t" if path.lower().endswith(".tsv") else ",")
        elif builder == "json":
            check_json(path, split)
        elif os.path.getsize(path) == 0:
            raise UserError(f"the {split} file {path} is empty: give a file with data rows")
