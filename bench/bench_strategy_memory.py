"""Peak memory and optimizer state per strategy (frozen, frozen with cached features, full,
llrd): the embedded MiniLM through tl-hf's `TLTrainer`, a few training steps on BBC News, each
strategy in its own process. Optimizer state = the bytes of every tensor in
`optimizer.state` after the steps (AdamW: two moments per trained parameter); a frozen
backbone must hold none, so its optimizer covers the head only.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_strategy_memory.py [--steps 4]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import quiet, report, run_arm, scratch_dir, table  # noqa: E402

STRATEGIES = ("frozen", "frozen_cached", "full", "llrd")


def arm(args) -> dict:
    import torch
    from transformers import AutoTokenizer, DataCollatorWithPadding, TrainingArguments

    from tl_hf.config import DataArguments, ModelArguments
    from tl_hf.embedded.text import load_bbc_news, minilm_path
    from tl_hf.modalities.text import preprocess
    from tl_hf.modality import get_modality
    from tl_hf.model.checkpoint import build_model
    from tl_hf.strategy import apply_strategy, head_parameter_names, strategy_settings
    from tl_hf.training.features import build_feature_cache, feature_collator
    from tl_hf.training.trainer import TLTrainer

    strategy = args.arm.replace("_cached", "")
    dsd = load_bbc_news(args.per_class, 2, 2)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    features = preprocess(dsd, tokenizer, DataArguments())
    names = dsd["train"].features["label"].names
    model = build_model(
        "AutoModelForSequenceClassification", minilm_path(), ModelArguments(), names
    )
    apply_strategy(model, strategy)
    heads = head_parameter_names(model)
    training = TrainingArguments(
        output_dir=scratch_dir(),
        max_steps=args.steps,
        per_device_train_batch_size=16,
        learning_rate=get_modality("text").default_learning_rates[strategy],
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        logging_steps=10,
    )
    collator = DataCollatorWithPadding(tokenizer)
    if args.arm.endswith("_cached"):
        features = build_feature_cache(
            model, features, collator, heads, training, log=lambda m: None
        ).features
        collator, training.remove_unused_columns = feature_collator, False
    trainer = TLTrainer(
        model=model,
        args=training,
        train_dataset=features["train"],
        data_collator=collator,
        strategy=strategy,
        options=strategy_settings(strategy, llrd_decay=0.8),
    )
    trainer.train()
    optimizer = trainer.optimizer
    state_bytes = sum(
        t.numel() * t.element_size()
        for s in optimizer.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor)
    )
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    backbone = sum(
        p.numel() for n, p in model.named_parameters() if n not in heads and id(p) in in_optimizer
    )
    return {
        "state_mb": state_bytes / 2**20,
        "trained": sum(p.numel() for n, p in model.named_parameters() if id(p) in in_optimizer),
        "backbone_in_optimizer": backbone,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--per_class", type=int, default=16, help="training articles per class")
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        quiet()
        report(arm(args))
        return
    extra = ["--steps", str(args.steps), "--per_class", str(args.per_class)]
    results = {s: run_arm(__file__, s, extra) for s in STRATEGIES}
    full = results["full"]
    print(
        f"MiniLM-L6 (22.7M parameters), {args.steps} steps x batch 16, AdamW, one process per strategy\n"
    )
    print(
        table(
            [
                [
                    s,
                    r["trained"],
                    r["backbone_in_optimizer"],
                    r["state_mb"],
                    r["peak_rss_mb"],
                    r["peak_rss_mb"] / full["peak_rss_mb"],
                ]
                for s, r in results.items()
            ],
            [
                "strategy",
                "params in optimizer",
                "backbone params in optimizer",
                "optimizer state (MB)",
                "peak RSS (MB)",
                "peak RSS / full",
            ],
        )
    )


if __name__ == "__main__":
    main()
