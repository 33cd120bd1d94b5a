"""The cached head's training: the tight loop (`--fast_head true`, tl_hf.training.head_loop) vs the
Trainer's loop (`--fast_head false`) on the same cached features, in one process each,
alternating. Head training time only (`train_runtime`): a linear head on stored features is
where per-step overhead shows. A tiny BERT with the embedded MiniLM's tokenizer makes the
features (the head's cost does not depend on the backbone), BBC News, no evaluation.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_head_loop.py [--epochs 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import report, run_arm, scratch_dir, table  # noqa: E402
from bench_host_syncs import _tiny_minilm_shaped  # noqa: E402


def arm(args) -> dict:
    import datasets
    import transformers

    from tl_hf.embedded.text import load_bbc_news
    from tl_hf.pipeline import train_text_classifier

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    result = train_text_classifier(
        dataset=load_bbc_news(args.per_class, 4, 4),
        model_name_or_path=_tiny_minilm_shaped(scratch_dir()),
        output_dir=scratch_dir(),
        strategy="frozen",
        num_train_epochs=args.epochs,
        per_device_train_batch_size=16,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        early_stopping_patience=0,
        seed=42,
        use_cpu=True,
        fast_head=args.arm == "fast",
    )
    m = result.metrics
    return {"train_s": m["train_runtime"], "train_loss": m["train_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--per_class", type=int, default=72, help="training articles per class")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        report(arm(args))
        return
    extra = ["--epochs", str(args.epochs), "--per_class", str(args.per_class)]
    runs: dict[str, list[dict]] = {"trainer": [], "fast": []}
    for _ in range(args.repeats):
        for name in runs:
            runs[name].append(run_arm(__file__, name, extra))
    steps = args.epochs * -(-5 * args.per_class // 16)
    print(
        f"head training on cached features: {5 * args.per_class} rows, {args.epochs} epochs x "
        f"batch 16 ({steps} steps), no evaluation, one process per arm, {args.repeats} "
        "alternating repeats\n"
    )
    best = {name: min(r["train_s"] for r in rs) for name, rs in runs.items()}
    rows = [
        [
            label,
            ", ".join(f"{r['train_s']:.2f}" for r in runs[name]),
            steps / best[name],
            best["trainer"] / best[name],
            runs[name][0]["train_loss"],
        ]
        for name, label in (("trainer", "Trainer's loop"), ("fast", "tight head loop"))
    ]
    header = ["arm", "training (s) per repeat", "steps/s (fastest)", "speed-up", "train loss"]
    print(table(rows, header))


if __name__ == "__main__":
    main()
