"""Build the carry folder for bench/gpu_check.sh (run HERE, where PyPI and the embedded packages
are): what a bare GPU machine with torch but none of our packages lacks, under the 64 MiB a
run may take along.

    python bench/gpu_prepare.py [--carry .gpu_carry]

- `wheels/`: datasets 5.2.0, dill, multiprocess, evaluate 0.4.6, xxhash, transformers 5.23.0 and
  peft
  for CPython 3.12 on manylinux x86_64 (`pip download --no-deps --only-binary=:all:`);
- `minilm/`: the embedded all-MiniLM-L6-v2 with its weights cast to bfloat16 (the float32 file,
  91 MB, does not fit); `gpu_bench.py restore` casts them back to float32 there (bf16 keeps 8
  of float32's 24 mantissa bits: the weights differ from the originals by up to 2**-9
  relatively, far inside what fine-tuning moves them);
- `bbc.csv.gz`: BBC News as split,label,text rows (the embedded split: 250/40/90 articles per
  class for train/validation/test).

The folder is git-ignored; pass it to the device tool's `carry`.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEELS = [
    "datasets==5.2.0",
    "dill",
    "multiprocess",
    "evaluate==0.4.6",
    "xxhash",
    "transformers==5.23.0",
    "peft==0.21.2",  # the lora strategy (the fsdp_lora arm)
]
LIMIT = 64 * 2**20
SPLIT = {"train": 250, "validation": 40, "test": 90}  # articles per class


def download_wheels(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--platform", "manylinux2014_x86_64", "-d", folder]
    subprocess.run(cmd + WHEELS, check=True)


def write_minilm_bf16(folder: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from tl_hf.embedded.text import minilm_path

    source = minilm_path()
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(source):
        path = os.path.join(source, name)
        if os.path.isfile(path) and name != "model.safetensors" and not name.endswith(".bin"):
            shutil.copy(path, folder)
    weights = load_file(os.path.join(source, "model.safetensors"))
    save_file(
        {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()},
        os.path.join(folder, "model.bf16.safetensors"),
    )


def write_bbc_csv(path: str) -> None:
    from tl_hf.embedded.text import load_bbc_news

    dsd = load_bbc_news(SPLIT["train"], SPLIT["validation"], SPLIT["test"])
    names = dsd["train"].features["label"].names
    with gzip.open(path, "wt", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "label", "text"])
        for split, ds in dsd.items():
            for row in ds:
                writer.writerow([split, names[row["label"]], row["text"]])


def folder_size(folder: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--carry", default=os.path.join(REPO, ".gpu_carry"))
    parser.add_argument("--skip_wheels", action="store_true", help="keep the wheels already there")
    args = parser.parse_args()
    if not args.skip_wheels:
        shutil.rmtree(os.path.join(args.carry, "wheels"), ignore_errors=True)
        download_wheels(os.path.join(args.carry, "wheels"))
    shutil.rmtree(os.path.join(args.carry, "minilm"), ignore_errors=True)
    write_minilm_bf16(os.path.join(args.carry, "minilm"))
    write_bbc_csv(os.path.join(args.carry, "bbc.csv.gz"))
    size = folder_size(args.carry)
    for root, _, files in sorted(os.walk(args.carry)):
        for f in sorted(files):
            path = os.path.join(root, f)
            print(f"{os.path.getsize(path) / 2**20:8.2f} MiB  {os.path.relpath(path, args.carry)}")
    print(f"{size / 2**20:8.2f} MiB  in all (limit {LIMIT / 2**20:.0f} MiB)")
    if size > LIMIT:
        raise SystemExit(f"{args.carry} is over the carry limit")


if __name__ == "__main__":
    main()
