"""Layer depths: where each parameter of a model sits, for every family tl-hf knows.

Pure functions over a model, testable on tiny models built from configs; every strategy
(`tl_hf.strategy`) reads them:
- `head_parameter_names`: what the checkpoint did not provide (new classifier, pooler or
  projector); everything else is backbone.
- `parameter_depths`: depth 0 = embeddings / patch / conv front-end, 1..L = the L blocks in
  order, L+1 = final norm, pooler and head. One table (`FAMILIES`) per model family; a
  parameter no rule places is an error naming the model class, never a silent guess.
- `no_decay_names`: biases and normalisation weights (no weight decay under any strategy).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tl_hf.errors import UserError

# Prefixes that wrappers (DDP, FSDP, torch.compile, activation checkpointing) add to names.
WRAPPER_PREFIXES = ("module.", "_fsdp_wrapped_module.", "_orig_mod.", "_checkpoint_wrapped_module.")

# A depth is an int, "top" (L + 1), "block" (the rule's first group is a 0-based block
# index: depth = index + 1) or a function (match, config) -> depth.
Depth = Any


@dataclass(frozen=True)
class Family:
    """How one model family's parameter names map to depths.

    Names are matched after the wrapper prefixes and the base-model prefix
    (`model.base_model_prefix`, e.g. "bert.") are removed.
    """

    # L from the (unwrapped) model: usually read off its config; a timm model inside
    # TimmWrapper has no config fields for it, so the model itself is passed.
    num_layers: Callable[[Any], int]
    rules: tuple[tuple[str, Depth], ...]
    # Parameters that belong to the head although they sit inside the base model: regexes,
    # or a function model -> regexes when the head's name depends on the model (timm).
    head_patterns: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = ()


def _attr(name: str) -> Callable[[Any], int]:
    return lambda model: int(getattr(model.config, name))


def _albert_group_depth(match: re.Match, config) -> int:
    # ALBERT shares weights: group g serves blocks [g*L/G, (g+1)*L/G); it is placed at the
    # depth of the highest block it serves, so its learning rate is never below any of them.
    groups, layers = config.num_hidden_groups, config.num_hidden_layers
    return (int(match.group(1)) + 1) * layers // groups


_BERT_LIKE = (
    (r"^embeddings\.", 0),
    (r"^encoder\.layer\.(\d+)\.", "block"),
    (r"^pooler\.", "top"),
)

# ViT, DeiT, BEiT: transformers 5 names blocks `layers.i` (older checkpoints and versions
# `encoder.layer.i`); the final layernorm and any pooler sit on top.
_VIT_LIKE = (
    (r"^embeddings\.", 0),
    (r"^(?:encoder\.layer|layers)\.(\d+)\.", "block"),
    (r"^layernorm\.", "top"),
    (r"^pooler\.", "top"),
)


# Stage/block families (ConvNeXt, Swin, ResNet): blocks are numbered globally, in forward
# order, using config.depths (blocks per stage): block j of stage s is block
# sum(depths[:s]) + j, at depth that + 1; L = sum(depths).
def _sum_depths(model) -> int:
    return int(sum(model.config.depths))


def _stage_block(match: re.Match, config) -> int:
    stage, block = int(match.group(1)), int(match.group(2))
    return sum(config.depths[:stage]) + block + 1


def _downsample_before(match: re.Match, config) -> int:
    # A stage-entry downsampler goes with the first block of its stage (the block it feeds).
    return sum(config.depths[: int(match.group(1))]) + 1


def _downsample_after(match: re.Match, config) -> int:
    # A stage-exit downsampler goes with the last block of its stage (the block it follows).
    return sum(config.depths[: int(match.group(1)) + 1])


_CONVNEXT = (
    (r"^embeddings\.", 0),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.", _stage_block),
    # ConvNeXt downsamples at the start of stages 1.. (stage 0's is the patch embedding)
    (r"^encoder\.stages\.(\d+)\.downsampling_layer\.", _downsample_before),
    (r"^layernorm\.", "top"),
    (r"^pooler\.", "top"),
)


def _efficientnet_blocks(model) -> int:
    # transformers' EfficientNet repeats each stage's block ceil(depth_coefficient * n) times
    # and numbers the blocks in one flat list.
    import math

    config = model.config
    return sum(int(math.ceil(config.depth_coefficient * n)) for n in config.num_block_repeats)


# timm models inside TimmWrapper: the parameters are `timm_model.*`. Only the EfficientNet
# layout (conv_stem/bn1, `blocks.i` = stage i, conv_head/bn2, classifier) is mapped; timm
# builds EfficientNet, MobileNetV2/V3, MNASNet, FBNet and friends from these two classes.
_TIMM_EFFICIENTNET_LIKE = ("EfficientNet", "MobileNetV3")


def _timm_model(model):
    timm_model = getattr(model, "timm_model", None)
    kind = type(timm_model).__name__
    if timm_model is None or kind not in _TIMM_EFFICIENTNET_LIKE:
        arch = getattr(model.config, "architecture", "?")
        raise UserError(
            f"tl-hf cannot map the layers of the timm model {arch!r} ({kind}) inside "
            f"{type(model).__name__} to depths: only EfficientNet-like timm models "
            f"({', '.join(_TIMM_EFFICIENTNET_LIKE)}) are supported. Use --strategy full."
        )
    return timm_model


def _timm_num_blocks(model) -> int:
    return len(_timm_model(model).blocks)  # block stages, e.g. 7 for EfficientNet-B0/Lite0


def _timm_head_patterns(model) -> tuple[str, ...]:
    # timm names its classifier in the pretrained config ("classifier" for EfficientNet);
    # it sits inside the base model (`timm_model.`), so it needs naming as the head.
    timm_model = _timm_model(model)
    cfg = getattr(timm_model, "pretrained_cfg", None) or getattr(timm_model, "default_cfg", {})
    names = cfg.get("classifier") or "classifier"
    names = [names] if isinstance(names, str) else list(names)
    return tuple(rf"^{re.escape(name)}\." for name in names)


def _wav2vec2_encoder_norm_depth(match: re.Match, config) -> int:
    # Post-norm models (wav2vec2-base, HuBERT-base: do_stable_layer_norm False) apply
    # encoder.layer_norm to the input of the first block; pre-norm ("stable") models apply
    # it after the last block.
    return config.num_hidden_layers + 1 if config.do_stable_layer_norm else 0


_WAV2VEC2_LIKE = (
    # the convolutional feature encoder, its projection, the positional convolution and the
    # mask embedding all feed the first block
    (r"^masked_spec_embed$", 0),
    (r"^feature_extractor\.", 0),
    (r"^feature_projection\.", 0),
    (r"^encoder\.pos_conv_embed\.", 0),
    (r"^encoder\.layers\.(\d+)\.", "block"),
    (r"^encoder\.layer_norm\.", _wav2vec2_encoder_norm_depth),
    (r"^adapter\.", "top"),
)

FAMILIES: dict[str, Family] = {
    "bert": Family(_attr("num_hidden_layers"), _BERT_LIKE),
    "roberta": Family(_attr("num_hidden_layers"), _BERT_LIKE),
    "xlm-roberta": Family(_attr("num_hidden_layers"), _BERT_LIKE),
    "camembert": Family(_attr("num_hidden_layers"), _BERT_LIKE),
    "electra": Family(_attr("num_hidden_layers"), ((r"^embeddings_project\.", 0), *_BERT_LIKE)),
    "deberta-v2": Family(
        _attr("num_hidden_layers"),
        # relative-position embeddings and their norm serve every layer: front-end depth
        ((r"^encoder\.rel_embeddings\.", 0), (r"^encoder\.LayerNorm\.", 0), *_BERT_LIKE),
    ),
    "mpnet": Family(
        _attr("num_hidden_layers"), ((r"^encoder\.relative_attention_bias\.", 0), *_BERT_LIKE)
    ),
    "distilbert": Family(
        _attr("n_layers"), ((r"^embeddings\.", 0), (r"^transformer\.layer\.(\d+)\.", "block"))
    ),
    "albert": Family(
        _attr("num_hidden_layers"),
        (
            (r"^embeddings\.", 0),
            (r"^encoder\.embedding_hidden_mapping_in\.", 0),
            (r"^encoder\.albert_layer_groups\.(\d+)\.", _albert_group_depth),
            (r"^pooler\.", "top"),
        ),
    ),
    # vision families
    "vit": Family(_attr("num_hidden_layers"), _VIT_LIKE),
    "deit": Family(_attr("num_hidden_layers"), _VIT_LIKE),
    "beit": Family(
        _attr("num_hidden_layers"),
        # a relative-position bias shared by every layer is front-end, like deberta's
        ((r"^(?:encoder\.)?(?:shared_position_bias|relative_position_bias)\.", 0), *_VIT_LIKE),
    ),
    "convnext": Family(_sum_depths, _CONVNEXT),
    "convnextv2": Family(_sum_depths, _CONVNEXT),
    "swin": Family(
        _sum_depths,
        (
            (r"^embeddings\.", 0),
            (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.", _stage_block),
            # patch merging runs at the end of stage s: it goes with that stage's last block
            (r"^encoder\.layers\.(\d+)\.downsample\.", _downsample_after),
            (r"^layernorm\.", "top"),
            (r"^pooler\.", "top"),
        ),
    ),
    "resnet": Family(
        _sum_depths,
        (
            (r"^embedder\.", 0),
            (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.", _stage_block),
            (r"^pooler\.", "top"),
        ),
    ),
    "efficientnet": Family(
        _efficientnet_blocks,
        (
            (r"^embeddings\.", 0),
            (r"^encoder\.blocks\.(\d+)\.", "block"),
            (r"^encoder\.top_(?:conv|bn)\.", "top"),
        ),
    ),
    "mobilenet_v2": Family(
        lambda model: 16,  # transformers builds a fixed list of 16 inverted-residual layers
        (
            (r"^conv_stem\.", 0),
            (r"^layer\.(\d+)\.", "block"),
            (r"^conv_1x1\.", "top"),
        ),
    ),
    "timm_wrapper": Family(
        _timm_num_blocks,
        (
            (r"^(?:conv_stem|bn1)\.", 0),
            (r"^blocks\.(\d+)\.", "block"),
            (r"^(?:conv_head|bn2|norm_head)\.", "top"),
        ),
        head_patterns=_timm_head_patterns,
    ),
    # audio families
    "wav2vec2": Family(_attr("num_hidden_layers"), _WAV2VEC2_LIKE),
    "hubert": Family(_attr("num_hidden_layers"), _WAV2VEC2_LIKE),
    "wavlm": Family(_attr("num_hidden_layers"), _WAV2VEC2_LIKE),
    "audio-spectrogram-transformer": Family(
        _attr("num_hidden_layers"),
        (
            (r"^embeddings\.", 0),
            # transformers 5 names the blocks `layers.i`; older releases `encoder.layer.i`
            (r"^(?:encoder\.layer|layers)\.(\d+)\.", "block"),
            (r"^layernorm\.", "top"),
        ),
    ),
    "whisper": Family(
        _attr("encoder_layers"),
        (
            (r"^encoder\.(?:conv1|conv2|embed_positions)\.", 0),
            (r"^encoder\.layers\.(\d+)\.", "block"),
            (r"^encoder\.layer_norm\.", "top"),
        ),
        # WhisperForAudioClassification declares base_model_prefix "model" but keeps its
        # encoder at `.encoder`, so "outside the base model" finds nothing: name the head.
        head_patterns=(r"^projector\.", r"^classifier\.", r"^layer_weights$"),
    ),
}


def strip_wrappers(name: str) -> str:
    """A parameter name without the prefixes DDP/FSDP/compile wrappers add."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
        name = name.replace("._fsdp_wrapped_module.", ".").replace(
            "._checkpoint_wrapped_module.", "."
        )
    return name


