"""Arguments: the toolkit's dataclasses plus `TrainingArguments`, from flags, a YAML/JSON
config file or keyword arguments, validated before anything heavy is loaded.

The first step of the flow (config -> data -> augment -> preprocess -> model -> strategy ->
train -> report -> save/push).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tl_hf.errors import UserError  # noqa: F401  (re-exported: its historical home)
from tl_hf.ranges import RANGE_METADATA, check_ranges

AUGMENT_MODES = ("map", "on_the_fly")

# The early-stopping preset (DESIGN.md): evaluate and save every epoch, keep the best
# checkpoint and restore it. save_total_limit=2 keeps the best and the latest on disk (with 1,
# Trainer deletes the latest at the end when it is not the best).
TRAINING_DEFAULTS = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "load_best_model_at_end": True,
    "metric_for_best_model": "eval_loss",
    "save_total_limit": 2,
    "num_train_epochs": 10,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 32,
    "warmup_steps": 0.1,
    "weight_decay": 0.01,
    "logging_strategy": "steps",
    "logging_steps": 10,
    "report_to": "none",
    "save_only_model": False,
    # DDP: frozen parameters (requires_grad=False) are outside DDP's gradient reduction
    # already, and every trainable parameter of a classifier is used in its forward pass, so
    # the search for unused parameters (the Trainer's default for PreTrainedModel) is only an
    # extra autograd traversal per step; DDP names this flag if a model ever needs it.
    "ddp_find_unused_parameters": False,
}

DATA_KEYS = ("model_name_or_path", "dataset_name", "train_file")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or local folder of the pretrained checkpoint. "
            "Default: the modality's embedded offline checkpoint."
        },
    )
    model_revision: str = field(
        default="main", metadata={"help": "Branch, tag or commit on the Hub."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where Hub downloads are stored."}
    )
    random_init: bool = field(
        default=False,
        metadata={
            "help": "Train the checkpoint's architecture from random initialisation (no pretrained "
            "weights): the baseline that shows what transfer buys. Needs a strategy that trains "
            "the backbone from the start (full, llrd, gradual)."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run modelling code that ships with the checkpoint. Off by default: "
            "read that code first."
        },
    )
    pooling: str = field(
        default="auto",
        metadata={
            "help": "What the head reads. auto: the masked mean of the tokens when the checkpoint "
            "declares it (sentence-transformers' 1_Pooling/config.json) and the strategy trains a "
            "head on frozen features (frozen, lp_ft), else the stock class's first token; mean: "
            "always the mean; first: always the first token. The mean is a pooling block appended "
            "to the encoder, so the saved model stays a stock class (BERT-style encoders only).",
            "choices": ["auto", "mean", "first"],
        },
    )


@dataclass
class DataArguments:
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset id, a save_to_disk folder, a class-per-subfolder folder, "
            "or a CSV/JSON/JSONL/Parquet file. Default: the modality's embedded dataset."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "Hub dataset configuration."}
    )
    train_file: str | None = field(
        default=None, metadata={"help": "CSV/JSON/JSONL/Parquet training file."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Validation file."})
    test_file: str | None = field(default=None, metadata={"help": "Test file."})
    text_column: str | None = field(
        default=None, metadata={"help": "Text column (found when unambiguous)."}
    )
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Second text column, for sentence-pair tasks."}
    )
    image_column: str | None = field(
        default=None, metadata={"help": "Image column (found when unambiguous)."}
    )
    audio_column: str | None = field(
        default=None, metadata={"help": "Audio column (found when unambiguous)."}
    )
    label_column: str | None = field(
        default=None, metadata={"help": "Label column (found when unambiguous)."}
    )
    validation_split_percentage: float = field(
        default=10.0,
        metadata={
            "range": "[0, 100)",
            "help": "With no validation split, this percentage of train is carved off, stratified.",
        },
    )
    test_split_percentage: float = field(
        default=0.0,
        metadata={
            "range": "[0, 100)",
            "help": "With no test split, this percentage of train is carved off as test (0: none).",
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"range": "[1, inf)", "help": "Keep this many training rows (stratified)."},
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"range": "[1, inf)", "help": "Keep this many validation rows (stratified)."},
    )
    max_test_samples: int | None = field(
        default=None,
        metadata={"range": "[1, inf)", "help": "Keep this many test rows (stratified)."},
    )
    max_seq_length: int = field(
        default=128,
        metadata={"range": "[1, inf)", "help": "Text: tokens per example after truncation."},
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "range": "[1, inf)",
            "help": "Image: resize to N x N instead of the checkpoint's size (smaller trains faster; "
            "convolutional and timm models).",
        },
    )
    max_duration_seconds: float | None = field(
        default=None,
        metadata={
            "range": "(0, inf)",
            "help": "Audio: crop (random in training, centred in evaluation) and pad to this length.",
        },
    )
    skip_bad_files: bool = field(
        default=False,
        metadata={
            "help": "Drop unreadable image/audio files (and report the count) instead of stopping."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"range": "[1, inf)", "help": "num_proc for datasets.map."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a finished or unfinished run already in --output_dir: removes the files "
            "tl-hf wrote there (its manifest lists them), never anything else."
        },
    )
    allow_other_files: bool = field(
        default=False,
        metadata={
            "help": "Write the run into an --output_dir that holds files tl-hf did not write (your "
            "data, notes): they are left as they are, never changed or deleted. Without it such a "
            "folder is refused."
        },
    )
    resume: bool = field(
        default=False,
        metadata={
            "help": "Continue the unfinished (killed, interrupted) run in --output_dir from its "
            "latest complete checkpoint, history and early-stopping state included."
        },
    )


@dataclass
class StrategyArguments:
    strategy: str = field(
        default="llrd",
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
    lp_ft_then: str = field(
        default="llrd",
        metadata={"help": "lp_ft: the fine-tuning phase's strategy, full or llrd."},
    )
    lp_ft_probe_epochs: int = field(
        default=5,
        metadata={
            "range": "[1, inf)",
            "hint": "try 5 (or --strategy full to skip the probe)",
            "help": "lp_ft: epochs of the linear probe (the head on cached frozen features).",
        },
    )
    unfreeze_every: int = field(
        default=1,
        metadata={
            "range": "[1, inf)",
            "help": "gradual: epochs between unfreezing one more block from the top.",
        },
    )
    early_stopping_patience: int = field(
        default=3,
        metadata={
            "range": "[0, inf)",
            "hint": "0 turns early stopping off",
            "help": "Stop after this many evaluations without improvement (0: never stop early).",
        },
    )
    early_stopping_threshold: float = field(
        default=0.0,
        metadata={
            "range": "[0, inf)",
            "help": "The smallest change of the metric that counts as an improvement.",
        },
    )


@dataclass
class AugmentArguments:
    augment: list[str] | None = field(
        default=None,
        metadata={
            "help": "Augmentations: NAME or NAME:KEY=VALUE,KEY=VALUE, space separated; 'none' turns them off."
        },
    )
    augment_copies: int = field(
        default=0,
        metadata={
            "range": "[0, inf)",
            "help": "K augmented copies of each training example added through datasets.map.",
        },
    )
    augment_mode: str = field(
        default="map",
        metadata={
            "help": "map: K stored copies; on_the_fly: fresh randomness every epoch.",
            "choices": list(AUGMENT_MODES),
        },
    )
    augment_preview: int = field(
        default=0,
        metadata={
            "range": "[0, inf)",
            "help": "Write N originals beside their augmented versions to the output folder.",
        },
    )


@dataclass
class ReportArguments:
    monitor_port: int | None = field(
        default=None,
        metadata={
            "range": "[1, 65535]",
            "help": "Also serve the output folder (the live report.html) on http://127.0.0.1:PORT "
            "while training, e.g. for a browser on another machine through an SSH tunnel.",
        },
    )
    verbose: bool = field(
        default=False,
        metadata={
            "help": "Show every library message and progress bar (default: one bar per phase, "
            "load reports condensed)."
        },
    )


@dataclass
class SpeedArguments:
    profile: bool = field(
        default=False,
        metadata={
            "help": "Print where the run's time went (a table per phase: data, model, training, "
            "evaluation, checkpoints, report) and write it to timings.json in the output folder."
        },
    )
    fast_head: bool = field(
        default=True,
        metadata={
            "help": "With cached features: train the head in a tight loop over feature tensors moved to "
            "the device once (batches by index, no data loader per step); same optimizer, schedule, "
            "evaluation, early stopping and checkpoints. One process only; false: the Trainer's loop."
        },
    )
    bf16_weights: bool = field(
        default=False,
        metadata={
            "help": "GPU: keep the model's weights in bfloat16 instead of casting them at every step "
            "under autocast (--bf16). Off by default until measured on a GPU: the optimizer then updates "
            "bf16 weights (no float32 master copy) and the saved backbone is bf16; the head stays float32."
        },
    )
    async_checkpoints: bool = field(
        default=True,
        metadata={
            "help": "Write each checkpoint in a background thread: training waits only for a copy of "
            "the weights and optimizer state in CPU memory (same files; a checkpoint cut short by a "
            "kill is skipped by --resume). One process only; false: the Trainer's synchronous save."
        },
    )
    eval_batch_scale: int = field(
        default=1,
        metadata={
            "range": "[1, inf)",
            "help": "Evaluate with --per_device_eval_batch_size times this (no gradients: evaluation "
            "fits larger batches). 1 keeps the given size.",
        },
    )


DATACLASSES = (ModelArguments, DataArguments, StrategyArguments, AugmentArguments, SpeedArguments)


@dataclass
class RunArgs:
    """Every resolved argument of one run."""

    modality: str
    model: ModelArguments
    data: DataArguments
    strategy: StrategyArguments
    augment: AugmentArguments
    training: Any  # transformers.TrainingArguments
    explicit: set[str] = field(default_factory=set)  # the keys the user set
    report: ReportArguments = field(default_factory=ReportArguments)
    speed: SpeedArguments = field(default_factory=SpeedArguments)

    def to_dict(self) -> dict[str, Any]:
        """All arguments as one flat, YAML-able dict (what `run_config.yaml` holds)."""
        out: dict[str, Any] = {"modality": self.modality}
        for part in (self.model, self.data, self.strategy, self.augment, self.report, self.speed):
            out.update({f.name: getattr(part, f.name) for f in fields(part)})
        for key, value in self.training.to_dict().items():
            if key.endswith("_token") or key == "hub_token":
                continue  # never write credentials
            out[key] = value
        return out


def _parser_types(extra: tuple[type, ...] = ()) -> tuple[type, ...]:
    from transformers import TrainingArguments

    # ReportArguments last: how a run is watched, after what it trains
    return (*DATACLASSES, *extra, TrainingArguments, ReportArguments)


def _build_parser(modality: str, extra: tuple[type, ...] = ()):
    import copy
    import types

    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        @staticmethod
        def _parse_dataclass_field(parser, field):
            # the toolkit's own metadata (tl_hf.ranges) is not an add_argument keyword
            if any(k in field.metadata for k in RANGE_METADATA):
                field = copy.copy(field)
                field.metadata = types.MappingProxyType(
                    {k: v for k, v in field.metadata.items() if k not in RANGE_METADATA}
                )
            HfArgumentParser._parse_dataclass_field(parser, field)

    parser = Parser(_parser_types(extra), allow_abbrev=False)
    parser.prog = f"{modality}_classify"

    def error(message: str):  # argparse would print the whole usage; one line is enough
        raise UserError(f"{message} (see --help)")

    parser.error = error
    return parser


def _known_keys(parser) -> set[str]:
    return {action.dest for action in parser._actions if action.dest != "help"}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON run config (a flat mapping of argument names to values)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist: give the path of a YAML or JSON file")
    text = path.read_text()
    import yaml

    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(
            f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'} "
            f"({where}{what}): fix its syntax"
        ) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of argument names to values")
    return data


def _check_keys(keys, parser, where: str) -> None:
    known = _known_keys(parser)
    unknown = sorted(set(keys) - known)
    if unknown:
        import difflib

        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UserError(f"unknown argument(s) in {where}: {', '.join(hints)}")


def _flag_names(argv: list[str]) -> set[str]:
    return {a[2:].split("=", 1)[0] for a in argv if a.startswith("--")}


def default_output_dir(modality: str) -> str:
    return os.path.join("outputs", f"{modality}_classify")


def _defaults(modality: str, given: set[str]) -> dict[str, Any]:
    from tl_hf.modality import get_modality

    defaults = {**TRAINING_DEFAULTS, "output_dir": default_output_dir(modality)}
    if not given & set(DATA_KEYS):
        # the embedded default runs are sized to finish in minutes on a 2-core CPU
        defaults.update(get_modality(modality).embedded_run_defaults)
    if launched_without_accelerator():
        defaults["use_cpu"] = True
    return defaults


def launched_without_accelerator() -> bool:
    """True when a launcher (torchrun, `accelerate launch`) started several processes on a
    machine without a GPU.

    Accelerate then needs `cpu=True` to join the ranks into one gloo group: without it every
    rank sets up a separate one-process run (DistributedType.NO), and all of them train the
    whole data and write the same output folder. The multi-GPU launcher does not pass the
    accelerate config's `use_cpu` to the processes, so the recipe makes `--use_cpu` the default.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch

    accelerator = getattr(torch, "accelerator", None)
    return not (
        accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    )


