"""Map-mode image augmentation throughput (images/s) with num_proc 1 and 2.

Fashion-MNIST training images (Debian `dataset-fashion-mnist`), at native 28x28 and
resized to 224x224, one augmented copy (K=1) with the default image augment list, through
`tl_hf.augment.apply_augment_copies` (the same `datasets.map` path a run takes; the
datasets are in memory, so nothing is read back from a cache).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_image_augment.py
"""

from __future__ import annotations

import argparse
import os
import time


def _resize(batch: dict, size: int) -> dict:
    return {"image": [im.resize((size, size)) for im in batch["image"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=int, default=2000, help="training images (a multiple of 10)"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 224])
    parser.add_argument("--num_proc", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import datasets

    from tl_hf.augment import apply_augment_copies, parse_augment_specs
    from tl_hf.augment import image as aug
    from tl_hf.embedded.vision import load_fashion_mnist

    datasets.disable_progress_bars()
    specs = parse_augment_specs(None, aug.AUGMENTATIONS, aug.DEFAULT_AUGMENT)
    fn = aug.build_augmenter(specs, "image")
    base = load_fashion_mnist(args.images // 10, 0, 0)["train"]
    print(
        f"cores: {os.cpu_count()}  OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}  "
        f"images: {len(base)}  copies: 1  augment: {' '.join(map(str, specs))}"
    )
    print(f"{'size':>9} {'num_proc':>8} {'seconds':>8} {'images/s':>9} {'vs 1 proc':>9}")
    for size in args.sizes:
        data = base
        if size != 28:
            data = base.map(_resize, fn_kwargs={"size": size}, batched=True)
        first = None
        for num_proc in args.num_proc:
            start = time.perf_counter()
            out = apply_augment_copies(data, fn, specs, copies=1, seed=num_proc, num_proc=num_proc)
            seconds = time.perf_counter() - start
            assert len(out) == 2 * len(data)
            rate = len(data) / seconds  # augmented images produced per second
            first = first or rate
            print(
                f"{size:>4}x{size:<4} {num_proc:>8} {seconds:>8.2f} {rate:>9.0f} {rate / first:>8.2f}x"
            )


if __name__ == "__main__":
    main()
