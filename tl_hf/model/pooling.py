"""The pooling a sentence-embedding checkpoint was trained with, inside stock classes.

Sentence-transformers checkpoints (a `1_Pooling/config.json` beside the model) were trained
to be read through the masked mean of their last hidden states; the first token, which the
stock `*ForSequenceClassification` classes read (BERT through its pooler), is a weak feature
of theirs. `append_mean_pooling` adds one encoder block that computes that mean, so the
model stays a stock class (`pipeline()` and `from_pretrained` load it, no custom code):

- its attention has zero query and key weights: every score is 0, so the softmax is uniform
  over the tokens the attention mask keeps, and with identity values each position receives
  the masked mean `m` of the block's input;
- its output projection scales that by `SCALE`, so the residual sum `SCALE * m + h_i` is
  `m` up to `|h_i| / (SCALE |m|)` before the LayerNorm (scale-invariant) normalises it;
- its feed-forward block adds exactly zero (zero weights and biases, GELU(0) = 0) and the
  second LayerNorm leaves a normalised vector unchanged;
- the first token then carries `LayerNorm(m)`; BERT's pooler becomes `tanh(POOLER_SCALE *
  x)` (near linear), RoBERTa-style heads read it directly.

So a head on the first token is a head on the declared mean pooling (`mean_sqrt_len` is the
same after the LayerNorm). Other declared poolings (max, last token, weighted mean) cannot
be expressed this way: the model keeps its stock first-token path, and the card says so.
"""

from __future__ import annotations

import json
import os

# sentence-transformers' pooling flags -> our name
POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
MEAN_LIKE = ("mean", "mean_sqrt_len")
# The residual's weight against the mean (see the module docstring), and the pooler's gain.
SCALE = 1e4
POOLER_SCALE = 0.5
# Model types whose blocks are BERT's (self-attention query/key/value, output dense +
# LayerNorm, intermediate and output dense + LayerNorm) with absolute positions only.
BERT_BLOCKS = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


def declared_pooling(model_path: str) -> str | None:
    """The pooling a sentence-transformers checkpoint declares (`1_Pooling/config.json`), or None."""
    path = os.path.join(model_path, "1_Pooling", "config.json")
    if not os.path.isfile(path):
        try:  # a Hub id: only what is already in the local cache (never a download here)
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model_path, "1_Pooling/config.json")
            path = cached if isinstance(cached, str) else None
        except Exception:
            path = None
    if not path:
        return None
    with open(path) as f:
        config = json.load(f)
    return next((name for key, name in POOLING_MODES.items() if config.get(key)), None)


def config_refuses_mean(config: dict, class_name: str) -> str | None:
    """Why a model of this config (`config.json` as a dict) cannot express the mean pooling
    block, or None when it can (from the config alone: the card uses it too)."""
    if config.get("model_type") not in BERT_BLOCKS:
        return f"{class_name} has no BERT-style blocks to express it with"
    if (config.get("position_embedding_type") or "absolute") != "absolute":
        return f"{class_name} uses relative position scores in its attention"
    if config.get("is_decoder"):
        return f"{class_name} is a decoder (causal attention)"
    return None


def cannot_append(model) -> str | None:
    """Why a mean-pooling block cannot be appended to `model` (None when it can)."""
    name = type(model).__name__
    reason = config_refuses_mean(model.config.to_dict(), name)
    if reason:
        return reason
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if layers is None or not len(layers):
        return f"{name} has no encoder.layer list"
    return None


def _fill(linear, weight, bias: float = 0.0) -> None:
    import torch

    with torch.no_grad():
        linear.weight.copy_(weight)
        if linear.bias is not None:
            linear.bias.fill_(bias)


def _unit_norm(norm) -> None:
    import torch

    with torch.no_grad():
        norm.weight.fill_(1.0)
        norm.bias.zero_()


def append_mean_pooling(model) -> None:
    """Append the mean-pooling block (module docstring) to a BERT-style encoder in place and
    make the first-token path read it; `config.num_hidden_layers` grows by one."""
    import copy

    import torch

    reason = cannot_append(model)
    if reason:
        raise ValueError(reason)
    layers = model.base_model.encoder.layer
    block = copy.deepcopy(layers[-1])
    hidden = model.config.hidden_size
    eye = torch.eye(hidden, dtype=block.attention.self.value.weight.dtype)
    attention = block.attention
    _fill(attention.self.query, torch.zeros_like(eye))
    _fill(attention.self.key, torch.zeros_like(eye))
    _fill(attention.self.value, eye)
    _fill(attention.output.dense, SCALE * eye)
    _unit_norm(attention.output.LayerNorm)
    _fill(block.intermediate.dense, torch.zeros_like(block.intermediate.dense.weight))
    _fill(block.output.dense, torch.zeros_like(block.output.dense.weight))
    _unit_norm(block.output.LayerNorm)
    if hasattr(attention.self, "layer_idx"):
        attention.self.layer_idx = len(layers)
    layers.append(block)
    model.config.num_hidden_layers = len(layers)
    pooler = getattr(model.base_model, "pooler", None)
    if pooler is not None and hasattr(pooler, "dense"):
        _fill(pooler.dense, POOLER_SCALE * eye)
    head = getattr(model, "classifier", None)
    if head is not None and hasattr(head, "dense") and head.dense.weight.shape == eye.shape:
        _fill(head.dense, eye)  # RoBERTa-style head: starts as the identity on the mean


def resolve_pooling(model, model_path: str, requested: str, reads_frozen_features: bool):
    """Apply `--pooling` (auto | mean | first) to `model`; returns (what the head reads, a
    sentence for the log and the card).

    auto: the checkpoint's declared mean pooling when the strategy trains a head on frozen
    features (and the model can express it), else the stock first-token path."""
    from tl_hf.errors import UserError

    declared = declared_pooling(model_path)
    if requested == "first" or (requested == "auto" and not reads_frozen_features):
        if declared and declared != "cls" and requested == "auto":
            # suggest --pooling mean only where this model can take it
            why = cannot_append(model) if declared in MEAN_LIKE else "stock classes cannot"
            how = "used with --pooling mean" if why is None else f"which it cannot express: {why}"
            return "first", (
                f"the head reads the first token (the stock class's path; the checkpoint declares "
                f"{declared} pooling, {how})"
            )
        return "first", ""
    if requested == "mean" or declared in MEAN_LIKE:
        reason = cannot_append(model)
        if reason:
            if requested == "mean":
                raise UserError(
                    f"--pooling mean: {reason}; use --pooling first (the stock class's first-token path)"
                )
            return "first", (
                f"the checkpoint declares {declared} pooling but {reason}: the head reads the "
                "first token, as the stock class does"
            )
        append_mean_pooling(model)
        source = (
            "as the checkpoint declares (1_Pooling/config.json)"
            if declared in MEAN_LIKE
            else "(--pooling mean)"
        )
        return "mean", (
            f"the head reads the masked mean of the last hidden states {source}: a pooling block "
            f"appended to the encoder (block {model.config.num_hidden_layers}) computes it, so "
            f"the saved model is a stock {type(model).__name__}"
        )
    if declared and declared != "cls":
        return "first", (
            f"the checkpoint declares {declared} pooling, which stock classes cannot express: "
            "the head reads the first token, as the stock class does"
        )
    return "first", ""
