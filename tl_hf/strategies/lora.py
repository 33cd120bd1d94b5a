"""`lora`: LoRA adapters (the `peft` package) on the attention and MLP projections of the
blocks; the new head trains fully; everything else stays frozen.

The adapters are injected in place (`peft.inject_adapter_in_model`): the model stays a plain
transformers `PreTrainedModel`, so the Trainer, its checkpoints (best-model restore, resume),
DDP wrapping and the depth table (`lora_A`/`lora_B` of block i sit at depth i + 1) work as for
any other strategy. The head is a peft `modules_to_save` copy, so the adapter file holds it too.

At the end the run folder holds the merged model (`W + B @ A * alpha / r` folded into the
base weights, peft wrappers removed: `pipeline()` loads it without peft) and the adapter in
`adapter/` (`PeftModel.from_pretrained(base checkpoint with a fresh head, "adapter")`).
Verified on tiny BERT, DistilBERT, RoBERTa, ViT, Whisper, wav2vec2 and timm EfficientNet-Lite0
(merged, adapter-on-base and trained logits agree to 1e-5).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tl_hf.errors import UserError
from tl_hf.model.depth import head_parameter_names, num_blocks, parameter_depths, strip_wrappers
from tl_hf.output.names import ADAPTER_DIR
from tl_hf.strategies.base import Strategy, refuse_trainable_layers, register_strategy

BARE_HEAD_FILE = "head_extra.safetensors"


@dataclass
class LoraArguments:
    """`--strategy lora`'s own flags."""

    lora_r: int = field(
        default=8,
        metadata={"range": "[1, inf)", "hint": "try 8", "help": "lora: rank of the adapters."},
    )
    lora_alpha: float = field(
        default=16,
        metadata={
            "range": "(0, inf)",
            "help": "lora: scaling numerator (updates scale by alpha / r).",
        },
    )
    lora_dropout: float = field(
        default=0.1, metadata={"range": "[0, 1)", "help": "lora: dropout on the adapters' input."}
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "lora: module names (or one regex) that get adapters. Default: the attention "
            "and MLP projections of the blocks, found per family."
        },
    )


# peft matches a *string* target with re.fullmatch against module names relative to the model
# (e.g. "bert.encoder.layer.0.attention.self.query"). Anchoring on the block path keeps out
# BERT's pooler.dense, RoBERTa's classifier.dense, DistilBERT's pre_classifier, the
# wav2vec2/Whisper projector and every classifier (a suffix list such as ["dense"] would catch
# the pooler too).
_BERT_LIKE = (
    r".*\.encoder\.layer\.\d+\.(?:attention\.self\.(?:query|key|value)"
    r"|attention\.output\.dense|intermediate\.dense|output\.dense)"
)
_WAV2VEC2_LIKE = (
    r".*\.encoder\.layers\.\d+\.(?:attention\.(?:q_proj|k_proj|v_proj|out_proj)"
    r"|feed_forward\.(?:intermediate_dense|output_dense))"
)
TARGETS: dict[str, str] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "distilbert": r".*\.transformer\.layer\.\d+\.(?:attention\.(?:q_lin|k_lin|v_lin|out_lin)"
    r"|ffn\.(?:lin1|lin2))",
    # transformers 5 names ViT blocks layers.N with attention.{q,k,v,o}_proj and mlp.fc{1,2}
    "vit": r".*\.(?:encoder\.layer|layers)\.\d+\.(?:attention\.(?:q_proj|k_proj|v_proj|o_proj)"
    r"|mlp\.(?:fc1|fc2))",
    # WhisperForAudioClassification keeps its encoder at `encoder` (no "model." prefix)
    "whisper": r"(?:.*\.)?encoder\.layers\.\d+\.(?:self_attn\.(?:q_proj|k_proj|v_proj|out_proj)"
    r"|fc1|fc2)",
    "wav2vec2": _WAV2VEC2_LIKE,
    "hubert": _WAV2VEC2_LIKE,
    "wavlm": _WAV2VEC2_LIKE,
    # timm EfficientNet-like blocks: the pointwise (1x1, groups=1) convolutions, expansion and
    # projection; depthwise convolutions and the stem are left out
    "timm_wrapper": r"timm_model\.blocks\.\d+\.\d+\.(?:conv_pw|conv_pwl)",
}


