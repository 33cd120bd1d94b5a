"""Where the task's information lives in the backbone: a linear probe per block.

One forward pass of the frozen model over the training and validation splits, with all
hidden states; each block's output is pooled (the pooling the checkpoint was trained with
when it declares one: sentence-transformers checkpoints ship `1_Pooling/config.json`) and a
logistic regression is fitted on it. Validation accuracy against depth shows how much of the
backbone the task can use as it is; the playbook reads `--trainable_layers` and an LLRD decay
off the curve (`propose`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tl_hf.model.pooling import declared_pooling  # noqa: F401  (re-exported for the probe's callers)

NEAR_BEST = 0.01  # depths within one point of the best probe count as "the information is here"
TARGET_RATIO = 0.25  # LLRD: the block where the information peaks trains at 1/4 of the top rate


class CannotProbe(Exception):
    """The model does not expose per-block hidden states; the message says why."""


@dataclass
class ProbeResult:
    depths: list[int]
    accuracy: list[float]  # validation accuracy of the probe at each depth
    pooling: str
    pooling_declared: bool  # read from the checkpoint's 1_Pooling/config.json
    num_blocks: int
    proposal: dict[str, Any] = field(default_factory=dict)


def pool(hidden, attention_mask, pooling: str):
    """One block's output as one vector per example."""
    import torch

    if hidden.dim() == 4:  # convolutional feature maps [B, C, H, W]: global average
        return hidden.float().mean(dim=(2, 3))
    if hidden.dim() == 2:
        return hidden.float()
    hidden = hidden.float()
    if pooling == "cls":
        return hidden[:, 0]
    mask = (
        attention_mask[..., None].float()
        if attention_mask is not None
        else torch.ones_like(hidden[..., :1])
    )
    if pooling == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    total = (hidden * mask).sum(dim=1)
    count = mask.sum(dim=1).clamp(min=1)
    return total / (count.sqrt() if pooling == "mean_sqrt_len" else count)


def layer_features(model, dataset, collator, pooling: str, batch_size: int = 32):
    """[depth][N, H] pooled hidden states of every block (depth 0 = the embeddings) and the
    labels, from one pass of `model` in eval mode."""
    import numpy as np
    import torch

    device = next(model.parameters()).device
    model.eval()
    per_depth: list[list] = []
    labels = []
    for start in range(0, len(dataset), batch_size):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        labels += [int(r["labels"]) for r in rows]
        batch = collator([{k: v for k, v in r.items() if k != "labels"} for r in rows])
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        with torch.no_grad():
            outputs = model(**batch, output_hidden_states=True)
        hidden = getattr(outputs, "hidden_states", None) or getattr(
            outputs, "encoder_hidden_states", None
        )
        if not hidden:
            raise CannotProbe(
                f"{type(model).__name__} returns no hidden states (output_hidden_states)"
            )
        if not per_depth:
            per_depth = [[] for _ in hidden]
        for depth, h in enumerate(hidden):
            per_depth[depth].append(pool(h, batch.get("attention_mask"), pooling).cpu().numpy())
    return [np.concatenate(chunks) for chunks in per_depth], np.asarray(labels)


def fit_probes(
    train_features, train_labels, val_features, val_labels, seed: int = 0
) -> list[float]:
    """Validation accuracy of a logistic-regression probe on each depth's features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    accuracy = []
    for x_train, x_val in zip(train_features, val_features, strict=True):
        probe = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed)
        )
        probe.fit(x_train, train_labels)
        accuracy.append(float((probe.predict(x_val) == val_labels).mean()))
    return accuracy


def propose(accuracy: list[float], num_blocks: int) -> dict[str, Any]:
    """`--trainable_layers` and an LLRD decay from the probe curve.

    k* = the shallowest depth whose probe is within one point of the best. Blocks above k*
    must change for the task: `trainable_layers = max(1, L - k*)`. LLRD: the decay that puts
    the learning rate at depth k* at 1/4 of the top rate, `0.25 ** (1 / (L + 1 - k*))`,
    clipped to [0.5, 0.95] (information at the top: a strong decay keeps the lower blocks
    nearly fixed; information early: a weak one lets the upper blocks move).
    """
    best = max(accuracy)
    peak = next(d for d, a in enumerate(accuracy) if a >= best - NEAR_BEST)
    layers = max(1, num_blocks - peak)
    decay = min(0.95, max(0.5, TARGET_RATIO ** (1 / (num_blocks + 1 - peak))))
    return {
        "peak_depth": peak,
        "best_accuracy": best,
        "trainable_layers": min(layers, num_blocks),
        "llrd_decay": round(decay, 2),
    }


def run_probe(
    model, features, collator, model_path: str, batch_size: int = 32, seed: int = 0
) -> ProbeResult:
    """Probe every block of `model` (the classifier, its new head unused) on the preprocessed
    `features` (train and validation splits)."""
    from tl_hf.model.depth import num_blocks

    declared = declared_pooling(model_path)
    with_mask = (
        "attention_mask" in features["train"].column_names
        or "input_ids" in features["train"].column_names
    )
    pooling = declared or ("cls" if with_mask else "mean")
    train_x, train_y = layer_features(model, features["train"], collator, pooling, batch_size)
    val_x, val_y = layer_features(model, features["validation"], collator, pooling, batch_size)
    accuracy = fit_probes(train_x, train_y, val_x, val_y, seed)
    blocks = num_blocks(model)
    result = ProbeResult(
        list(range(len(accuracy))), accuracy, pooling, declared is not None, blocks
    )
    # hidden states are the embeddings + one per block for transformers; other layouts (timm
    # stages) are read on their own scale and the proposal clamped to the model's blocks
    result.proposal = propose(accuracy, len(accuracy) - 1)
    result.proposal["trainable_layers"] = min(result.proposal["trainable_layers"], blocks)
    return result