def parse_args(modality: str, argv: list[str] | None = None) -> RunArgs:
    """Parse recipe flags: `--config FILE` gives defaults, flags override them."""
    args, _ = parse_args_with(modality, argv)
    return args


def parse_args_with(modality: str, argv: list[str] | None = None, extra: tuple[type, ...] = ()):
    """`parse_args` with `extra` dataclasses of flags parsed beside the recipe's (the lab's
    grid); returns (RunArgs, [one instance per extra dataclass])."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser(modality, extra)
    config: dict[str, Any] = {}
    rest = []
    i = 0
    while i < len(argv):  # pull out --config without disturbing the other flags
        if argv[i] == "--config" and i + 1 < len(argv):
            config = load_config_file(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--config="):
            config = load_config_file(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    written_for = config.pop("modality", modality)  # run_config.yaml records it
    config.pop("command", None)  # ... and the command line that reproduces it
    if written_for != modality:
        raise UserError(f"the config file is for the {written_for} recipe, not the {modality} one")
    _check_keys(config, parser, "the config file")
    given = set(config) | _flag_names(rest)
    parser.set_defaults(**{**_defaults(modality, given), **config})
    # every number in range before any dataclass (TrainingArguments included) is built
    check_ranges(vars(parser.parse_known_args(rest)[0]), _parser_types(extra))
    try:
        *parts, unknown = parser.parse_args_into_dataclasses(
            args=rest, look_for_args_file=False, return_remaining_strings=True
        )
    except ValueError as err:  # TrainingArguments.__post_init__ checks combinations
        raise UserError(" ".join(str(err).split())) from err
    if unknown:
        _check_keys(_flag_names(unknown) or unknown, parser, "the command line")
        raise UserError(f"unexpected argument(s) on the command line: {' '.join(unknown)}")
    explicit = set(config) | (_flag_names(rest) & _known_keys(parser))
    return _split_extra(modality, parts, extra, explicit)


def _split_extra(modality: str, parts: list, extra: tuple[type, ...], explicit: set[str]):
    # parts: the toolkit's dataclasses, the extra ones, TrainingArguments, ReportArguments
    n = len(DATACLASSES)
    base = [*parts[:n], *parts[n + len(extra) :]]
    return finalize_args(modality, *base, explicit=explicit), list(parts[n : n + len(extra)])


def build_args(modality: str, dataset=None, **kwargs: Any) -> RunArgs:
    """Build the arguments of a run from keyword arguments (the Python API); `dataset` is
    the in-memory dataset, if any (it decides whether the embedded default's sizing applies)."""
    args, _ = build_args_with(modality, dataset, **kwargs)
    return args


def build_args_with(modality: str, dataset=None, extra: tuple[type, ...] = (), **kwargs: Any):
    """`build_args` with `extra` dataclasses (see `parse_args_with`)."""
    parser = _build_parser(modality, extra)
    _check_keys(kwargs, parser, "the keyword arguments")
    values = {
        **_defaults(modality, set(kwargs) | ({"dataset_name"} if dataset is not None else set())),
        **kwargs,
    }
    check_ranges(values, _parser_types(extra))
    try:
        parts = parser.parse_dict(values)
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from err
    return _split_extra(modality, list(parts), extra, set(kwargs))


def finalize_args(
    modality, model, data, strategy, augment, speed, training, report=None, *, explicit
) -> RunArgs:
    """Validate combinations and fill in strategy-dependent defaults."""
    from tl_hf.modality import get_modality
    from tl_hf.strategy import get_strategy

    declared = get_modality(modality)  # an unknown name is a UserError listing the known ones
    if "strategy" not in explicit:
        # --random_init needs a strategy that trains the backbone from the start
        default = "llrd" if model is not None and model.random_init else declared.default_strategy
        strategy = replace(strategy, strategy=default)
    chosen = get_strategy(strategy.strategy)  # likewise, listing the registered strategies
    chosen.check(strategy, model)
    if augment.augment_mode not in AUGMENT_MODES:
        raise UserError(
            f"unknown --augment_mode {augment.augment_mode!r}: choose map or on_the_fly"
        )
    if data.resume and data.overwrite_output_dir:
        raise UserError(
            "--resume continues the run in --output_dir, --overwrite_output_dir deletes it: "
            "pass one of them"
        )
    if data.resume and training.resume_from_checkpoint:
        raise UserError(
            "--resume picks the latest complete checkpoint itself: drop it or "
            "--resume_from_checkpoint"
        )
    if "dataloader_pin_memory" not in explicit and training.device.type == "cpu":
        training.dataloader_pin_memory = (
            False  # pinning needs an accelerator; torch warns every epoch
        )
    if "learning_rate" not in explicit:
        rates = declared.default_learning_rates
        training.learning_rate = (
            rates[chosen.name]
            if chosen.name in rates
            else chosen.default_learning_rate(rates, strategy)
        )
    shared_epochs = TRAINING_DEFAULTS["num_train_epochs"]
    if "num_train_epochs" not in explicit and training.num_train_epochs in {
        shared_epochs,
        *declared.default_epochs.values(),
    }:  # a default (the embedded runs' own sizes are other values): the strategy's
        training.num_train_epochs = declared.default_epochs.get(chosen.name, shared_epochs)
    _check_early_stopping(training, strategy)
    if speed.bf16_weights and not training.bf16:
        raise UserError("--bf16_weights needs --bf16 true (it replaces bf16 autocast)")
    return RunArgs(
        modality,
        model,
        data,
        strategy,
        augment,
        training,
        explicit,
        report or ReportArguments(),
        speed,
    )


def _check_early_stopping(training, strategy: StrategyArguments) -> None:
    """The early-stopping preset needs matching eval/save strategies and best-model loading."""
    if strategy.early_stopping_patience == 0:
        return
    if str(training.eval_strategy.value) == "no":
        raise UserError(
            "early stopping needs evaluations: set --eval_strategy epoch (the default) "
            "or --early_stopping_patience 0"
        )
    if (
        training.save_strategy.value != training.eval_strategy.value
        and training.save_strategy.value != "best"
    ):
        raise UserError(
            f"--save_strategy {training.save_strategy.value} must match --eval_strategy "
            f"{training.eval_strategy.value} so the best checkpoint is on disk"
        )
    if training.eval_strategy.value == "steps" and training.save_steps != training.eval_steps:
        raise UserError("with --eval_strategy steps, --save_steps must equal --eval_steps")
    if not training.load_best_model_at_end:
        raise UserError(
            "early stopping returns the best checkpoint: keep --load_best_model_at_end true "
            "or set --early_stopping_patience 0"
        )