def find_target_modules(model) -> str | list[str]:
    """peft `target_modules` for the model: the family's regex, or, for a family without one,
    every `nn.Linear` and pointwise `nn.Conv2d` whose parameters sit in a block (depth 1..L:
    not the front-end, final norm, pooler or head)."""
    import torch.nn as nn

    model_type = getattr(model.config, "model_type", None)
    if model_type in TARGETS:
        parameter_depths(model)  # a timm model the depth table cannot map fails here, named
        return TARGETS[model_type]
    depths, top = parameter_depths(model), num_blocks(model) + 1
    names = []
    for name, module in model.named_modules():
        pointwise = (
            isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
        )
        if not (type(module) is nn.Linear or pointwise):
            continue
        found = {depths[f"{name}.{p}"] for p, _ in module.named_parameters(recurse=False)}
        if found and all(1 <= d < top for d in found):
            names.append(name)
    if not names:
        raise UserError(
            f"found no linear layer in the blocks of {type(model).__name__} for LoRA: pass "
            "--lora_target_modules"
        )
    return names


def _user_targets(given: list[str]) -> str | list[str]:
    # one entry with regex syntax is a regex (peft: fullmatch on the whole module name);
    # otherwise module-name suffixes, dotted ones included ("attention.self.query")
    if len(given) == 1 and re.search(r"[\\*+?()\[\]|]", given[0]):
        return given[0]
    return list(given)


def head_modules(model) -> tuple[list[str], list[str]]:
    """(module names for peft's `modules_to_save`, bare head parameters no submodule owns).

    The modules are the highest submodules (never the root) whose parameters are all head
    parameters: RoBERTa -> ["classifier"], DistilBERT -> ["classifier", "pre_classifier"],
    timm -> ["timm_model.classifier"]. A bare parameter (`layer_weights` of wav2vec2/Whisper
    with `use_weighted_layer_sum`) cannot be wrapped: it trains as is and is saved beside the
    adapter in head_extra.safetensors.
    """
    heads = head_parameter_names(model)
    modules = dict(model.named_modules())
    found, bare = set(), []
    for name in sorted(heads):
        module = name.rpartition(".")[0]
        if not module:
            bare.append(name)
            continue
        while "." in module:
            parent = module.rpartition(".")[0]
            if {f"{parent}.{n}" for n, _ in modules[parent].named_parameters()} <= heads:
                module = parent
            else:
                break
        found.add(module)
    return sorted(found), bare


def apply_lora(model, r: int = 8, alpha: float = 16, dropout: float = 0.1, targets=None) -> Any:
    """Inject LoRA adapters in place (peft freezes everything but them and the head copies).

    Returns the same model object."""
    from peft import LoraConfig, inject_adapter_in_model

    head, bare = head_modules(model)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        bias="none",
        target_modules=targets if targets is not None else find_target_modules(model),
        modules_to_save=head or None,
        base_model_name_or_path=getattr(model, "name_or_path", None) or None,
    )
    inject_adapter_in_model(config, model)  # sets model.peft_config
    for name in bare:
        model.get_parameter(name).requires_grad_(True)
    model.tl_hf_lora_bare_head = list(bare)
    return model


def lora_trainable(model, options) -> set[str]:
    """The adapters' A and B matrices, the head's trainable copy and bare head parameters."""
    if not hasattr(model, "peft_config"):
        raise UserError(
            "the model has no LoRA adapters: run the lora strategy's prepare_model "
            "(tl_hf.strategies.lora.apply_lora) before choosing its parameters"
        )
    bare = set(getattr(model, "tl_hf_lora_bare_head", ()))
    return {
        strip_wrappers(n)
        for n, _ in model.named_parameters()
        if ".lora_" in n or ".modules_to_save." in n or n in bare
    }


