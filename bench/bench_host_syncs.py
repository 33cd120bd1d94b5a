"""Host syncs per training step: a plain `transformers.Trainer` vs tl-hf on the same work.

On a GPU every read of a device tensor's value on the host (`.item()`, `.tolist()`,
`.cpu()`, `.numpy()`, `bool(t)`, `float(t)`, `int(t)`) waits for the queued kernels to finish,
so the host can no longer run ahead of the device. These calls are counted here on the CPU
(the same Python code runs either way) while training runs, with evaluation off, and
attributed to the file and function that made them. Arms: full fine-tune (plain vs tl-hf)
and frozen (plain with the backbone's requires_grad off vs tl-hf cached, through the tight
head loop and through the Trainer's loop). A tiny BERT built from a config with the embedded
MiniLM's tokenizer keeps it quick: the count does not depend on the model's size.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_host_syncs.py [--steps 30] [--logging_steps 10]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import report, run_arm, scratch_dir, table  # noqa: E402

SEED = 42
READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


@contextlib.contextmanager
def count_host_reads(counts: collections.Counter):
    """Count host reads of tensor values inside the block, by caller (file:function)."""
    import torch

    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            frame = sys._getframe(1)
            where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}"
            counts[f"{name} <- {where}"] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for name, original in originals.items():
        setattr(torch.Tensor, name, counting(name, original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def _tiny_minilm_shaped(path: str) -> str:
    """A 2-layer BERT from a config with the embedded MiniLM's tokenizer (random weights)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tl_hf.embedded.text import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.save_pretrained(path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        num_labels=5,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    return path


def _data():
    from tl_hf.embedded.text import load_bbc_news

    return load_bbc_news(40, 10, 10)


def arm_tlhf(args, strategy: str, **extra) -> dict:
    import tl_hf.pipeline as pipeline

    counts: collections.Counter = collections.Counter()
    original = pipeline.train_step

    def counted(*a, **k):
        with count_host_reads(counts):
            return original(*a, **k)

    pipeline.train_step = counted
    result = pipeline.train_text_classifier(
        dataset=_data(),
        model_name_or_path=_tiny_minilm_shaped(scratch_dir()),
        output_dir=scratch_dir(),
        strategy=strategy,
        max_steps=args.steps,
        per_device_train_batch_size=8,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        early_stopping_patience=0,
        logging_steps=args.logging_steps,
        seed=SEED,
        use_cpu=True,
        **extra,
    )
    return {"steps": result.metrics.get("train_steps", args.steps), "counts": dict(counts)}


def arm_plain(args, frozen: bool) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    set_seed(SEED)
    path = _tiny_minilm_shaped(scratch_dir())
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    dsd = _data().map(
        lambda b: {**tokenizer(b["text"], truncation=True, max_length=128), "labels": b["label"]},
        batched=True,
        remove_columns=["text", "label"],
    )
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=5)
    if frozen:
        for param in model.bert.parameters():
            param.requires_grad_(False)
    training = TrainingArguments(
        output_dir=scratch_dir(),
        max_steps=args.steps,
        per_device_train_batch_size=8,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        seed=SEED,
        use_cpu=True,
        logging_steps=args.logging_steps,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=dsd["train"],
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    counts: collections.Counter = collections.Counter()
    with count_host_reads(counts):
        trainer.train()
    return {"steps": trainer.state.global_step, "counts": dict(counts)}


ARMS = {
    "plain_full": ("plain Trainer, full", lambda a: arm_plain(a, frozen=False)),
    "tlhf_full": ("tl-hf, full", lambda a: arm_tlhf(a, "full")),
    "plain_frozen": ("plain Trainer, frozen (requires_grad off)", lambda a: arm_plain(a, True)),
    "tlhf_cached": ("tl-hf, frozen cached, tight head loop", lambda a: arm_tlhf(a, "frozen")),
    "tlhf_cached_trainer": (
        "tl-hf, frozen cached, Trainer's loop (--fast_head false)",
        lambda a: arm_tlhf(a, "frozen", fast_head=False),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--logging_steps", type=int, default=10)
    parser.add_argument("--arm", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.logging.set_verbosity_error()
        report(ARMS[args.arm][1](args))
        return
    extra = ["--steps", str(args.steps), "--logging_steps", str(args.logging_steps)]
    results = {name: run_arm(__file__, name, extra) for name in ARMS}
    print(
        f"{args.steps} training steps, batch 8, logging every {args.logging_steps} steps, no "
        "evaluation; host reads of tensor values (item, tolist, cpu, numpy, bool, float, int) "
        "while training, one process per arm\n"
    )
    rows = []
    for name, r in results.items():
        total = sum(r["counts"].values())
        top = sorted(r["counts"].items(), key=lambda kv: -kv[1])[:3]
        rows.append(
            [
                ARMS[name][0],
                total,
                total / max(r["steps"], 1),
                "; ".join(f"{k} x{v}" for k, v in top),
            ]
        )
    print(table(rows, ["arm", "host reads", "per step", "most frequent (call <- file:function)"]))


if __name__ == "__main__":
    main()
