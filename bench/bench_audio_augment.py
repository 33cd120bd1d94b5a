"""Audio augmentation throughput: clips per second for each transform on 1 s clips at
16 kHz, one process, one thread (the cost `datasets.map` pays per copy and worker).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_audio_augment.py [--clips 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tl_hf.augment import audio as aa
from tl_hf.augment import parse_augment_specs

SR = 16000
ITEMS = ["time_stretch", "pitch_shift", "noise", "background_noise", "shift", "gain", "mix"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(SR)).astype(np.float32) for _ in range(args.clips)]
    print(f"{'transform':<18} {'clips/s':>10} {'ms/clip':>9}")
    for item in ITEMS + ["default list"]:
        names = aa.DEFAULT_AUGMENT if item == "default list" else [item]
        specs = parse_augment_specs(
            [f"{n}:p=1" for n in names], aa.AUGMENTATIONS, aa.DEFAULT_AUGMENT
        )
        fn = aa.build_augmenter(specs, "audio", sampling_rate=SR)
        fn(
            {"audio": [{"array": clips[0], "sampling_rate": SR}] * 2}, [0, 1]
        )  # warm-up (noise clips load)
        start = time.perf_counter()
        for i in range(0, len(clips), args.batch_size):
            chunk = clips[i : i + args.batch_size]
            fn(
                {"audio": [{"array": c, "sampling_rate": SR} for c in chunk]},
                list(range(i, i + len(chunk))),
            )
        seconds = time.perf_counter() - start
        print(f"{item:<18} {len(clips) / seconds:>10.0f} {1000 * seconds / len(clips):>9.2f}")
    import torch

    feats = torch.randn(args.batch_size, 80, 3000)
    masker = aa.build_feature_masker(parse_augment_specs(["specaugment"], aa.AUGMENTATIONS, []))
    mixer = aa.build_batch_mixer(
        parse_augment_specs(["mixup"], aa.AUGMENTATIONS, []), num_labels=10
    )
    labels = torch.randint(0, 10, (args.batch_size,))
    for name, call in (
        ("specaugment", lambda: masker(feats)),
        ("mixup", lambda: mixer({"input_features": feats, "labels": labels})),
    ):
        call()
        start = time.perf_counter()
        for _ in range(10):
            call()
        seconds = (time.perf_counter() - start) / (10 * args.batch_size)
        print(
            f"{name + ' (batch)':<18} {1 / seconds:>10.0f} {1000 * seconds:>9.2f}   Whisper features [80, 3000]"
        )


if __name__ == "__main__":
    main()