def get_family(model) -> Family:
    model_type = getattr(model.config, "model_type", None)
    family = FAMILIES.get(model_type)
    if family is None:
        raise UserError(
            f"tl-hf cannot map the layers of {type(model).__name__} (model_type {model_type!r}) to "
            f"depths for LLRD/frozen layers; supported model types: {', '.join(sorted(FAMILIES))}. "
            "Use --strategy full, or add the family to tl_hf.model.depth.FAMILIES."
        )
    return family


def num_blocks(model) -> int:
    """L, the number of blocks of the backbone."""
    return get_family(model).num_layers(model)


def head_parameter_names(model) -> set[str]:
    """Names of the parameters the checkpoint did not provide (the new head).

    That is: everything outside the base model (classifier, projector, pre-classifier,
    new pooler), anything the load reported as newly initialised or resized
    (`model.tl_hf_new_parameters`, set by `tl_hf.model.checkpoint.build_model`), and the family's own
    head patterns.
    """
    family = get_family(model)
    patterns = family.head_patterns
    if callable(patterns):
        patterns = patterns(model)
    prefix = getattr(model, "base_model_prefix", "")
    has_base = bool(prefix) and getattr(model, prefix, None) is not None
    new = set(getattr(model, "tl_hf_new_parameters", ()))
    names = set()
    for name, _ in model.named_parameters():
        name = strip_wrappers(name)
        inner = name[len(prefix) + 1 :] if has_base and name.startswith(prefix + ".") else None
        outside_base = has_base and inner is None
        if outside_base or name in new or any(re.search(p, inner or name) for p in patterns):
            names.add(name)
    return names


