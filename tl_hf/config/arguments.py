"""The arguments of a run: one dataclass per concern, and `RunArgs`, all of them resolved.

Each field is one flag (`--name`): its help, its choices and its valid range (`"range"`,
checked before anything loads: `tl_hf.ranges`) sit beside it. The shared strategy flags are
`tl_hf.strategies.StrategyArguments`; a modality's or strategy's own flags are the `flags`
dataclass of its record (`--max_seq_length`, `--lora_r`), parsed beside these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from tl_hf.strategies.base import StrategyArguments

AUGMENT_MODES = ("map", "on_the_fly")
AUGMENT_FILTERS = ("none", "probe")  # tl_hf.augment.consistency

# The early-stopping preset: evaluate and save every epoch, keep the best
# checkpoint and restore it. Best = the lowest validation loss after temperature scaling, and
# patience counts on it too (docs/defaults.md, "The best checkpoint": the raw loss rises as a
# fine-tuned model grows confident while its accuracy still climbs; accuracy alone ties on
# small validation splits). save_total_limit=2 keeps the best and the latest on disk (with 1,
# Trainer deletes the latest at the end when it is not the best).
TRAINING_DEFAULTS = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "load_best_model_at_end": True,
    "metric_for_best_model": "eval_scaled_loss",  # lower is better: Trainer infers it (".*loss")
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

# Flags that name the user's own data or checkpoint: without them the embedded default runs.
DATA_KEYS = ("model_name_or_path", "candidates", "dataset_name", "train_file")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub id or local folder of the pretrained checkpoint. "
            "Default: the modality's embedded offline checkpoint."
        },
    )
    candidates: list[str] | None = field(
        default=None,
        metadata={
            "help": "Two or more checkpoints (folders, Hub ids, `embedded`) to choose from: each is "
            "ranked on frozen features of the training and validation rows (linear-probe "
            "accuracy, LogME, size, speed; docs/select.md), then the chosen one trains. "
            "Instead of --model_name_or_path; selection.json and the card record the ranking."
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
    skip_bad_files: bool = field(
        default=False,
        metadata={
            "help": "Drop unreadable image/audio files (and report the count) instead of stopping."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"range": "[1, inf)", "help": "num_proc for datasets.map."}
    )


@dataclass
class OutputArguments:
    """What a run may do with its output folder (`tl_hf.output.ownership`)."""

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

    def __post_init__(self):
        from tl_hf.errors import UserError

        if self.resume and self.overwrite_output_dir:
            raise UserError(
                "--resume continues the run in --output_dir, --overwrite_output_dir deletes it: "
                "pass one of them"
            )


@dataclass
class EarlyStoppingArguments:
    """The early-stopping preset: how many evaluations without improvement end a run."""

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
    augment_filter: str = field(
        default="none",
        metadata={
            "help": "probe: keep a stored augmented copy only when a linear probe on the "
            "checkpoint's frozen features of the original rows still gives it its label.",
            "choices": list(AUGMENT_FILTERS),
        },
    )
    tta: int = field(
        default=0,
        metadata={
            "range": "[0, 12]",
            "help": "Images: score validation and test on N deterministic views (plain, centre and "
            "corner crops; mirrors with hflip in --augment) and average them; 0 or 1: off.",
        },
    )
    augment_preview: int = field(
        default=0,
        metadata={
            "range": "[0, inf)",
            "help": "Write N originals beside their augmented versions to the output folder.",
        },
    )

    def __post_init__(self):
        from tl_hf.errors import UserError

        if self.augment_mode not in AUGMENT_MODES:
            raise UserError(
                f"unknown --augment_mode {self.augment_mode!r}: choose map or on_the_fly"
            )
        if self.augment_filter not in AUGMENT_FILTERS:
            raise UserError(
                f"unknown --augment_filter {self.augment_filter!r}: choose none or probe"
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


# The toolkit's own dataclasses, in the order the parser (and --help) lists them.
DATACLASSES = (
    ModelArguments,
    DataArguments,
    OutputArguments,
    StrategyArguments,
    EarlyStoppingArguments,
    AugmentArguments,
    SpeedArguments,
)


@dataclass
class RunArgs:
    """Every resolved argument of one run (`tl_hf.config.resolve_args` builds it).

    `data` and `strategy` are what the modality's and the strategy's functions read
    (`tl_hf.registry.Settings`: the shared flags joined with the plugin's own); `plugins` holds
    every registered plugin's own flags by dataclass name, chosen or not (`run_config.yaml`
    records them all, so it reproduces the run under any strategy)."""

    modality: str
    model: ModelArguments
    data: Any  # Settings(DataArguments, the modality's flags)
    output: OutputArguments
    strategy: Any  # Settings(StrategyArguments, the strategy's flags)
    stopping: EarlyStoppingArguments
    augment: AugmentArguments
    training: Any  # transformers.TrainingArguments
    explicit: set[str] = field(default_factory=set)  # the keys the user set
    report: ReportArguments = field(default_factory=ReportArguments)
    speed: SpeedArguments = field(default_factory=SpeedArguments)
    plugins: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """All arguments as one flat, YAML-able dict (what `run_config.yaml` holds)."""
        out: dict[str, Any] = {"modality": self.modality}
        parts = [self.model, self.data.shared, self.output, self.strategy.shared, self.stopping]
        parts += [self.augment, self.report, self.speed, *self.plugins.values()]
        for part in parts:
            out.update({f.name: getattr(part, f.name) for f in fields(part)})
        for key, value in self.training.to_dict().items():
            if key.endswith("_token") or key == "hub_token":
                continue  # never write credentials
            out[key] = value
        return out
