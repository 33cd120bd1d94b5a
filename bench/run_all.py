"""Run every benchmark in bench/ back to back and write bench/RESULTS.md: the machine (CPU,
cores, load average, torch/transformers versions), each command and the table it printed.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/run_all.py [--quick] [--only frozen,memory]

The full suite takes about 15 minutes on 2 cores; `--quick` (smaller data, fewer steps and
epochs, so its ratios are rougher; no processes benchmark) under 3.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import ENV, REPO, machine  # noqa: E402

# name -> (script, full arguments, --quick arguments)
BENCHES = {
    "overhead": (
        "bench_trainer_overhead.py",
        ["--steps", "30"],
        ["--steps", "3", "--per_class", "10", "--repeats", "1"],
    ),
    "frozen": ("bench_frozen.py", [], ["--epochs", "2", "--per_class", "6", "--skip_uncached"]),
    "memory": ("bench_strategy_memory.py", [], ["--steps", "2", "--per_class", "8"]),
    "text_augment": (
        "bench_text_augment.py",
        ["--sentences", "5000", "--model_sentences", "500"],
        [
            "--sentences",
            "1000",
            "--model_sentences",
            "100",
            "--only",
            "deletion,swap,spelling,keyboard",
        ],
    ),
    "image_augment": (
        "bench_image_augment.py",
        ["--sizes", "28", "224"],
        ["--sizes", "28", "--num_proc", "1"],
    ),
    "audio_augment": ("bench_audio_augment.py", ["--clips", "100"], ["--clips", "20"]),
    "live_report": ("bench_live_report.py", [], ["--steps", "1000", "100000", "--repeats", "3"]),
    # dominated by process start-up: full suite only (None: skipped by --quick)
    "processes": ("bench_processes.py", [], None),
    # six whole runs of the embedded text default (about 10 minutes): full suite only
    "strategies": ("bench_strategies.py", [], None),
    "fixed_cost": ("bench_fixed_cost.py", ["--steps", "5", "--repeats", "2"], None),
    "host_syncs": ("bench_host_syncs.py", ["--steps", "30"], None),
    # after training (issue 29): trains the text default, about 6 minutes: full suite only
    "predict": ("predict_bench.py", [], None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help=f"comma-separated: {', '.join(BENCHES)}")
    parser.add_argument("--output", default=os.path.join(REPO, "bench", "RESULTS.md"))
    args = parser.parse_args()
    chosen = [b for b in (args.only.split(",") if args.only else BENCHES) if b]
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s) {', '.join(sorted(unknown))}: choose from {', '.join(BENCHES)}"
        )
    info = machine()
    env = {**os.environ, **ENV}
    sections, start = [], time.perf_counter()
    for name in chosen:
        script, full, quick = BENCHES[name]
        if args.quick and quick is None:
            print(f"[run_all] {name}: full suite only, skipped by --quick", flush=True)
            continue
        path = os.path.join(REPO, "bench", script)
        if not os.path.exists(path):
            print(f"[run_all] {script} not present, skipped", flush=True)
            continue
        cmd = [sys.executable, path, *(quick if args.quick else full)]
        shown = "HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/" + " ".join(
            [script, *cmd[2:]]
        )
        print(f"[run_all] {shown}", flush=True)
        t0, load = time.perf_counter(), os.getloadavg()[0]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        took = time.perf_counter() - t0
        body = (
            proc.stdout.strip()
            if proc.returncode == 0
            else f"FAILED (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
        print(body + f"\n[run_all] {name}: {took:.0f} s\n", flush=True)
        sections.append(
            f"## {name}\n\n`{shown}` ({took:.0f} s, load average {load:.2f} at start)\n\n{body}\n"
        )
    total = time.perf_counter() - start
    header = [
        "# tl-hf benchmark results",
        "",
        f"Written by `python bench/run_all.py{' --quick' if args.quick else ''}` on {info['date']} in {total / 60:.1f} min.",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores, {info['threads']} thread(s) per process",
        f"- load average at start: {' / '.join(f'{x:.2f}' for x in info['load_average'])} (1/5/15 min; the machine is "
        "shared, so absolute times vary: the ratios are measured back to back in one run)",
        f"- Python {info['python']}, torch {info['torch']}, transformers {info['transformers']}",
        "- memory: peak resident set size (`ru_maxrss`) of each arm's own process",
        "",
    ]
    with open(args.output, "w") as f:
        f.write("\n".join(header) + "\n" + "\n".join(sections))
    print(f"[run_all] wrote {args.output} ({total / 60:.1f} min)")


if __name__ == "__main__":
    main()
