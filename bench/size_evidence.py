"""Defaults at every data size (issue 24): each strategy at its default rate, trained for its
default number of epochs with early stopping off, validation AND test scored after every epoch;
the best-checkpoint and stopping rules are then replayed on the recorded epochs, so one run per
(set, size, seed, strategy) answers "which rule would have kept which epoch, and what would it
have scored on test" for every rule and patience at once.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/size_evidence.py \\
        --sets tweet_polarity:8 tweet_polarity:128 --strategies lp_ft llrd frozen [--seeds 3]
    python bench/size_evidence.py --table                 # strategies x rules, mean +- std

Rules (select: which epoch is kept; stop: what patience counts; patience in evaluations):
- loss:          select the lowest validation loss, stop on it (tl-hf's rule before issue 24)
- accuracy:      select the highest validation accuracy (ties: the lower loss), stop on it
- acc/loss-stop: select by accuracy, patience counted on the loss
- loss/acc-stop: select by loss, patience counted on accuracy
- scaled loss:   select the lowest validation loss after temperature scaling (fitted per epoch
                 on the validation logits), stop on it
- last:          the last epoch (no selection; what a plain Trainer keeps)
Results: JSON lines in bench/results/size_evidence.jsonl, one per run with its epoch records.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import quiet, report, scratch_dir, table  # noqa: E402
from defaults_evidence import DATA_FLAGS, VALIDATION_PER_CLASS, run_arm_all  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "size_evidence.jsonl")
RULES = ("loss", "accuracy", "acc/loss-stop", "loss/acc-stop", "scaled loss", "last")
PATIENCES = (3, 5)


TEST_PER_CLASS = 100  # every epoch is scored on it: the bench's cost grows with it


def _load(name: str, per_class: int, seed: int):
    """Seed `seed`'s draw of set `name`: `per_class` training rows per class, validation as
    the defaults evidence draws it, TEST_PER_CLASS test rows per class."""
    from realdata import REAL_SETS

    modality, loader = REAL_SETS[name][:2]
    validation = VALIDATION_PER_CLASS.get(per_class, max(8, per_class // 2))
    return modality, loader(per_class, validation, TEST_PER_CLASS, seed)


def _losses(logits, labels) -> tuple[float, float]:
    """The loss, and the loss after temperature scaling, as tl-hf's evaluations compute them."""
    import numpy as np

    from tl_hf.training.metrics import fit_temperature, soft_nll, targets_and_labels

    z = np.asarray(logits, dtype=np.float64)
    targets, _ = targets_and_labels(labels, z.shape[-1])
    return soft_nll(z, targets), soft_nll(z / fit_temperature(z, targets), targets)


class EveryEpochScores:
    """A `TrainerCallback` that scores the model on the validation and test splits after every
    evaluation of the main training (not a phase before it): loss, accuracy, the validation
    logits (for temperature scaling)."""

    def __init__(self, splits, collator, batch_size: int):
        self.splits, self.collator, self.batch_size = splits, collator, batch_size
        self.records: list[dict] = []

    def _score(self, model, dataset):
        import numpy as np
        import torch
        from torch.utils.data import DataLoader

        logits, labels = [], []
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for batch in DataLoader(dataset, self.batch_size, collate_fn=self.collator):
                labels.append(batch.pop("labels").numpy())
                batch = {k: v.to(model.device) for k, v in batch.items()}
                logits.append(model(**batch).logits.float().cpu().numpy())
        model.train(was_training)
        return np.concatenate(logits), np.concatenate(labels)

    def callback(self):
        from transformers import TrainerCallback

        outer = self

        class Scores(TrainerCallback):
            def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
                if model is None or not metrics or state.max_steps <= 0:
                    return
                record = {"epoch": round(state.epoch or 0, 3)}
                for name in ("validation", "test"):
                    logits, labels = outer._score(model, outer.splits[name])
                    loss, scaled = _losses(logits, labels)
                    record[f"{name}_loss"] = loss
                    record[f"{name}_accuracy"] = float((logits.argmax(-1) == labels).mean())
                    if name == "validation":
                        record["validation_scaled_loss"] = scaled
                outer.records.append(record)

        return Scores()


def arm_trace(modality: str, dsd, seed: int, strategy: str, **flags) -> dict:
    """One strategy at its default rate and epochs, early stopping off, every epoch scored."""
    from tl_hf.config import build_args
    from tl_hf.pipeline import plan_run, prepare_data, run

    args = build_args(
        modality,
        dsd,
        output_dir=scratch_dir(prefix="tl_hf_size_"),
        seed=seed,
        strategy=strategy,
        early_stopping_patience=0,
        save_strategy="no",
        load_best_model_at_end=False,
        cache_features=False,  # the callback scores the real model (the cache gives the same)
        use_cpu=True,
        disable_tqdm=True,
        **DATA_FLAGS.get(modality, {}),
        **flags,
    )
    plan = plan_run(args)
    data = prepare_data(plan, dsd)
    scores = EveryEpochScores(data.features, plan.modality.build_collator(data.processor), 64)
    result = run(args, prepared=data, callbacks=[scores.callback()])
    return {
        "strategy": strategy,
        "learning_rate": result.args.training.learning_rate,
        "epochs": result.args.training.num_train_epochs,
        "records": scores.records,
        "final_test_accuracy": result.metrics.get("test_accuracy"),
    }


