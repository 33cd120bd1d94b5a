"""A fine-tuning strategy, declared once in one record: which parameters train, the
optimizer's groups and their learning rates, changes to the model before training (adapters)
and during it (callbacks), whether frozen features can be cached, how the final model is saved,
its default learning rate and how it is described.

Every step of the flow that differs by strategy reads it from the `Strategy` record; nothing
else in tl-hf tests a strategy's name. Adding one is a module that builds a `Strategy` and
registers it (`docs/strategies.md`):

    from tl_hf.strategy import Strategy, head_parameter_names, register_strategy

    register_strategy(Strategy(
        name="head_only", description="only the new head trains",
        trainable=lambda model, options: head_parameter_names(model),
    ))

The built-in strategies live in `tl_hf/strategies/` (frozen, full, llrd in `basic.py`; lora,
lp_ft and gradual in modules of their own) and are imported on first use. The depth tables they
read are in `tl_hf.depth` (re-exported here).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tl_hf.config import StrategyArguments, UserError
from tl_hf.depth import (  # noqa: F401  (re-exported: the depth tables' historical home)
    FAMILIES,
    WRAPPER_PREFIXES,
    Family,
    get_family,
    head_parameter_names,
    no_decay_names,
    num_blocks,
    parameter_depths,
    strip_wrappers,
)

# The strategies that ship with tl-hf, imported on first use (each module registers itself).
BUILTIN = {
    "frozen": "tl_hf.strategies.basic",
    "full": "tl_hf.strategies.basic",
    "llrd": "tl_hf.strategies.basic",
    "lora": "tl_hf.strategies.lora",
    "lp_ft": "tl_hf.strategies.lp_ft",
    "gradual": "tl_hf.strategies.gradual",
}
_REGISTRY: dict[str, Strategy] = {}


@dataclass
class StrategyContext:
    """What `Strategy.prepare_model` may use besides the model.

    Attributes:
        options: the run's `StrategyArguments`.
        learning_rates: the modality's default learning rate per strategy name.
        log: where progress lines go (the main process prints them).
        train_phase: supplied by the pipeline: `train_phase(model, strategy_name, epochs,
            learning_rate)` trains the model under another strategy for a few epochs (features
            cached when that strategy allows it) and returns that phase's history (`train`,
            `eval`, `learning_rates` records, as in `training_history.json`).
        phases: histories of the phases run before the main training; the curves draw them
            before epoch 0.
    """

    options: Any
    learning_rates: dict[str, float] = field(default_factory=dict)
    log: Callable[[str], None] = print
    train_phase: Callable[..., dict] | None = None
    phases: list[dict] = field(default_factory=list)


def train_everything(model, options) -> set[str]:
    """Every parameter (what full fine-tuning trains)."""
    return set(parameter_depths(model))


def _no_change(model, context: StrategyContext) -> None:
    return None


def _no_callbacks(options) -> list:
    return []


def _backbone_trains(options) -> tuple[bool, str]:
    return False, f"--strategy {options.strategy} trains the backbone"


def _full_rate(rates: Mapping[str, float], options) -> float:
    return rates["full"]


def _no_detail(settings: Mapping[str, Any]) -> str:
    return ""


def refuse_trainable_layers(options, model_args=None) -> None:
    """The default `check`: `--trainable_layers` belongs to `frozen`."""
    if options.trainable_layers:
        raise UserError(
            "--trainable_layers only applies to --strategy frozen (the others train every layer)"
        )


def build_depth_groups(
    model,
    learning_rate: float,
    weight_decay: float,
    lr_at_depth: Callable[[int, int], float] | None = None,
    reference_model=None,
) -> list[dict[str, Any]]:
    """Optimizer groups, one per (depth, decay / no decay), trainable parameters only, in depth
    order; `lr_at_depth(depth, top)` gives a group's learning rate (default: `learning_rate`).

    `model` supplies the parameter objects (it may be wrapped by DDP/FSDP);
    `reference_model` (default: `model`) the config and names used to place them.
    Each group has `params`, `lr`, `weight_decay`, `name`, `depth`, `num_params`.
    """
    reference = reference_model if reference_model is not None else model
    depths = parameter_depths(reference)
    no_decay = no_decay_names(reference)
    top = num_blocks(reference) + 1
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        name = strip_wrappers(name)
        depth = depths[name]
        decays = name not in no_decay
        lr = lr_at_depth(depth, top) if lr_at_depth is not None else learning_rate
        group = groups.setdefault(
            (depth, decays),
            {
                "name": f"depth_{depth:02d}" + ("" if decays else "_no_decay"),
                "depth": depth,
                "lr": lr,
                "weight_decay": weight_decay if decays else 0.0,
                "params": [],
                "num_params": 0,
            },
        )
        group["params"].append(param)
        group["num_params"] += param.numel()
    return [groups[key] for key in sorted(groups)]


def uniform_groups(model, options, learning_rate, weight_decay, reference_model=None):
    """Every trainable parameter at `learning_rate` (groups by depth, for the report)."""
    return build_depth_groups(model, learning_rate, weight_decay, None, reference_model)


def layerwise_groups(model, options, learning_rate, weight_decay, reference_model=None):
    """LLRD: a group at depth d trains at `learning_rate * llrd_decay ** (L + 1 - d)`."""
    decay = options.llrd_decay
    return build_depth_groups(
        model,
        learning_rate,
        weight_decay,
        lambda depth, top: learning_rate * decay ** (top - depth),
        reference_model,
    )


@dataclass(frozen=True)
class Strategy:
    """What one strategy decides, at each step of the flow.

    Every function takes the run's `StrategyArguments` as `options` (its own flags included).

    Attributes:
        name: the `--strategy` value.
        description: one line for `--help`, errors and docs.
        trainable(model, options) -> set of parameter names (without wrapper prefixes) that
            train; the rest get `requires_grad=False` (frozen BatchNorm layers keep their
            running statistics).
        param_groups(model, options, learning_rate, weight_decay, reference_model) -> the
            optimizer's groups (`build_depth_groups`); called by the Trainer after
            Accelerate/FSDP wrapped the model, over its trainable parameters.
        prepare_model(model, context) -> None: changes before the parameters are chosen
            (LoRA adapters, a linear probe).
        callbacks(options) -> `TrainerCallback`s for changes during training (unfreezing).
        can_cache_features(options) -> (bool, reason): whether the backbone is frozen for the
            whole run, so its output can be computed once.
        save(trainer, options, output_dir) -> None: write the final model (default
            `trainer.save_model`); a strategy may write more (an adapter folder).
        default_learning_rate(rates, options) -> the learning rate when `--learning_rate` is
            not given and the modality's `default_learning_rates` does not name the strategy.
        describe(settings) -> the strategy's details for the log, report and model card
            (`settings`: the flat run config, e.g. "LLRD decay 0.8"); "" for none.
        check(options, model_args) -> None, raising `UserError` for a bad combination
            (called before anything is loaded).
        trains_backbone: whether the backbone learns (the diagnosis suggests unfreezing
            when it does not).
        head_on_frozen_features(options) -> bool: whether the head first learns on the frozen
            backbone's features (then `--pooling auto` gives it the pooling the checkpoint
            declares, `tl_hf.pooling`).
        card_text(settings, results, lr_by_depth) -> the model card's sentence about the
            training (`results`: the run's metrics; `lr_by_depth`: (depth, learning rate,
            parameters) rows of the optimizer's groups); None: the description, `describe`'s
            details and the learning rate.
    """

    name: str
    description: str
    trainable: Callable[[Any, Any], set[str]] = train_everything
    param_groups: Callable[..., list[dict[str, Any]]] = uniform_groups
    prepare_model: Callable[[Any, StrategyContext], None] = _no_change
    callbacks: Callable[[Any], list] = _no_callbacks
    can_cache_features: Callable[[Any], tuple[bool, str]] = _backbone_trains
    save: Callable[[Any, Any, str], None] | None = None
    default_learning_rate: Callable[[Mapping[str, float], Any], float] = _full_rate
    describe: Callable[[Mapping[str, Any]], str] = _no_detail
    check: Callable[[Any, Any], None] = refuse_trainable_layers
    trains_backbone: bool = True
    head_on_frozen_features: Callable[[Any], bool] = lambda options: False
    card_text: Callable[[Mapping[str, Any], Mapping[str, Any], list], str] | None = None


def register_strategy(strategy: Strategy) -> Strategy:
    """Make `strategy` available by name to `--strategy`, the Python API and the lab."""
    if not isinstance(strategy, Strategy):
        raise TypeError(
            f"register_strategy takes a tl_hf.strategy.Strategy, got {type(strategy).__name__}"
        )
    _REGISTRY[strategy.name] = strategy
    return strategy


def strategy_names() -> list[str]:
    """Every strategy known now: the built-in ones and those registered."""
    return sorted(set(BUILTIN) | set(_REGISTRY))


def get_strategy(name: str) -> Strategy:
    """The registered strategy called `name` (built-in ones are imported on first use)."""
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _REGISTRY:
        raise UserError(
            f"--strategy: invalid choice: {name!r}: choose one of {', '.join(strategy_names())} "
            "(or register yours with tl_hf.strategy.register_strategy)"
        )
    return _REGISTRY[name]


def strategy_options(
    strategy: str, trainable_layers: int = 0, llrd_decay: float = 1.0, options=None
):
    """The `StrategyArguments` a strategy function receives: `options` when given, else built
    from the name and the two classic settings (the short form the tests and benches use)."""
    if options is not None:
        return options
    return StrategyArguments(
        strategy=strategy, trainable_layers=trainable_layers, llrd_decay=llrd_decay
    )


def trainable_names(model, strategy: str, trainable_layers: int = 0, options=None) -> set[str]:
    """The parameters the strategy trains (names without wrapper prefixes)."""
    options = strategy_options(strategy, trainable_layers, options=options)
    return get_strategy(options.strategy).trainable(model, options)


def _keep_eval(module, args) -> None:
    # a frozen BatchNorm keeps its running statistics; asked at every call, because a later
    # phase may train it again (LP-FT: probe frozen, then fine-tune everything)
    if not any(p.requires_grad for p in module.parameters(recurse=False)):
        module.training = False


def apply_strategy(model, strategy: str, trainable_layers: int = 0, options=None) -> set[str]:
    """Set `requires_grad` for the strategy; frozen BatchNorm layers stay in eval mode
    (a forward pre-hook, so `model.train()` from the Trainer cannot undo it).

    Call the strategy's `prepare_model` first when it has one (LoRA adds the parameters that
    train). Returns the names of the trainable parameters.
    """
    import torch.nn as nn

    fixed = set(getattr(model, "tl_hf_fixed_parameters", ()))
    trainable = trainable_names(model, strategy, trainable_layers, options) - fixed
    for name, param in model.named_parameters():
        param.requires_grad_(strip_wrappers(name) in trainable)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
                if not getattr(module, "_tl_hf_frozen", False):
                    module.register_forward_pre_hook(_keep_eval)
                    module._tl_hf_frozen = True
    return trainable


def build_param_groups(
    model,
    strategy: str,
    learning_rate: float,
    weight_decay: float,
    llrd_decay: float = 1.0,
    reference_model=None,
    options=None,
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups as the strategy declares them (trainable parameters
    only, in depth order; see `build_depth_groups`)."""
    options = strategy_options(strategy, llrd_decay=llrd_decay, options=options)
    declared = get_strategy(options.strategy)
    return declared.param_groups(model, options, learning_rate, weight_decay, reference_model)


