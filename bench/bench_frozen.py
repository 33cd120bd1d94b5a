"""Frozen backbone, 10 epochs with validation every epoch: tl-hf with cached features vs tl-hf
uncached (`--cache_features false`) vs a plain `transformers.Trainer` with the backbone's
`requires_grad` off; then a second head trained on the warm cache. The embedded MiniLM on the
embedded BBC News split (100/50/100 articles per class), batch 16, learning rate 1e-3, no early
stopping, no checkpoints. Each arm runs in its own process, back to back; wall time covers data,
tokenisation, model, training, per-epoch validation, test prediction and saving.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_frozen.py [--epochs 10] [--per_class 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import plain_minilm, quiet, report, run_arm, scratch_dir, table  # noqa: E402

SEED = 42


def _data(per_class: int):
    from tl_hf.embedded.text import load_bbc_news

    return load_bbc_news(per_class, max(per_class // 2, 2), per_class)


def arm_tlhf(args, cache: bool, fast_head: bool = True) -> dict:
    import json

    from tl_hf.embedded.text import minilm_path
    from tl_hf.pipeline import train_text_classifier

    start = time.perf_counter()
    result = train_text_classifier(
        dataset=_data(args.per_class),
        model_name_or_path=minilm_path(),
        output_dir=scratch_dir(),
        strategy="frozen",
        learning_rate=1e-3,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        eval_strategy="epoch",
        save_strategy="no",
        load_best_model_at_end=False,
        early_stopping_patience=0,
        seed=SEED,
        use_cpu=True,
        cache_features=cache,
        fast_head=fast_head,
        profile=True,
    )
    with open(os.path.join(result.output_dir, "timings.json")) as f:
        timings = json.load(f)
    return {
        "total_s": time.perf_counter() - start,
        "train_s": result.metrics["train_runtime"],
        "features_s": timings.get("feature cache", 0.0),
        "test_accuracy": result.metrics["test_accuracy"],
        "cached": bool(result.metrics.get("cached_features")),
    }


def arm_plain(args) -> dict:
    import numpy as np
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    start = time.perf_counter()
    set_seed(SEED)
    dsd, tokenizer, model = plain_minilm(_data(args.per_class))
    for param in model.bert.parameters():
        param.requires_grad_(False)
    out = scratch_dir()
    training = TrainingArguments(
        output_dir=out,
        learning_rate=1e-3,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        warmup_steps=0.1,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        seed=SEED,
        use_cpu=True,
        logging_steps=10,
    )

    def accuracy(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=dsd["train"],
        eval_dataset=dsd["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=accuracy,
    )
    train_s = trainer.train().metrics["train_runtime"]
    test_accuracy = trainer.predict(dsd["test"]).metrics["test_accuracy"]
    trainer.save_model(out)
    return {
        "total_s": time.perf_counter() - start,
        "train_s": train_s,
        "features_s": 0.0,
        "test_accuracy": test_accuracy,
        "cached": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--per_class", type=int, default=100, help="training articles per class")
    parser.add_argument(
        "--skip_uncached", action="store_true", help="leave out the uncached tl-hf arm"
    )
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        quiet()
        arms = {
            "cached": lambda: arm_tlhf(args, True),
            "cached_trainer_loop": lambda: arm_tlhf(args, True, fast_head=False),
            "uncached": lambda: arm_tlhf(args, False),
            "plain": lambda: arm_plain(args),
        }
        report(arms[args.arm.replace("_warm", "")]())
        return
    extra = ["--epochs", str(args.epochs), "--per_class", str(args.per_class)]
    plain = run_arm(__file__, "plain", extra)
    cache_dir = scratch_dir(prefix="tl_hf_bench_cache_")
    cached = run_arm(__file__, "cached", extra, cache_dir)
    warm = run_arm(
        __file__, "cached_warm", extra, cache_dir
    )  # a second head: the cache is already there
    trainer_loop = run_arm(__file__, "cached_trainer_loop", extra, cache_dir)  # warm cache too
    rows = [["plain Trainer, backbone requires_grad off", plain]]
    if not args.skip_uncached:
        rows.append(["tl-hf --cache_features false", run_arm(__file__, "uncached", extra)])
    rows += [
        ["tl-hf cached (cold cache)", cached],
        ["tl-hf cached, second head (warm cache)", warm],
        ["tl-hf cached, warm cache, Trainer's loop (--fast_head false)", trainer_loop],
    ]
    print(
        f"frozen MiniLM-L6, {args.epochs} epochs, validation every epoch, BBC News "
        f"{5 * args.per_class}/{5 * max(args.per_class // 2, 2)}/{5 * args.per_class} articles, "
        "one process per arm\n"
    )
    base = plain["total_s"]
    print(
        table(
            [
                [
                    name,
                    r["total_s"],
                    base / r["total_s"],
                    r["train_s"],
                    r["features_s"] + r["train_s"],
                    plain["train_s"] / (r["features_s"] + r["train_s"]),
                    r["test_accuracy"],
                    r["test_accuracy"] - plain["test_accuracy"],
                    r["peak_rss_mb"],
                ]
                for name, r in rows
            ],
            [
                "arm",
                "wall (s)",
                "speed-up vs plain (target >= 6 cached)",
                "training (s)",
                "features + training (s)",
                "plain training / (features + training)",
                "test accuracy",
                "accuracy - plain (target within 0.01)",
                "peak RSS (MB)",
            ],
        )
    )


if __name__ == "__main__":
    main()
