"""How long a finished tl-hf process takes to end: the recipe's `main()` on the embedded MiniLM
(a few steps, test predictions, saving), then either `sys.exit` (the interpreter tears down
every module and object) or `tl_hf.cli.process.exit_process` (threads joined, atexit handlers
run, streams flushed, `os._exit`), each arm in a fresh process, alternating. The child prints
when `main()` returned (from its own start); the parent times the process from start to end.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_process_exit.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = """
import sys, time
start = time.time()
from tl_hf.cli.process import exit_process
from tl_hf.cli.recipe import main
code = main("text", sys.argv[2:])
print(f"RETURNED {time.time() - start:.3f}", flush=True)
exit_process(code) if sys.argv[1] == "exit_process" else sys.exit(code)
"""
FLAGS = ["--max_train_samples", "32", "--max_eval_samples", "16", "--max_test_samples", "16",
         "--max_steps", "2", "--use_cpu", "--report_to", "none"]  # fmt: skip


def run(arm: str) -> tuple[float, float]:
    """(seconds until main() returned, seconds from main()'s return to the process's end)."""
    out = tempfile.mkdtemp(prefix="tl_hf_exit_")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, arm, *FLAGS, "--output_dir", out],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    total = time.time() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RETURNED ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-2000:])
        raise SystemExit(f"arm {arm} failed (exit {proc.returncode})")
    returned = float(lines[-1].split()[1])
    return returned, total - returned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    arms = ("sys.exit", "exit_process")
    ends: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(args.repeats):
        for arm in arms:
            returned, end = run(arm)
            ends[arm].append(end)
            print(
                f"{arm:13s} main() returned at {returned:6.2f} s, process ended {end:5.2f} s later"
            )
    means = {arm: statistics.mean(v) for arm, v in ends.items()}
    print(
        f"after main(): sys.exit {means['sys.exit']:.2f} s, exit_process "
        f"{means['exit_process']:.2f} s (mean of {args.repeats}); saved "
        f"{means['sys.exit'] - means['exit_process']:.2f} s per process"
    )


if __name__ == "__main__":
    main()
