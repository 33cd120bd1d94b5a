"""The recipe defaults against a plain `transformers.Trainer`, the playbook and SetFit, on real
labelled sets (`bench/realdata.py`), small training splits, 3 seeds (issue 12).

Arms, each on the same checkpoint (the modality's embedded one) and the same splits (drawn
per seed: seed s draws its own train/validation/test from the set, every arm gets that draw):

- plain: `transformers.Trainer` with the transformers example scripts' defaults: learning
  rate 5e-5, 3 epochs, batch 8, full fine-tuning, the last epoch kept, no validation. Inputs
  are the modality's own preprocessing (the same tensors the recipe trains on).
- default: `tl_hf.train_classifier(modality, data)`: the recipe with no flags beyond the data.
- playbook: `tl_hf.run_playbook` once per set (seed 0's draw, `--seeds 1`, a time budget);
  its winning configuration then trains on each seed's draw and is scored on its test split.
- setfit: `setfit` 1.2 with its default arguments on the same sentence-embedding checkpoint
  (text only; needs `pip install setfit`).

Each (set, arm) runs in a fresh process; every seed's result is appended to a JSON-lines file
(`--out`), so arms can run in pieces; `--table` prints mean +- std per set and arm from it.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/defaults_evidence.py \\
        --sets tweet_polarity:32 chat_topics:32 --arms plain default playbook [--seeds 3]
    python bench/defaults_evidence.py --table
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

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "defaults_evidence.jsonl")
# Flags that describe the data rather than the training: the same for every arm.
DATA_FLAGS = {
    "image": {"image_size": 64},  # 8x8 and 28x28 digits: 64 px, not the checkpoint's 224
    "audio": {"max_duration_seconds": 3.0},  # prompts of 0.5-10 s at 8 kHz
}
VALIDATION_PER_CLASS = {8: 8, 16: 8}  # few-shot: a validation split as small as the train one


def _load(name: str, per_class: int, seed: int):
    from realdata import REAL_SETS

    modality, loader = REAL_SETS[name][:2]
    validation = VALIDATION_PER_CLASS.get(per_class, max(8, per_class // 2))
    return modality, loader(per_class, validation, 200 if modality == "text" else 100, seed)


def _accuracy(predictions, labels) -> float:
    import numpy as np

    return float((np.argmax(predictions, -1) == np.asarray(labels)).mean())


def arm_plain(modality: str, dsd, seed: int) -> dict:
    """transformers.Trainer at the example scripts' defaults on the recipe's inputs."""
    from transformers import Trainer, TrainingArguments, set_seed

    from tl_hf.config import build_args
    from tl_hf.pipeline import load_model_step, plan_run, prepare_data

    out = scratch_dir(prefix="tl_hf_plain_")
    args = build_args(
        modality, dsd, output_dir=out, seed=seed, **DATA_FLAGS.get(modality, {}), use_cpu=True
    )
    plan = plan_run(args)
    data = prepare_data(plan, dsd)
    set_seed(seed)
    model = load_model_step(plan, data)
    training = TrainingArguments(
        output_dir=out,
        learning_rate=5e-5,
        num_train_epochs=3,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=32,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        seed=seed,
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=not data.keep_raw_columns,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=data.features["train"],
        data_collator=plan.modality.build_collator(data.processor),
    )
    trainer.train()
    test = trainer.predict(data.features["test"])
    return {"test_accuracy": _accuracy(test.predictions, test.label_ids)}


def train_default(modality: str, dsd, seed: int, **flags):
    """The recipe on `dsd` in a scratch folder: (its result, the folder)."""
    import tl_hf

    output_dir = scratch_dir(prefix="tl_hf_default_")
    result = tl_hf.train_classifier(
        modality,
        dsd,
        output_dir=output_dir,
        seed=seed,
        use_cpu=True,
        disable_tqdm=True,
        **{**DATA_FLAGS.get(modality, {}), **flags},  # flags may override the data's own
    )
    return result, output_dir


def arm_default(modality: str, dsd, seed: int, **flags) -> dict:
    result, output_dir = train_default(modality, dsd, seed, **flags)
    return {
        "test_accuracy": result.metrics["test_accuracy"],
        "strategy": result.args.strategy.strategy,
        "learning_rate": result.args.training.learning_rate,
        "pooling": result.args.model.pooling,
        "best_epoch": result.metrics.get("best_epoch"),
        "calibration": _calibration(output_dir),
    }


def _calibration(output_dir: str) -> dict | None:
    """The run's temperature and ECE before/after it on validation and test (calibration.json)."""
    from tl_hf.output.names import CALIBRATION_FILE

    path = os.path.join(output_dir, CALIBRATION_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    return {
        "temperature": record["temperature"],
        **{
            f"{split}_{k}": record.get(split, {}).get(k)
            for split in ("validation", "test")
            for k in ("ece", "ece_calibrated")
        },
    }


def winner_flags(result) -> dict:
    """The recipe flags of a lab/playbook winner's configuration (without its seed)."""
    from tl_hf.lab.grid import parse_augment_sets

    row = next(r for r in result.rows if r["config"] == result.winner["config"])
    flags = {"strategy": row["strategy"], "learning_rate": row["learning_rate"]}
    if row.get("model"):  # a candidate the playbook's step 0 or its ladder chose
        flags["model_name_or_path"] = row["model"]
    if row["trainable_layers"]:
        flags["trainable_layers"] = row["trainable_layers"]
    if row["llrd_decay"] is not None:
        flags["llrd_decay"] = row["llrd_decay"]
    augment = parse_augment_sets([row["augment_set"]])[row["augment_set"]]
    if augment.items != ["none"]:
        flags["augment"] = augment.items or []
        if augment.mode:
            flags["augment_mode"] = augment.mode
        if augment.copies:
            flags["augment_copies"] = augment.copies
    return {k: v for k, v in flags.items() if v != []}


def run_playbook_on(modality: str, dsd, minutes: float, **flags) -> tuple[dict, float, dict]:
    import tl_hf

    start = time.perf_counter()
    result = tl_hf.run_playbook(
        modality,
        dsd,
        output_dir=scratch_dir(prefix="tl_hf_playbook_"),
        seeds=1,
        time_budget_minutes=minutes,
        use_cpu=True,
        **{**DATA_FLAGS.get(modality, {}), **flags},
    )
    seconds = time.perf_counter() - start
    if result.winner is None:
        raise SystemExit("the playbook found no winner")
    with open(os.path.join(result.lab_dir, "playbook.json")) as f:
        trail = json.load(f)
    return winner_flags(result), seconds, trail


def arm_setfit(dsd, seed: int) -> dict:
    import numpy as np
    from setfit import SetFitModel, Trainer, TrainingArguments

    from tl_hf.modalities.text import default_model

    model = SetFitModel.from_pretrained(default_model())
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=scratch_dir(prefix="tl_hf_setfit_"), report_to="none", seed=seed
        ),
        train_dataset=dsd["train"],
        metric=lambda pred, ref: {"accuracy": float(np.mean(np.asarray(pred) == np.asarray(ref)))},
    )
    trainer.train()
    return {"test_accuracy": trainer.evaluate(dsd["test"])["accuracy"]}