def describe_param_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups as JSON-able rows (what `param_groups.json` holds)."""
    return [
        {k: g[k] for k in ("name", "depth", "num_params", "lr", "weight_decay")} for g in groups
    ]


def format_param_groups(rows: list[dict[str, Any]], total_params: int) -> str:
    """A printable table of the groups."""
    lines = [f"{'group':<20} {'depth':>5} {'params':>12} {'lr':>10} {'wd':>6}"]
    for r in rows:
        lines.append(
            f"{r['name']:<20} {r['depth']:>5} {r['num_params']:>12,} {r['lr']:>10.3g} {r['weight_decay']:>6.3g}"
        )
    trained = sum(r["num_params"] for r in rows)
    lines.append(
        f"trainable {trained:,} of {total_params:,} parameters ({100 * trained / max(total_params, 1):.1f}%)"
    )
    return "\n".join(lines)


def apply_freeze_feature_encoder(model) -> int:
    """Freeze the convolutional feature encoder of wav2vec2-style models (wav2vec2, HuBERT,
    WavLM, ...), the usual practice when fine-tuning them on little data.

    Call it after `apply_strategy` (which sets `requires_grad` on every parameter).
    Returns the number of parameters frozen; 0 for models without such an encoder.
    """
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    encoder = getattr(base if base is not None else model, "feature_extractor", None)
    # A conv feature encoder is a module with `conv_layers` (not a preprocessing object).
    if encoder is None or not hasattr(encoder, "conv_layers"):
        return 0
    frozen = 0
    for param in encoder.parameters():
        if param.requires_grad:
            frozen += param.numel()
        param.requires_grad_(False)
    # transformers' own flag: the encoder then skips building a graph for its activations
    encoder._requires_grad = False
    return frozen
