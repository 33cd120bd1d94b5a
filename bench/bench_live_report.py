"""What the live report costs a run: the time of one live write (payload + sidecar file) as
the history grows, and the share of training time it takes under the monitor's throttle
(at most one write per `LIVE_MIN_INTERVAL_S`, and never more than `LIVE_COST_SHARE` of the
time). Histories are synthetic: N logged steps, 16 parameter groups with 1000 learning-rate
points, one evaluation per 10% of the run.

    PYTHONPATH=. python bench/bench_live_report.py [--steps 1000 10000 100000] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import table  # noqa: E402


def synthetic_history(steps: int) -> dict:
    from tl_hf.report.history import new_history

    history = new_history()
    history.update(num_train_epochs=10, early_stopping_patience=3)
    history["train"] = [
        {"step": i, "epoch": 10 * i / steps, "loss": 1 / (1 + i)} for i in range(1, steps + 1)
    ]
    groups = {f"depth_{g:02d}": 1e-4 * 0.8**g for g in range(16)}
    history["learning_rates"] = [
        {"step": i * steps // 1000, "epoch": i / 100, "lr": groups} for i in range(1000)
    ]
    history["eval"] = [
        {"step": e * steps // 10, "epoch": float(e), "eval_loss": 0.5, "eval_accuracy": 0.9}
        for e in range(1, 11)
    ]
    return history


def main() -> None:
    from tl_hf.report.live import live_payload, write_live
    from tl_hf.report.monitor import LIVE_COST_SHARE, LIVE_MIN_INTERVAL_S

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for steps in args.steps:
            history = synthetic_history(steps)
            write_live(folder, live_payload(history), "bench", page_too=True)
            began = time.perf_counter()
            for _ in range(args.repeats):
                write_live(folder, live_payload(history, step=steps), "bench", page_too=False)
            cost = (time.perf_counter() - began) / args.repeats
            interval = max(LIVE_MIN_INTERVAL_S, cost / LIVE_COST_SHARE)
            size = os.path.getsize(os.path.join(folder, "report.live.js"))
            rows.append([steps, cost * 1000, size / 1e6, interval, 100 * cost / interval])
    print(
        table(
            rows,
            ["logged steps", "ms per write", "sidecar MB", "write every s", "% of time"],
        )
    )


if __name__ == "__main__":
    main()