def parameter_depths(model) -> dict[str, int]:
    """Depth of every parameter (names without wrapper prefixes); raises for any it cannot place."""
    family = get_family(model)
    top = family.num_layers(model) + 1
    prefix = getattr(model, "base_model_prefix", "")
    heads = head_parameter_names(model)
    rules = [(re.compile(pattern), depth) for pattern, depth in family.rules]
    depths, unplaced = {}, []
    for name, _ in model.named_parameters():
        name = strip_wrappers(name)
        if name in heads:
            depths[name] = top
            continue
        inner = name[len(prefix) + 1 :] if prefix and name.startswith(prefix + ".") else name
        for pattern, depth in rules:
            match = pattern.search(inner)
            if match is None:
                continue
            if depth == "top":
                depths[name] = top
            elif depth == "block":
                depths[name] = int(match.group(1)) + 1
            elif callable(depth):
                depths[name] = depth(match, model.config)
            else:
                depths[name] = int(depth)
            break
        else:
            unplaced.append(name)
    if unplaced:
        raise UserError(
            f"tl-hf cannot place {len(unplaced)} parameter(s) of {type(model).__name__} in a layer, "
            f"e.g. {', '.join(unplaced[:3])}; extend tl_hf.model.depth.FAMILIES[{model.config.model_type!r}]"
        )
    return depths


def no_decay_names(model) -> set[str]:
    """Biases and the weights of normalisation layers (any module class named *Norm*)."""
    import torch.nn as nn

    names = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(
            module, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)
        ) or ("norm" in type(module).__name__.lower())
        for param_name, _ in module.named_parameters(recurse=False):
            full = strip_wrappers(f"{module_name}.{param_name}" if module_name else param_name)
            if is_norm or param_name == "bias" or param_name.endswith("_bias"):
                names.add(full)
    return names
