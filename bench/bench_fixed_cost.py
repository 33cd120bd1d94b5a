"""Fixed cost per run: a plain `transformers.Trainer` vs tl-hf end to end on the same small work
(the embedded MiniLM, --strategy full, a few steps, no evaluation or checkpoints during
training, test predictions, saving), each arm in a fresh process, alternating. The end-to-end
time runs from the process's start (interpreter, imports) to the end of the arm; the fixed
cost is end to end minus the training time. Wall times on a shared machine move by seconds
with the load, so the CPU time the process spent outside `Trainer.train` is reported too
(one thread per process: it is the work done), and the repeat with the least of it counts.
tl-hf runs with `--profile`; its table of phases is printed below.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_fixed_cost.py [--steps 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_trainer_overhead as overhead  # noqa: E402
from _common import report, run_arm, table  # noqa: E402


def _process_age() -> float:
    from tl_hf.output.timing import process_age

    return process_age() or float("nan")


def arm(args) -> dict:
    import resource

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    # CPU time as well as wall time: on a shared machine the load moves wall times by seconds,
    # while the CPU time a process spends on its own work barely changes
    train_cpu = []
    train = transformers.Trainer.train

    def timed_train(self, *a, **k):
        start = time.process_time()
        try:
            return train(self, *a, **k)
        finally:
            train_cpu.append(time.process_time() - start)

    transformers.Trainer.train = timed_train
    if args.arm == "plain":
        result = overhead.arm_plain(args)
    else:
        import json

        import tl_hf.config
        from tl_hf.output.timing import TIMINGS_FILE

        # an older checkout (the "before" of a comparison) has no --profile
        profile = hasattr(tl_hf.config, "SpeedArguments")
        result = overhead.arm_tlhf(args, **({"profile": True} if profile else {}))
        output_dir = result.pop("output_dir")
        if profile:
            with open(os.path.join(output_dir, TIMINGS_FILE)) as f:
                result["timings"] = json.load(f)
    result["wall_s"] = _process_age()
    result["fixed_s"] = result["wall_s"] - result["train_s"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    result["fixed_cpu_s"] = result["cpu_s"] - sum(train_cpu)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--per_class", type=int, default=20, help="training articles per class")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        report(arm(args))
        return
    extra = ["--steps", str(args.steps), "--batch_size", str(args.batch_size)]
    extra += ["--per_class", str(args.per_class)]
    runs: dict[str, list[dict]] = {"plain": [], "tlhf": []}
    for _ in range(args.repeats):
        for name in runs:
            runs[name].append(run_arm(__file__, name, extra))
    best = {name: min(rs, key=lambda r: r["fixed_cpu_s"]) for name, rs in runs.items()}
    plain, tlhf = best["plain"], best["tlhf"]
    each = {
        name: ", ".join(f"{r['fixed_s']:.1f} ({r['fixed_cpu_s']:.1f} CPU)" for r in rs)
        for name, rs in runs.items()
    }
    print(
        f"MiniLM-L6 full fine-tune, {args.steps} steps x batch {args.batch_size}, BBC News "
        f"({5 * args.per_class} training articles), no evaluation/checkpoints during training, "
        f"one fresh process per arm, the repeat with the least CPU time outside training of "
        f"{args.repeats} alternating ones "
        f"(fixed cost of each repeat: plain {each['plain']}; tl-hf {each['tlhf']} s)\n"
    )
    rows = [
        [
            "end to end, from process start (s)",
            plain["wall_s"],
            tlhf["wall_s"],
            tlhf["wall_s"] - plain["wall_s"],
        ],
        ["training (train_runtime, s)", plain["train_s"], tlhf["train_s"], ""],
        [
            "fixed cost = end to end - training (s)",
            plain["fixed_s"],
            tlhf["fixed_s"],
            tlhf["fixed_s"] - plain["fixed_s"],
        ],
        [
            "CPU time outside training (s)",
            plain["fixed_cpu_s"],
            tlhf["fixed_cpu_s"],
            tlhf["fixed_cpu_s"] - plain["fixed_cpu_s"],
        ],
        ["test accuracy", plain["test_accuracy"], tlhf["test_accuracy"], ""],
    ]
    print(table(rows, ["measure", "plain Trainer", "tl-hf", "tl-hf - plain (target <= 3 s)"]))
    timings = tlhf.get("timings") or {}
    if timings:
        print("\ntl-hf phases (--profile, timings.json of the fastest repeat):\n")
        print(table([[k, v] for k, v in timings.items()], ["phase", "seconds"]))


if __name__ == "__main__":
    main()
