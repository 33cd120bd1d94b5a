"""Accuracy effect of text augmentation on a low-data slice of the default text task.

BBC News from the embedded data (`tl_hf.embedded.text.load_bbc_news`): 20 training
examples per class (100 rows), validation and test as in the embedded default (50 and 100
per class). The embedded MiniLM, strategy llrd, max_seq_length 128. Each augment list runs
with `--augment_copies K` (originals kept: (K+1) x 100 training rows); the plain run sees
the 100 originals. Same seeds, same budget: every run takes exactly `--max_steps`
optimizer steps of the same batch size (the plain run cycles its 100 rows K+1 times as
often), with no early stopping and no intermediate evaluation; the model after the last
step is scored on validation and test.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_text_augment_accuracy.py \
        [--seeds 1,2,3] [--max_steps 60] [--copies 4] [--lists "none;synonym,deletion,swap"]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def run_one(data, augment: list[str], copies: int, seed: int, max_steps: int, out: str) -> dict:
    import tl_hf

    kwargs = {}
    if augment:
        kwargs = {"augment": augment, "augment_copies": copies}
    result = tl_hf.train_text_classifier(
        dataset=data,
        output_dir=out,
        overwrite_output_dir=True,
        seed=seed,
        max_steps=max_steps,
        max_seq_length=128,
        strategy="llrd",
        per_device_train_batch_size=16,
        # a fixed budget: no early stopping, no per-epoch evaluation or checkpoint
        early_stopping_patience=0,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        logging_steps=max_steps,
        **kwargs,
    )
    return result.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--max_steps", type=int, default=60)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--per_class_train", type=int, default=20)
    parser.add_argument(
        "--lists",
        default="none;synonym,deletion,swap",
        help="augment lists separated by ';' ('none': no augmentation)",
    )
    args = parser.parse_args()

    import datasets

    from tl_hf.embedded.text import load_bbc_news

    datasets.disable_progress_bars()
    data = load_bbc_news(
        per_class_train=args.per_class_train, per_class_validation=50, per_class_test=100
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    lists = [[] if item.strip() == "none" else item.split(",") for item in args.lists.split(";")]
    results = {i: ([], [], []) for i in range(len(lists))}  # test accs, val accs, seconds
    for seed in seeds:  # seed-major: an interrupted run still holds complete pairs
        for i, augment in enumerate(lists):
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                metrics = run_one(data, augment, args.copies, seed, args.max_steps, out)
            accs, evals, secs = results[i]
            secs.append(time.perf_counter() - start)
            accs.append(metrics["test_accuracy"])
            evals.append(metrics["eval_accuracy"])
            print(
                f"# {','.join(augment) or 'none'} seed {seed}: test {metrics['test_accuracy']:.3f} "
                f"validation {metrics['eval_accuracy']:.3f} train rows {metrics['train_samples']} "
                f"({secs[-1]:.0f} s)",
                flush=True,
            )
    rows = [(augment, *results[i]) for i, augment in enumerate(lists)]

    train = {s: len(data[s]) for s in data}
    print(
        f"\nBBC News, {args.per_class_train}/class train ({train['train']} rows), validation "
        f"{train['validation']}, test {train['test']}; MiniLM (embedded), llrd, max_seq_length 128, "
        f"batch 16, {args.max_steps} optimizer steps per run, K={args.copies} copies when augmented\n"
    )
    print(
        "| augmentation | train rows | test acc mean (sd) | test acc per seed | val acc mean | s/run |"
    )
    print("|---|---|---|---|---|---|")
    for augment, accs, evals, secs in rows:
        name = "none" if not augment else ",".join(augment) + f" (K={args.copies})"
        n_rows = train["train"] * (args.copies + 1 if augment else 1)
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        per_seed = ", ".join(f"{s}: {a:.3f}" for s, a in zip(seeds, accs, strict=False))
        print(
            f"| {name} | {n_rows} | {statistics.mean(accs):.3f} ({sd:.3f}) | {per_seed} | "
            f"{statistics.mean(evals):.3f} | {statistics.mean(secs):.0f} |"
        )


if __name__ == "__main__":
    main()