def merge_lora(model) -> Any:
    """Fold the adapters into the base weights and remove every peft wrapper, in place: the
    model then has the base checkpoint's state-dict keys. Returns the model."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import AuxiliaryTrainingWrapper

    wrapped = [
        n
        for n, m in model.named_modules()
        if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))
    ]
    outermost = [n for n in wrapped if not any(n.startswith(o + ".") for o in wrapped if o != n)]
    for name in outermost:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        module = getattr(parent, child)
        if isinstance(module, AuxiliaryTrainingWrapper):  # the head: keep the trained copy
            new = module.unload_and_optionally_merge_module(
                merge=True, safe_merge=False, adapter_names=None
            )
        else:
            module.merge()
            new = module.get_base_layer()
        setattr(parent, child, new)
    for attr in ("peft_config", "tl_hf_lora_bare_head"):
        model.__dict__.pop(attr, None)
    return model


def merged_state_dict(model, state: Mapping[str, Any]) -> dict[str, Any]:
    """The merged model's weights computed from a full state dict of the adapted `model`
    (`W + scaling * B @ A` for each adapter, the head's trained copy, peft's wrappers gone):
    the base checkpoint's keys. Works on a state dict gathered from FSDP/DeepSpeed shards,
    where the model's own parameters are only this rank's pieces, so no module is touched.
    """
    import torch.nn.functional as F
    from peft.tuners.lora import LoraLayer

    merged = dict(state)
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        name = strip_wrappers(name)
        for adapter, scaling in module.scaling.items():
            a = merged.pop(f"{name}.lora_A.{adapter}.weight")
            b = merged.pop(f"{name}.lora_B.{adapter}.weight")
            key = f"{name}.base_layer.weight"
            base = merged[key]
            if base.dim() == 4 and base.shape[2:] != (1, 1):  # a k x k convolution
                delta = F.conv2d(a.permute(1, 0, 2, 3), b).permute(1, 0, 2, 3)
            else:  # linear layers and pointwise convolutions
                delta = (b.flatten(1).float() @ a.flatten(1).float()).reshape(base.shape)
            if getattr(module, "fan_in_fan_out", False):
                delta = delta.T
            merged[key] = (base.float() + delta * scaling).to(base.dtype)
    renamed = {}
    for key, value in merged.items():
        if ".original_module." in key:  # the head before training
            continue
        key = re.sub(r"\.modules_to_save\.[^.]+\.", ".", key)
        renamed[key.replace(".base_layer.", ".")] = value
    return renamed


def adapter_state_dict(model, state: Mapping[str, Any]) -> dict[str, Any]:
    """The adapter's tensors under peft's saved names (`...query.lora_A.weight`, the head as
    `classifier.weight`), picked from a full state dict of the model by visiting its LoRA and
    head wrappers. What `peft.get_peft_model_state_dict` returns, except that module names
    inside FSDP units (`layer.0._fsdp_wrapped_module.attention...`) are matched without their
    wrapper prefixes, which peft does not do."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import AuxiliaryTrainingWrapper

    adapter = {}
    for name, module in model.named_modules():
        name = strip_wrappers(name)
        if isinstance(module, LoraLayer):
            for part in ("lora_A", "lora_B"):
                adapter[f"{name}.{part}.weight"] = state[f"{name}.{part}.default.weight"]
        elif isinstance(module, AuxiliaryTrainingWrapper):  # the head's trained copy
            prefix = f"{name}.modules_to_save.default."
            adapter.update(
                {f"{name}.{k[len(prefix) :]}": v for k, v in state.items() if k.startswith(prefix)}
            )
    return adapter


