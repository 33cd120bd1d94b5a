"""Test-time augmentation, paired (issue 26): per (set, seed) the image default trains once
(no --tta), then the same weights score the test split with 1, 2, 4 and 6 views
(`load_run(..., tta=K)`, what `tl-hf predict --tta K` does): test accuracy per view count and
the scoring time per 1000 images, one JSON line per (set, seed) in `--out`.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/tta_evidence.py \\
        --sets digits:20 mnist_5k:20 [--seeds 3] [--views 1 2 4 6]
    python bench/tta_evidence.py --table

`--frozen`: a frozen head with `--tta 4`, its features cached (validation and test store the
backbone's output on every view) against `--cache_features false` (the backbone runs on every
step and every view): wall time and test accuracy of each, one JSON line per (set, seed) in
`bench/results/tta_frozen_evidence.jsonl`. The shipped image checkpoints (timm EfficientNet-Lite)
keep their head inside the backbone module, so they cache nothing, with or without `--tta`
(the jsonl says `*_cached_features`): pass a Transformers-native checkpoint (ResNet, ViT) with
`--flags '{"model_name_or_path": "DIR"}'`.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/tta_evidence.py --frozen \
        --sets digits:20 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import report, table  # noqa: E402
from defaults_evidence import _load, train_default  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
OUT = os.path.join(RESULTS, "tta_evidence.jsonl")
FROZEN_OUT = os.path.join(RESULTS, "tta_frozen_evidence.jsonl")


def score(run, dsd, batch: int = 64) -> float:
    """Test accuracy of a loaded run on the test split (its current `tta`)."""
    test = dsd["test"]
    right = 0
    for start in range(0, len(test), batch):
        rows = test[start : start + batch]
        predicted = run.logits({"image": rows["image"]}).argmax(-1).tolist()
        right += sum(p == y for p, y in zip(predicted, rows["label"], strict=True))
    return right / len(test)


def one(name: str, per_class: int, seed: int, views: list[int], flags: dict) -> dict:
    from tl_hf.infer.loaded import load_run

    modality, dsd = _load(name, per_class, seed)
    start = time.perf_counter()
    _, output_dir = train_default(modality, dsd, seed, **flags)
    out = {"set": name, "per_class": per_class, "seed": seed, "flags": flags}
    out["train_seconds"] = time.perf_counter() - start
    for n in views:
        run = load_run(output_dir, "cpu", tta=n)
        start = time.perf_counter()
        out[f"tta{n}"] = score(run, dsd)
        out[f"tta{n}_ms_per_image"] = 1000 * (time.perf_counter() - start) / len(dsd["test"])
    return out


def frozen(name: str, per_class: int, seed: int, flags: dict, views: int = 4) -> dict:
    """A frozen head with `--tta views`, on cached features and without the cache."""
    modality, dsd = _load(name, per_class, seed)
    out = {"set": name, "per_class": per_class, "seed": seed, "flags": flags, "tta": views}
    for arm, cache in (("cached", True), ("uncached", False)):
        start = time.perf_counter()
        result, _ = train_default(
            modality, dsd, seed, strategy="frozen", tta=views, cache_features=cache, **flags
        )
        out[f"{arm}_seconds"] = time.perf_counter() - start
        out[f"{arm}_test_accuracy"] = result.metrics["test_accuracy"]
        out[f"{arm}_cached_features"] = bool(result.metrics.get("cached_features"))
    return out


def print_table(path: str) -> None:
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    views = sorted({int(k[3:]) for r in rows for k in r if k[3:].isdigit() and k[:3] == "tta"})
    body = []
    for key in sorted({(r["set"], r["per_class"]) for r in rows}):
        runs = [r for r in rows if (r["set"], r["per_class"]) == key]
        cells = []
        for n in views:
            values = [r[f"tta{n}"] for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            ms = statistics.mean(r[f"tta{n}_ms_per_image"] for r in runs)
            cells.append(f"{statistics.mean(values):.3f} +- {std:.3f} ({ms:.1f} ms)")
        body.append([*key, len(runs), *cells])
    print(table(body, ["set", "per class", "seeds", *(f"{n} view(s)" for n in views)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["digits:20", "mnist_5k:20"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--views", type=int, nargs="+", default=[1, 2, 4, 6])
    parser.add_argument("--flags", default="{}", help="JSON recipe flags (the default: none)")
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--frozen", action="store_true", help="cached vs uncached frozen head")
    args = parser.parse_args()
    if args.table:
        print_table(args.out)
        return
    out = FROZEN_OUT if args.frozen and args.out == OUT else args.out
    for item in args.sets:
        name, per_class = item.split(":")
        for seed in range(args.seeds):
            if args.frozen:
                result = frozen(name, int(per_class), seed, json.loads(args.flags))
            else:
                result = one(name, int(per_class), seed, args.views, json.loads(args.flags))
            with open(out, "a") as f:
                f.write(json.dumps(result) + "\n")
            report(result)
    if not args.frozen:
        print_table(args.out)


if __name__ == "__main__":
    main()
