"""Training cost of one image against the input size (issue 24, the image-size rule): the
image default's checkpoint (EfficientNet-Lite0) trained at 32, 64, 112 and 224 px in one process,
back to back: seconds per training step (forward, backward, AdamW) of a batch of 16, and the
ratio to 224 px. Accuracy against size is `bench/results/resolution_evidence.jsonl`
(`defaults_evidence.py --flags '{"image_size": N}'`).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_image_size.py
"""

from __future__ import annotations

import argparse
import time


def step_seconds(model, size: int, batch: int, steps: int) -> float:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pixels = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 10, (batch,))
    for _ in range(2):  # warm-up: allocator, kernels picked for this shape
        model(pixel_values=pixels, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    start = time.perf_counter()
    for _ in range(steps):
        model(pixel_values=pixels, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - start) / steps


def main() -> None:
    import torch
    from transformers import AutoModelForImageClassification

    from tl_hf.embedded.vision import efficientnet_lite0_folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 112, 224])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_pretrained(
        efficientnet_lite0_folder(), num_labels=10, ignore_mismatched_sizes=True
    ).train()
    seconds = {size: step_seconds(model, size, args.batch, args.steps) for size in args.sizes}
    top = seconds[max(args.sizes)]
    print(f"| size | s per step (batch {args.batch}) | ms per image | vs {max(args.sizes)} px |")
    print("|---|---|---|---|")
    for size, s in seconds.items():
        print(f"| {size} px | {s:.3f} | {1000 * s / args.batch:.1f} | {s / top:.2f}x |")


if __name__ == "__main__":
    main()
