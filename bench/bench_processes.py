"""1 vs 2 CPU processes on the text recipe, identical work: the embedded MiniLM fine-tuned
on 200 BBC News articles for one epoch, global batch 16 (1 x 16 against 2 x 8, so the same
optimizer steps over the same examples), max_seq_length 128, no evaluation during training.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_processes.py [--recipe text]

Prints each launch command, the training samples/s of each run (training examples / the
Trainer's train_runtime, which excludes start-up and data preparation) and the ratio.
Target: 2 processes >= 1.5x one (one thread each; plain Trainer measured 1.5x on 2 cores).
About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
GLOBAL_BATCH = 16
TRAIN_SAMPLES = 200


def recipe_flags(recipe: str) -> list[str]:
    """The workload of each recipe: its embedded model on a slice of its embedded data."""
    if recipe == "text":
        from tl_hf.embedded.text import bbc_news_folder, minilm_path

        return [
            "--model_name_or_path",
            minilm_path(),
            "--dataset_name",
            bbc_news_folder(),
            "--max_seq_length",
            "128",
        ]
    raise SystemExit(f"no workload for the {recipe} recipe yet: add it to recipe_flags()")


def run(recipe: str, processes: int, out: str) -> dict:
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    launcher = (
        [
            accelerate,
            "launch",
            "--config_file",
            os.path.join(REPO, "accelerate_configs", "cpu_2proc.yaml"),
        ]
        if processes == 2
        else [sys.executable]
    )
    cmd = [
        *launcher,
        os.path.join(REPO, "recipes", f"{recipe}_classify.py"),
        *recipe_flags(recipe),
        "--max_train_samples",
        str(TRAIN_SAMPLES),
        "--max_eval_samples",
        "10",
        "--max_test_samples",
        "10",
        "--num_train_epochs",
        "1",
        "--strategy",
        "full",
        "--per_device_train_batch_size",
        str(GLOBAL_BATCH // processes),
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
        "--early_stopping_patience",
        "0",
        "--logging_steps",
        "100",
        "--seed",
        "42",
        "--use_cpu",
        "--output_dir",
        out,
    ]
    print(f"$ OMP_NUM_THREADS=1 {shlex.join(cmd)}", flush=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    with open(os.path.join(out, "all_results.json")) as f:
        results = json.load(f)
    return {
        "samples_per_s": results["train_samples"] / results["train_runtime"],
        "train_runtime": results["train_runtime"],
        "wall": wall,
        "train_samples": results["train_samples"],
        "train_loss": results["train_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="text", choices=["text", "image", "audio"])
    recipe = parser.parse_args().recipe
    with tempfile.TemporaryDirectory() as tmp:
        one = run(recipe, 1, os.path.join(tmp, "one"))
        two = run(recipe, 2, os.path.join(tmp, "two"))
    for name, r in (("1 process ", one), ("2 processes", two)):
        print(
            f"{name}: {r['samples_per_s']:.2f} samples/s ({r['train_samples']} samples in {r['train_runtime']:.1f} s "
            f"of training, {r['wall']:.0f} s wall with start-up; train loss {r['train_loss']:.4f})"
        )
    ratio = two["samples_per_s"] / one["samples_per_s"]
    print(
        f"ratio 2/1 processes: {ratio:.2f}x (target >= 1.5x): {'met' if ratio >= 1.5 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
