"""Soak: the text recipe on a tiny model, killed with SIGKILL at a random moment and resumed
with `--resume`, many times over; every resumed run must reach the uninterrupted run's best
epoch, metrics and history. Every run folder also holds the user's files (the very training
file the run reads, and notes; `--allow_other_files`): none may be lost or changed.

    python bench/soak_resume.py [--runs 20] [--seed 0]

Prints one row per run (where it was killed, what the folder held then, whether the resumed
run matched) and the totals. Half the kills are by timing (uniform over the uninterrupted
run's wall time: they land wherever the moment falls, often in start-up); the other half at
a random point of tests/kill_driver.py (data preparation, a random optimizer step, inside a
random evaluation, while saving a random checkpoint, before the finished marker).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from conftest import make_tiny_bert, sentiment_rows, write_csv  # noqa: E402

from tl_hf.output.save import latest_complete_checkpoint  # noqa: E402

ENV = {
    **os.environ,
    "PYTHONPATH": str(REPO),
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}
TOLERANCE = 1e-5


USER_NOTES = "my notes: tl-hf must never touch this file\n"


def put_user_files(out: Path, data: str) -> dict[str, bytes]:
    """The user's files in the run folder: the training file the run reads, and notes."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.csv").write_bytes(Path(data).read_bytes())
    (out / "notes.txt").write_text(USER_NOTES)
    return {name: (out / name).read_bytes() for name in ("train.csv", "notes.txt")}


def user_files_intact(out: Path, files: dict[str, bytes]) -> bool:
    return all((out / n).is_file() and (out / n).read_bytes() == b for n, b in files.items())


def command(model: str, data: str, out: Path) -> list[str]:
    data = str(out / "train.csv")  # the copy inside the run folder (put_user_files)
    return [
        sys.executable,
        str(REPO / "tests" / "kill_driver.py"),
        "text",
        "--model_name_or_path",
        model,
        "--train_file",
        data,
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "8",
        "--per_device_train_batch_size",
        "8",
        "--logging_steps",
        "3",
        "--strategy",
        "full",
        "--learning_rate",
        "1e-2",
        "--warmup_steps",
        "0",
        "--early_stopping_patience",
        "2",
        "--validation_split_percentage",
        "20",
        "--use_cpu",
        "--seed",
        "3",
        "--disable_tqdm",
        "true",
        "--allow_other_files",
    ]


def outcome(out: Path) -> dict:
    results = json.loads((out / "all_results.json").read_text())
    history = json.loads((out / "training_history.json").read_text())
    return {
        "best_epoch": results["best_epoch"],
        "stopped_epoch": results["stopped_epoch"],
        "eval_loss": results["eval_loss"],
        "eval_accuracy": results["eval_accuracy"],
        "history": [(r["step"], r["eval_loss"]) for r in history["eval"]],
        "train_steps": [r["step"] for r in history["train"]],
    }


def same(a: dict, b: dict) -> tuple[bool, float]:
    gap = max(
        [abs(a["eval_loss"] - b["eval_loss"])]
        + [abs(x[1] - y[1]) for x, y in zip(a["history"], b["history"], strict=False)]
    )
    ok = (
        a["best_epoch"] == b["best_epoch"]
        and a["stopped_epoch"] == b["stopped_epoch"]
        and a["eval_accuracy"] == b["eval_accuracy"]
        and [s for s, _ in a["history"]] == [s for s, _ in b["history"]]
        and a["train_steps"] == b["train_steps"]
        and gap <= TOLERANCE * max(1.0, abs(a["eval_loss"]))
    )
    return ok, gap


def stage_of(out: Path) -> str:
    if (out / "all_results.json").exists():
        return "finished"
    latest = latest_complete_checkpoint(str(out))
    if latest:
        return os.path.basename(latest)
    if (out / "training_history.json").exists():
        return "epoch 1 (no checkpoint)"
    return "before training"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="tl_hf_soak_"))
    model = make_tiny_bert(root / "tiny_bert")
    rows = sentiment_rows(60, seed=1)
    noise = random.Random(0)
    for row in rows:  # label noise: the model overfits, early stopping triggers
        if noise.random() < 0.25:
            row["sentiment"] = "neg" if row["sentiment"] == "pos" else "pos"
    data = write_csv(root / "noisy.csv", rows)

    start = time.time()
    base = root / "uninterrupted"
    put_user_files(base, data)
    subprocess.run(command(model, data, base), env=ENV, check=True, capture_output=True)
    wall = time.time() - start
    expected = outcome(base)
    steps, epochs = expected["history"][-1][0], expected["stopped_epoch"]
    print(
        f"uninterrupted: {wall:.1f} s, best epoch {expected['best_epoch']} of "
        f"{expected['stopped_epoch']}, eval_loss {expected['eval_loss']:.6f}"
    )
    print(
        f"{'run':>3}  {'kill at':>12}  {'folder held':<24} {'resume':>6}  {'match':<5}  "
        "user files  max gap"
    )
    matched = killed = matched_killed = intact = 0
    for run in range(1, args.runs + 1):
        out = root / f"run{run:02d}"
        files = put_user_files(out, data)
        env, point = dict(ENV), None
        if run % 2 == 0:  # a chosen point of the run
            point = rng.choice(
                [
                    "data",
                    f"step:{rng.randint(1, steps - 1)}",
                    f"evaluate:{rng.randint(1, epochs)}",
                    f"save:{rng.randint(1, epochs)}",
                    "final",
                ]
            )
            env["TL_HF_KILL_AT"] = point
        proc = subprocess.Popen(
            command(model, data, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if point is None:
            delay = rng.uniform(0.5, wall)
            time.sleep(delay)
            point = f"{delay:.1f} s"
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        was_killed = proc.wait() == -signal.SIGKILL
        killed += was_killed
        held = stage_of(out)
        t0 = time.time()
        if held == "finished":  # the kill came after the finished marker: nothing to resume
            resumed = subprocess.CompletedProcess([], 0)
        else:
            resumed = subprocess.run(
                [*command(model, data, out), "--resume"], env=ENV, capture_output=True, text=True
            )
        resume_s = time.time() - t0
        kept = user_files_intact(out, files)
        intact += kept
        if resumed.returncode != 0:
            tail = resumed.stderr.strip().splitlines()[-1:] or ["?"]
            print(f"{run:>3}  {point:>12}  {held:<24} {'FAIL':>6}  -      {tail[0][:80]}")
            continue
        ok, gap = same(expected, outcome(out))
        matched += ok
        matched_killed += ok and was_killed
        note = "" if was_killed else " (finished before the kill came)"
        print(
            f"{run:>3}  {point:>12}  {held:<24} {resume_s:5.1f}s  {'yes' if ok else 'NO':<5}  "
            f"{'intact' if kept else 'LOST':<10}  {gap:.2e}{note}"
        )
    print(
        f"{matched}/{args.runs} runs reached the uninterrupted best epoch, metrics and history; "
        f"{matched_killed}/{killed} of those SIGKILLed mid-run did, after --resume; "
        f"user files intact in {intact}/{args.runs} folders; "
        f"total {time.time() - start:.0f} s; folders in {root}"
    )


if __name__ == "__main__":
    main()
