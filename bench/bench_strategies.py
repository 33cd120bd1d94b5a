"""Every registered strategy on a modality's embedded default (text: MiniLM-L6 on BBC News;
image: EfficientNet-Lite0 on Fashion-MNIST; audio: Whisper tiny.en's encoder on synthesized spoken
words) or on a real set from `bench/realdata.py` (`--real NAME`), through the same pipeline as the
recipe, each strategy and seed in its own process: test accuracy, train
time (every training phase: LP-FT's probe included; run time: the whole run, data
preparation, feature caching and evaluation included), trainable parameters, optimizer state
(bytes of every tensor in `optimizer.state` after training; LP-FT: its fine-tuning phase) and
peak RSS.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_strategies.py \
        [--modality text|image|audio] [--real NAME] \
        [--max_train_samples 200 --num_train_epochs 2 --seeds 1 --strategies frozen full ...]

A quick, small-data run (defaults above) shows the relative costs; accuracy differences at 200
training rows and 2 epochs are not the converged ranking.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import quiet, report, run_arm, scratch_dir, table  # noqa: E402

DEFAULT = ("frozen", "full", "llrd", "lora", "lp_ft", "gradual")


def _value(text: str):
    """A flag's value as the recipe's parser would type it: a number or true/false, else text."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def arm(args) -> dict:
    import json

    import tl_hf
    from tl_hf.training.trainer import TLTrainer

    strategy, seed = args.arm.split(":")
    import tl_hf.training.head_loop as head_loop

    trainers = []

    def record(trainer, start: float) -> None:
        state = sum(
            t.numel() * t.element_size()
            for s in trainer.optimizer.state.values()
            for t in s.values()
            if hasattr(t, "numel")
        )
        trainers.append({"seconds": time.perf_counter() - start, "state_bytes": state})

    original, original_head = TLTrainer.train, head_loop.train_head_on_features

    def timed_train(self, *a, **k):
        start = time.perf_counter()
        out = original(self, *a, **k)
        record(self, start)
        return out

    def timed_head(trainer, *a, **k):  # cached features: the head's tight loop
        start = time.perf_counter()
        out = original_head(trainer, *a, **k)
        record(trainer, start)
        return out

    TLTrainer.train, head_loop.train_head_on_features = timed_train, timed_head
    out = scratch_dir(prefix="tl_hf_bench_strategies_")
    dataset, modality = None, args.modality
    if args.real:
        from realdata import REAL_SETS

        modality, loader = REAL_SETS[args.real][:2]
        dataset = loader()
    extra = {name: _value(text) for name, text in args.flag or []}
    start = time.perf_counter()
    result = tl_hf.train_classifier(
        modality,
        dataset,
        output_dir=out,
        strategy=strategy,
        seed=int(seed),
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        max_test_samples=args.max_test_samples,
        num_train_epochs=args.num_train_epochs,
        use_cpu=True,
        **({"learning_rate": args.learning_rate} if args.learning_rate else {}),
        **extra,
    )
    run_seconds = time.perf_counter() - start
    with open(os.path.join(out, "param_groups.json")) as f:
        groups = json.load(f)
    return {
        "test_accuracy": result.metrics["test_accuracy"],
        "train_seconds": sum(t["seconds"] for t in trainers),
        "run_seconds": run_seconds,
        "trainable": sum(g["num_params"] for g in groups),
        "state_mb": trainers[-1]["state_bytes"] / 2**20,
        "learning_rate": result.args.training.learning_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modality", default="text", help="whose embedded default to use")
    parser.add_argument("--real", default=None, help="a set of bench/realdata.py instead")
    parser.add_argument(
        "--flag",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="any other recipe flag for every arm, e.g. --flag image_size 64",
    )
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--max_train_samples", type=int, default=200)
    parser.add_argument("--max_eval_samples", type=int, default=100)
    parser.add_argument("--max_test_samples", type=int, default=250)
    parser.add_argument("--num_train_epochs", type=int, default=2)
    parser.add_argument(
        "--learning_rate", type=float, default=None, help="default: each strategy's own"
    )
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        quiet()
        report(arm(args))
        return
    extra = [
        f"--{k}={getattr(args, k)}"
        for k in ("max_train_samples", "max_eval_samples", "max_test_samples", "num_train_epochs")
    ] + ([f"--learning_rate={args.learning_rate}"] if args.learning_rate else [])
    extra += [f"--modality={args.modality}"] + ([f"--real={args.real}"] if args.real else [])
    for name, value in args.flag or []:
        extra += ["--flag", name, value]
    import statistics

    rows, full = [], None
    for strategy in args.strategies:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        runs = [run_arm(__file__, f"{strategy}:{seed}", extra) for seed in seeds]
        acc = [r["test_accuracy"] for r in runs]
        row = {
            "acc": statistics.mean(acc),
            "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            **{
                k: statistics.mean(r[k] for r in runs)
                for k in ("train_seconds", "run_seconds", "trainable", "state_mb", "peak_rss_mb")
            },
            "lr": runs[0]["learning_rate"],
        }
        full = row if strategy == "full" else full
        rows.append((strategy, row))
        print(
            f"{strategy}: {row} per seed: {[round(r['test_accuracy'], 3) for r in runs]}",
            flush=True,
        )
    print(
        f"\n{args.real or args.modality + ' embedded default'}: {args.max_train_samples} training rows, "
        f"{args.num_train_epochs} epochs, {args.max_test_samples} test rows, "
        f"{args.seeds} seed(s), "
        f"{f'learning rate {args.learning_rate}' if args.learning_rate else 'default learning rates'}"
        ", one CPU thread\n"
    )
    print(
        table(
            [
                [
                    s,
                    r["lr"],
                    f"{r['acc']:.3f} +- {r['std']:.3f}",
                    r["train_seconds"],
                    r["run_seconds"],
                    int(r["trainable"]),
                    f"{100 * r['trainable'] / full['trainable']:.1f}%" if full else "-",
                    r["state_mb"],
                    r["peak_rss_mb"],
                ]
                for s, r in rows
            ],
            [
                "strategy",
                "lr",
                "test accuracy",
                "train s",
                "run s",
                "trainable params",
                "of full",
                "optimizer state MB",
                "peak RSS MB",
            ],
        )
    )


if __name__ == "__main__":
    main()
