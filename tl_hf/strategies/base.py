"""A fine-tuning strategy, declared once in one record: which parameters train, the
optimizer's groups and their learning rates, changes to the model before training (adapters)
and during it (callbacks), whether frozen features can be cached, how the final model is saved,
its own flags, its default learning rate and how it is described.

Every step of the flow that differs by strategy reads it from the `Strategy` record (the lab's
grid and the playbook choose their axes by strategy name: layers for frozen, decays for llrd).
Adding one is a module that builds a `Strategy` and registers it (`docs/strategies.md`):

    from tl_hf.strategy import Strategy, head_parameter_names, register_strategy

    register_strategy(Strategy(
        name="head_only", description="only the new head trains",
        trainable=lambda model, options: head_parameter_names(model),
    ))

The built-in strategies live in `tl_hf/strategies/` (frozen, full, llrd in `basic.py`; lora,
lp_ft and gradual in modules of their own) and are imported on first use; the groups they build
are in `tl_hf.strategies.groups`, the depth tables those read in `tl_hf.model.depth`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tl_hf.errors import UserError
from tl_hf.model.depth import head_parameter_names, parameter_depths, strip_wrappers
from tl_hf.registry import Registry, Settings, settings_of
from tl_hf.strategies.groups import build_depth_groups, layerwise_groups, uniform_groups

__all__ = [
    "BUILTIN",
    "STRATEGIES",
    "Strategy",
    "StrategyArguments",
    "StrategyContext",
    "apply_freeze_feature_encoder",
    "apply_strategy",
    "build_depth_groups",
    "build_param_groups",
    "get_strategy",
    "head_parameter_names",
    "layerwise_groups",
    "refuse_trainable_layers",
    "register_strategy",
    "strategy_names",
    "strategy_settings",
    "train_everything",
    "trainable_names",
    "uniform_groups",
]


@dataclass
class StrategyArguments:
    """The strategy flags every strategy shares (a strategy's own are its record's `flags`)."""

    strategy: str | None = field(
        default=None,
        metadata={
            "help": "Default: the modality's (text lp_ft, image and audio llrd; docs/defaults.md). "
            "frozen: backbone frozen, new head trains; full: everything at --learning_rate; "
            "llrd: layerwise learning-rate decay; lora: LoRA adapters + the head; lp_ft: linear "
            "probe, then fine-tune; gradual: unfreeze one block from the top every "
            "--unfreeze_every epochs; or any strategy registered with "
            "tl_hf.strategy.register_strategy (docs/strategies.md)."
        },
    )
    llrd_decay: float = field(
        default=0.8,
        metadata={
            "range": "(0, 1]",
            "hint": "try 0.8",
            "help": "LLRD factor per layer below the top, in (0, 1]: lr * decay ** (L + 1 - depth).",
        },
    )
    trainable_layers: int = field(
        default=0,
        metadata={
            "range": "[0, inf)",
            "help": "With --strategy frozen: also train the top K backbone layers.",
        },
    )
    cache_features: bool = field(
        default=True,
        metadata={
            "help": "With --strategy frozen and --trainable_layers 0: run the frozen backbone once over "
            "every split, store its output (datasets cache, reused by reruns and other heads) and train "
            "the head on it. Not with on-the-fly or batch-level augmentation. false: run the backbone "
            "every step."
        },
    )
    freeze_feature_encoder: bool = field(
        default=True,
        metadata={
            "help": "Audio: keep the convolutional feature encoder of wav2vec2-style models frozen "
            "(the usual practice on little data); no effect on other models."
        },
    )


@dataclass
class StrategyContext:
    """What `Strategy.prepare_model` may use besides the model.

    Attributes:
        options: the run's strategy settings (`strategy_settings`).
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