def replay(records: list[dict], rule: str, patience: int) -> dict:
    """The epoch a rule keeps, where it stops, and the kept epoch's test accuracy."""
    if not records:
        return {}
    if rule == "last":
        return {"kept": len(records), "stopped": len(records), **_test(records[-1])}
    select, stop = {
        "loss": ("loss", "loss"),
        "accuracy": ("acc", "acc"),
        "acc/loss-stop": ("acc", "loss"),
        "loss/acc-stop": ("loss", "acc"),
        "scaled loss": ("scaled", "scaled"),
    }[rule]

    def key(record, which):  # larger is better
        if which == "acc":  # ties go to the lower loss
            return (record["validation_accuracy"], -record["validation_loss"])
        name = "validation_scaled_loss" if which == "scaled" else "validation_loss"
        return (-record[name],)

    kept, best_stop, waited, stopped = 0, None, 0, len(records)
    for i, record in enumerate(records):
        if key(record, select) > key(records[kept], select):
            kept = i
        if best_stop is None or key(record, stop) > best_stop:
            best_stop, waited = key(record, stop), 0
        else:
            waited += 1
            if waited >= patience:
                stopped = i + 1
                break
    return {"kept": kept + 1, "stopped": stopped, **_test(records[kept])}


def _test(record: dict) -> dict:
    return {
        "test_accuracy": record["test_accuracy"],
        "validation_accuracy": record["validation_accuracy"],
    }


def arm(args) -> None:
    quiet()
    name, per_class, strategy = args.arm.split(":")
    flags = json.loads(args.flags) if args.flags else {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        modality, dsd = _load(name, int(per_class), seed)
        start = time.perf_counter()
        out = arm_trace(modality, dsd, seed, strategy, **flags)
        out.update(
            set=name,
            per_class=int(per_class),
            arm=args.label or strategy,
            seed=seed,
            seconds=time.perf_counter() - start,
            train_rows=len(dsd["train"]),
            validation_rows=len(dsd["validation"]),
            test_rows=len(dsd["test"]),
        )
        report(out)


def print_table(path: str, patience: int) -> None:
    """Test accuracy (mean +- std over seeds) of each rule's kept epoch, per set, size, arm."""
    rows: dict[tuple, list[dict]] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.setdefault((r["set"], r["per_class"], r["arm"]), []).append(r)
    out, means = [], {rule: [] for rule in RULES}
    for (name, per_class, arm_name), runs in sorted(rows.items()):
        cells = [name, per_class, arm_name, f"{statistics.mean(r['seconds'] for r in runs):.0f} s"]
        for rule in RULES:
            acc = [replay(r["records"], rule, patience)["test_accuracy"] for r in runs]
            std = statistics.stdev(acc) if len(acc) > 1 else 0.0
            cells.append(f"{statistics.mean(acc):.3f} +- {std:.3f}")
            means[rule].append(statistics.mean(acc))
        out.append(cells)
    # every row counts once: the mean over rows, and the rule's worst row against the loss rule
    out.append(["all rows", "", "mean", ""] + [f"{statistics.mean(means[r]):.4f}" for r in RULES])
    worst = [min(a - b for a, b in zip(means[r], means["loss"])) for r in RULES]
    out.append(["all rows", "", "worst vs loss", ""] + [f"{w:+.3f}" for w in worst])
    print(f"patience {patience}")
    print(table(out, ["set", "per class", "arm", "time", *RULES]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=[], help="NAME:PER_CLASS ...")
    parser.add_argument("--strategies", nargs="+", default=["lp_ft", "llrd", "frozen"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--flags", default=None, help="JSON recipe flags for every arm")
    parser.add_argument("--label", default=None)
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        arm(args)
        return
    if args.table:
        for patience in PATIENCES:
            print_table(args.out, patience)
        return
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    extra = [f"--seeds={args.seeds}", f"--first_seed={args.first_seed}"]
    extra += [f"--flags={args.flags}"] if args.flags else []
    extra += [f"--label={args.label}"] if args.label else []
    for item in args.sets:
        for strategy in args.strategies:
            for result in run_arm_all(__file__, f"{item}:{strategy}", extra):
                with open(args.out, "a") as f:
                    f.write(json.dumps(result) + "\n")
                best = replay(result["records"], "scaled loss", 3)["test_accuracy"]
                print(
                    f"{item} {result['arm']} seed {result['seed']}: scaled-loss rule "
                    f"{best:.3f} ({result['seconds']:.0f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