def arm(args) -> None:
    """One (set, arm) in this process, every seed; one RESULT line per seed."""
    quiet()
    name, per_class, which = args.arm.split(":")
    per_class = int(per_class)
    flags = json.loads(args.flags) if args.flags else {}
    playbook, playbook_seconds = None, None
    if which == "playbook":
        modality, dsd = _load(name, per_class, 0)
        playbook, playbook_seconds, trail = run_playbook_on(
            modality, dsd, args.playbook_minutes, **json.loads(args.playbook_flags or "{}")
        )
        print(f"playbook winner on {name}:{per_class}: {playbook} ({playbook_seconds:.0f} s)")
        for step in trail["trail"]:
            print(f"trail: {step['step']}: {'ran' if step['ran'] else 'skipped'}: {step['why']}")
            for t in step.get("policies", []):  # the augmentation step's evidence
                print(
                    f"trail:   policy {t['policy']}: screen {t['screen']}, fine-tuned {t.get('fine_tune')}"
                )
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        modality, dsd = _load(name, per_class, seed)
        start = time.perf_counter()
        if which == "plain":
            out = arm_plain(modality, dsd, seed)
        elif which == "default":
            out = arm_default(modality, dsd, seed, **flags)
        elif which == "playbook":
            out = {**arm_default(modality, dsd, seed, **playbook), "flags": playbook}
            out["playbook_seconds"] = playbook_seconds
        elif which == "setfit":
            out = arm_setfit(dsd, seed)
        else:
            raise SystemExit(f"unknown arm {which}")
        out.update(
            set=name,
            per_class=per_class,
            arm=args.label or which,
            seed=seed,
            seconds=time.perf_counter() - start,
            train_rows=len(dsd["train"]),
            test_rows=len(dsd["test"]),
            extra_flags=flags,
        )
        report(out)


def load_results(paths: list[str]) -> list[dict]:
    """Every result of the JSON-lines files; a (set, size, arm) found in a later file replaces
    the earlier files' rows for it (a rerun)."""
    groups: dict[tuple, list[dict]] = {}
    for path in paths:
        if not os.path.isfile(path):
            continue
        fresh: dict[tuple, list[dict]] = {}
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    fresh.setdefault((r["set"], r["per_class"], r["arm"]), []).append(r)
        groups.update(fresh)
    return [r for rows in groups.values() for r in rows]


def _cell(runs: list[dict]) -> str:
    acc = [r["test_accuracy"] for r in runs]
    if not acc:
        return "-"
    std = statistics.stdev(acc) if len(acc) > 1 else 0.0
    secs = statistics.mean(r["seconds"] for r in runs)
    search = runs[0].get("playbook_seconds")
    spent = f"{secs:.0f} s" + (f"; playbook {search:.0f} s" if search else "")
    return f"{statistics.mean(acc):.3f} +- {std:.3f} ({spent})"