@dataclass(frozen=True)
class Strategy:
    """What one strategy decides, at each step of the flow.

    Every function takes the run's strategy settings as `options`: `StrategyArguments` joined
    with the strategy's own flags (`tl_hf.registry.Settings`; `options.llrd_decay`,
    `options.lora_r`).

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
        flags: the dataclass of the strategy's own flags (`--lora_r` for lora), parsed beside the
            toolkit's; None: none of its own.
        trains_backbone: whether the backbone learns (the diagnosis suggests unfreezing
            when it does not).
        head_on_frozen_features(options) -> bool: whether the head first learns on the frozen
            backbone's features (then `--pooling auto` gives it the pooling the checkpoint
            declares, `tl_hf.model.pooling`).
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
    flags: type | None = None
    trains_backbone: bool = True
    head_on_frozen_features: Callable[[Any], bool] = lambda options: False
    card_text: Callable[[Mapping[str, Any], Mapping[str, Any], list], str] | None = None


BUILTIN = {
    "frozen": "tl_hf.strategies.basic",
    "full": "tl_hf.strategies.basic",
    "llrd": "tl_hf.strategies.basic",
    "lora": "tl_hf.strategies.lora",
    "lp_ft": "tl_hf.strategies.lp_ft",
    "gradual": "tl_hf.strategies.gradual",
}
# The strategies that ship with tl-hf, imported on first use (each module registers itself).
STRATEGIES: Registry[Strategy] = Registry(
    "strategy",
    Strategy,
    BUILTIN,
    unknown="--strategy: invalid choice: {name}: choose one of {choices}",
    public="tl_hf.strategy",
)


def register_strategy(strategy: Strategy) -> Strategy:
    """Make `strategy` available by name to `--strategy`, the Python API and the lab."""
    return STRATEGIES.register(strategy)


def strategy_names() -> list[str]:
    """Every strategy known now: the built-in ones and those registered."""
    return STRATEGIES.names()


def get_strategy(name: str) -> Strategy:
    """The registered strategy called `name` (built-in ones are imported on first use)."""
    return STRATEGIES.get(name)


def strategy_settings(strategy: str, **values: Any) -> Settings:
    """The settings a strategy's functions read, from flag values by name (the others at their
    defaults): `strategy_settings("lora", lora_r=4)`. What a run resolves from its flags."""
    shared = {k: v for k, v in values.items() if k in StrategyArguments.__dataclass_fields__}
    return settings_of(
        StrategyArguments(**{**shared, "strategy": strategy}), get_strategy(strategy).flags, values
    )


def _as_settings(record: Strategy, options, **values: Any) -> Settings:
    """`options` as settings: given ones as they are, a bare `StrategyArguments` with the
    strategy's own flags at their defaults, None from `values` (the short form)."""
    if isinstance(options, Settings):
        return options
    if options is None:
        return strategy_settings(record.name, **values)
    return settings_of(options, record.flags)


def _record(strategy: Strategy | str) -> Strategy:
    return strategy if isinstance(strategy, Strategy) else get_strategy(strategy)


def trainable_names(
    model, strategy: Strategy | str, trainable_layers: int = 0, options=None
) -> set[str]:
    """The parameters the strategy trains (names without wrapper prefixes)."""
    record = _record(strategy)
    options = _as_settings(record, options, trainable_layers=trainable_layers)
    return record.trainable(model, options)


def _keep_eval(module, args) -> None:
    # a frozen BatchNorm keeps its running statistics; asked at every call, because a later
    # phase may train it again (LP-FT: probe frozen, then fine-tune everything)
    if not any(p.requires_grad for p in module.parameters(recurse=False)):
        module.training = False


def apply_strategy(
    model, strategy: Strategy | str, trainable_layers: int = 0, options=None
) -> set[str]:
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
    strategy: Strategy | str,
    learning_rate: float,
    weight_decay: float,
    llrd_decay: float = 1.0,
    reference_model=None,
    options=None,
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups as the strategy declares them (trainable parameters
    only, in depth order; see `tl_hf.strategies.groups.build_depth_groups`)."""
    record = _record(strategy)
    options = _as_settings(record, options, llrd_decay=llrd_decay)
    return record.param_groups(model, options, learning_rate, weight_decay, reference_model)


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