def save_adapter(
    model,
    directory: str,
    base_model_name_or_path: str | None = None,
    state: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write the adapter in peft's format (adapter_config.json, adapter_model.safetensors with
    the LoRA matrices and the head), loadable with `PeftModel.from_pretrained(base, directory)`;
    bare head parameters (outside any module peft can copy) go to head_extra.safetensors, to
    copy onto the base model before loading the adapter. `state`: a full state dict of the model
    (gathered from shards); default: the model's own. Returns the adapter's tensor names."""
    import copy

    from safetensors.torch import save_file

    state = state if state is not None else model.state_dict()
    os.makedirs(directory, exist_ok=True)
    adapter = {
        f"base_model.model.{k}": v.detach().cpu().contiguous()
        for k, v in adapter_state_dict(model, state).items()
    }
    save_file(
        adapter, os.path.join(directory, "adapter_model.safetensors"), metadata={"format": "pt"}
    )
    config = copy.copy(model.peft_config["default"])
    config.base_model_name_or_path = base_model_name_or_path or config.base_model_name_or_path
    config.inference_mode = True
    config.save_pretrained(directory)
    bare = getattr(model, "tl_hf_lora_bare_head", [])
    if bare:
        save_file(
            {n: state[n].detach().cpu().contiguous() for n in bare},
            os.path.join(directory, BARE_HEAD_FILE),
        )
    return sorted(adapter)


def _prepare(model, context) -> None:
    options = context.options
    targets = _user_targets(options.lora_target_modules) if options.lora_target_modules else None
    try:
        apply_lora(model, options.lora_r, options.lora_alpha, options.lora_dropout, targets)
    except ValueError as err:  # peft's NoMatchingPeftModuleError, before any training
        raise UserError(
            f"--lora_target_modules {options.lora_target_modules} matched no module of "
            f"{type(model).__name__}: give module names such as query value (or one regex)"
        ) from err
    layers = sum(1 for n, _ in model.named_modules() if n.endswith(".lora_A"))
    context.log(f"lora: adapters on {layers} modules (r {options.lora_r})")


def _save(trainer, options, output_dir: str) -> None:
    """Every rank: gather the full weights (FSDP/DeepSpeed shards; a plain model's own state
    dict otherwise); rank 0 writes the adapter, then the merged model beside the processor,
    each file whole or absent (`tl_hf.output.save.staged_into`)."""
    from accelerate import PartialState

    from tl_hf.output.save import staged_into

    state = trainer.accelerator.get_state_dict(trainer.model)
    if trainer.args.process_index == 0:
        model = trainer.accelerator.unwrap_model(trainer.model)
        adapter_dir = os.path.join(output_dir, ADAPTER_DIR)
        os.makedirs(adapter_dir, exist_ok=True)
        with staged_into(adapter_dir) as staging:
            save_adapter(model, staging, model.name_or_path, state)
        with staged_into(output_dir) as staging:
            trainer._save(staging, state_dict=merged_state_dict(model, state))
    if not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        # the model the run returns is the one saved (sharded weights cannot merge in place)
        merge_lora(trainer.accelerator.unwrap_model(trainer.model))
    PartialState().wait_for_everyone()


def _check(options, model_args) -> None:
    refuse_trainable_layers(options)
    if model_args is not None and model_args.random_init:
        raise UserError(
            "--random_init with --strategy lora would adapt random, frozen weights: "
            "use --strategy full"
        )
    try:
        import peft  # noqa: F401
    except ImportError as err:
        raise UserError(
            "--strategy lora needs the peft package: pip install peft (or tl-hf[lora])"
        ) from err


def _describe(settings: Mapping[str, Any]) -> str:
    return (
        f"LoRA r {settings.get('lora_r')}, alpha {settings.get('lora_alpha')}, dropout "
        f"{settings.get('lora_dropout')}; merged model in the folder, adapter in {ADAPTER_DIR}/"
    )


LORA = register_strategy(
    Strategy(
        name="lora",
        description="LoRA adapters on the blocks' attention and MLP projections; the new head "
        "trains fully",
        trainable=lora_trainable,
        prepare_model=_prepare,
        save=_save,
        # LoRA's few parameters take larger steps: 40x full fine-tuning's rate (2e-3 for text).
        # Measured on the text default (bench/RESULTS_strategies.md: 200 rows, 2 epochs): 5e-4
        # reached 0.716 test accuracy, 2e-3 0.888 beside full's 0.90; image/audio unmeasured.
        default_learning_rate=lambda rates, options: 40 * rates["full"],
        describe=_describe,
        check=_check,
        flags=LoraArguments,
    )
)