def print_table(paths: list[str], arms: list[str] | None = None) -> None:
    """Mean +- sample std of test accuracy over seeds (and the mean wall time of one run) per
    set and arm; `recipe default` is the arm named after the modality's default strategy."""
    from realdata import REAL_SETS

    from tl_hf.modality import get_modality

    by: dict[tuple, dict[str, list]] = {}
    seen: list[str] = []
    for r in load_results(paths):
        by.setdefault((r["set"], r["per_class"]), {}).setdefault(r["arm"], []).append(r)
        seen += [r["arm"]] if r["arm"] not in seen else []
    columns = arms or seen
    out = []
    for (name, per_class), per_arm in sorted(by.items()):
        modality = REAL_SETS[name][0]
        default = get_modality(modality).default_strategy
        cells = [name, modality, per_class]
        for a in columns:
            if a == "recipe default":
                cells.append(f"{_cell(per_arm.get(default, []))} [{default}]")
            else:
                cells.append(_cell(per_arm.get(a, [])))
        out.append(cells)
    print(table(out, ["set", "modality", "train per class", *columns]))


def print_calibration(paths: list[str]) -> None:
    """Mean +- std over seeds of the validation temperature and the ECE before -> after it on
    the validation and test splits, per set and arm (runs that recorded a calibration)."""

    def cell(runs: list[dict], key: str) -> str:
        values = [r["calibration"][key] for r in runs if r["calibration"].get(key) is not None]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.3f} +- {std:.3f}" if values else "-"

    by: dict[tuple, list[dict]] = {}
    for r in load_results(paths):
        if r.get("calibration"):
            by.setdefault((r["set"], r["per_class"], r["arm"]), []).append(r)
    out = [
        [*key, len(runs), cell(runs, "temperature")]
        + [
            f"{cell(runs, f'{split}_ece')} -> {cell(runs, f'{split}_ece_calibrated')}"
            for split in ("validation", "test")
        ]
        for key, runs in sorted(by.items())
    ]
    header = ["set", "per class", "arm", "seeds", "temperature", "validation ECE", "test ECE"]
    print(table(out, header))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=[], help="NAME:PER_CLASS ...")
    parser.add_argument("--arms", nargs="+", default=["plain", "default", "playbook"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--playbook_minutes", type=float, default=8.0)
    parser.add_argument("--flags", default=None, help="JSON recipe flags for the default arm")
    parser.add_argument(
        "--playbook_flags",
        default=None,
        help='JSON flags for the playbook, e.g. {"model_name_or_path": "efficientnet_lite0"}',
    )
    parser.add_argument("--label", default=None, help="the arm's name in the table")
    parser.add_argument("--out", default=OUT)
    parser.add_argument(
        "--table",
        nargs="*",
        default=None,
        metavar="FILE",
        help="print the table from these result files (default: --out); later files' "
        "(set, size, arm) rows replace earlier ones",
    )
    parser.add_argument(
        "--calibration",
        action="store_true",
        help="with --table: the temperature and ECE before -> after it instead of accuracy",
    )
    parser.add_argument("--columns", nargs="+", default=None, help="the table's arms, in order")
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        arm(args)
        return
    if args.table is not None:
        if args.calibration:
            print_calibration(args.table or [args.out])
        else:
            print_table(args.table or [args.out], args.columns)
        return
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    extra = [
        f"--seeds={args.seeds}",
        f"--first_seed={args.first_seed}",
        f"--playbook_minutes={args.playbook_minutes}",
    ]
    extra += [f"--flags={args.flags}"] if args.flags else []
    extra += [f"--playbook_flags={args.playbook_flags}"] if args.playbook_flags else []
    extra += [f"--label={args.label}"] if args.label else []
    for item in args.sets:
        for which in args.arms:
            for result in run_arm_all(__file__, f"{item}:{which}", extra):
                with open(args.out, "a") as f:
                    f.write(json.dumps(result) + "\n")
                print(
                    f"{item} {result['arm']} seed {result['seed']}: "
                    f"{result['test_accuracy']:.3f} ({result['seconds']:.0f} s)",
                    flush=True,
                )
    print_table([args.out])


def run_arm_all(script: str, name: str, extra: list[str]) -> list[dict]:
    """`run_arm`, keeping every RESULT line (one per seed)."""
    import subprocess

    from _common import ENV

    env = {**os.environ, **ENV, "HF_DATASETS_CACHE": scratch_dir(prefix="tl_hf_ev_cache_")}
    proc = subprocess.run(
        [sys.executable, script, "--arm", name, *extra], capture_output=True, text=True, env=env
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    for ln in proc.stdout.splitlines():
        if ln.startswith(("playbook winner", "trail:")):
            print(ln, flush=True)
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        print(f"arm {name} failed (exit {proc.returncode})", flush=True)
    return [json.loads(ln[len("RESULT ") :]) for ln in lines]


if __name__ == "__main__":
    main()
