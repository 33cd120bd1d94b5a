"""`tl-hf select MODALITY` with no candidates (the installed model ladder) on real labelled sets
of bench/realdata.py: the ranking per set, with LogME, probe accuracy, size and time.

    python bench/select_ladder.py chat_topics tweet_polarity spoken_language [--per_class 20]
    python bench/select_ladder.py digits mnist_5k --extra "--image_size 64"  # as the bench trains

Each set is drawn (`--per_class` training and validation rows per class, seed 42; the test
split is not drawn: selection never reads it), saved with `save_to_disk`, and ranked by the
command itself, `tl-hf select MODALITY --dataset_name FOLDER --output_dir OUT`, run as a
process and timed. Prints one line per candidate and appends one JSON line per set to
bench/results/select_ladder.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from realdata import REAL_SETS  # noqa: E402


def draw(name: str, per_class: int, folder: Path) -> tuple[str, int, int]:
    """Save the set's train and validation splits to `folder`; (modality, rows, rows)."""
    from datasets import DatasetDict

    modality, loader, _, _ = REAL_SETS[name]
    dsd = loader(per_class, per_class, 0, 42)
    DatasetDict(train=dsd["train"], validation=dsd["validation"]).save_to_disk(str(folder))
    return modality, len(dsd["train"]), len(dsd["validation"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sets", nargs="+", choices=sorted(REAL_SETS))
    parser.add_argument("--per_class", type=int, default=20)
    parser.add_argument("--results", default=str(HERE / "results" / "select_ladder.jsonl"))
    parser.add_argument(
        "--extra", default="", help="more flags for tl-hf select, e.g. '--image_size 64'"
    )
    args = parser.parse_args()
    tl_hf = [sys.executable, "-m", "tl_hf"]
    with tempfile.TemporaryDirectory(prefix="select_ladder.") as tmp:
        for name in args.sets:
            data, out = Path(tmp) / name, Path(tmp) / f"out_{name}"
            modality, n_train, n_val = draw(name, args.per_class, data)
            command = [*tl_hf, "select", modality, "--dataset_name", str(data)]
            command += ["--output_dir", str(out), *args.extra.split()]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                print(done.stdout[-2000:], done.stderr[-2000:])
                raise SystemExit(f"{name}: tl-hf select exited {done.returncode}")
            saved = json.loads((out / "selection.json").read_text())
            shown = " ".join(["tl-hf", *command[3:]]).replace(tmp + os.sep, "")
            row = {
                "bench": "select_ladder",
                "set": name,
                "modality": modality,
                "per_class": args.per_class,
                "train_rows": n_train,
                "validation_rows": n_val,
                "command": shown,
                "wall_seconds": round(seconds, 1),
                "chosen": saved["chosen"],
                "candidates": saved["candidates"],
                "left_out": saved["left_out"],
            }
            record(row, args.results)


def record(row: dict, results: str) -> None:
    """Print one set's ranking and append it to `results` (JSON lines)."""
    print(
        f"{row['set']} ({row['modality']}, {row['train_rows']} train / "
        f"{row['validation_rows']} validation rows, {row['wall_seconds']:.0f} s)"
    )
    for c in row["candidates"]:
        print(
            f"  {c['rank']}. {c['name']:22s} probe {c['probe_accuracy']:.3f}  "
            f"LogME {c['logme']:+.3f}  {c['parameters'] / 1e6:6.1f}M  "
            f"{c['ms_per_example']:7.1f} ms/ex  pass {c['seconds']:.0f} s"
        )
    Path(results).parent.mkdir(parents=True, exist_ok=True)
    with open(results, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
