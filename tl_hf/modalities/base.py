"""A modality (text, image, audio, or one of yours) declared once, in one record.

Every step of the flow that differs by modality reads it from the `Modality` record: the
auto class and `pipeline()` task, the input column, the embedded default checkpoint and
data, how columns are found and checked, the processor, preprocessing and collation, the
augmentation module, default learning rates per strategy and the example input of the
model card. Nothing else in tl-hf keeps a per-modality table.

Adding a modality is one module that builds a `Modality` and registers it, plus a recipe:

    # my_package/tabular.py
    from tl_hf.modality import Modality, register_modality

    TABULAR = register_modality(Modality(
        name="tabular", task="tabular-classification",
        auto_model="AutoModelForSequenceClassification", input_column="features",
        default_learning_rates={"frozen": 1e-3, "full": 1e-4, "llrd": 2e-4},
        example_input="[[0.1, 0.2, 0.3]]",
        find_input_columns=..., build_processor=..., make_preprocess=..., build_collator=...,
    ))

    # recipes/tabular_classify.py
    import my_package.tabular
    from tl_hf.recipe import main
    sys.exit(main("tabular"))

`docs/modalities.md` walks through a complete one; `tests/test_modality.py` registers a toy
modality from outside `tl_hf` and trains it end to end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tl_hf.errors import UserError
from tl_hf.registry import Registry


def _no_context(processor, args) -> dict[str, Any]:
    return {}


def _no_batch_augment(specs, num_labels: int, seed: int):
    return None


def _no_adaptation(model, processor) -> None:
    return None


def _no_folder(path: str, data_args):
    raise UserError(
        f"{path} is a folder, and this modality reads no folder layout: give a data file "
        "or a Hub id"
    )


def _no_default(data_args):
    raise UserError(
        "this modality has no embedded default data: pass --dataset_name or --train_file"
    )


def _preprocess_with_map(modality: Modality):
    def preprocess(dsd, processor, data_args, num_proc=None, skip=()):
        from datasets import DatasetDict

        fn = modality.make_preprocess(processor, data_args, False)
        return DatasetDict(
            {
                split: ds.map(
                    fn,
                    batched=True,
                    remove_columns=ds.column_names,
                    num_proc=num_proc,
                    desc=f"Preprocessing {split}",
                )
                for split, ds in dsd.items()
                if split not in skip
            }
        )

    return preprocess


def _preprocess_on_access(modality: Modality):
    def preprocess(dsd, processor, data_args, num_proc=None, skip=()):
        from datasets import DatasetDict

        from tl_hf.modalities.media import guard_decoding

        return DatasetDict(
            {
                split: guard_decoding(
                    ds,
                    modality.input_column,
                    modality.make_preprocess(processor, data_args, split == "train"),
                    data_args.skip_bad_files,
                )
                for split, ds in dsd.items()
                if split not in skip
            }
        )

    return preprocess


@dataclass(frozen=True)
class DataRule:
    """A setting the user left open, chosen from the training split: `flag` takes `value`
    (and the flags in `more` theirs, e.g. an augmentation with its mode); `reason` says what
    in the data decided it (printed, and kept in `run_config.yaml` and the card)."""

    flag: str
    value: Any
    reason: str
    more: tuple[tuple[str, Any], ...] = ()

    @property
    def settings(self) -> dict[str, Any]:
        return {self.flag: self.value, **dict(self.more)}

    @property
    def line(self) -> str:
        flags = " ".join(
            f"--{flag} {' '.join(map(str, value)) if isinstance(value, list | tuple) else value}"
            for flag, value in self.settings.items()
        )
        return f"{flags} from the data: {self.reason}"


def with_rules(args, rules):
    """`args` (`RunArgs`) with the settings `rules` chose (data or augmentation flags): what
    the run uses and records."""
    import dataclasses

    if not rules:
        return args
    settings = {k: v for rule in rules for k, v in rule.settings.items()}
    augment_keys = {f.name for f in dataclasses.fields(args.augment)}
    augment = {k: v for k, v in settings.items() if k in augment_keys}
    data = args.data.replace(**{k: v for k, v in settings.items() if k not in augment_keys})
    plugins = dict(args.plugins)  # the modality's own flags are kept there too (to_dict)
    if data.own is not None and type(data.own).__name__ in plugins:
        plugins[type(data.own).__name__] = data.own
    return dataclasses.replace(
        args, data=data, augment=dataclasses.replace(args.augment, **augment), plugins=plugins
    )


def data_processor(modality, model_path: str, args, config, train) -> tuple[Any, tuple]:
    """The checkpoint's processor for this data: built from `args`, then again with the
    settings the training split chose (`Modality.rules_from_data`), which come back with it."""
    processor = modality.build_processor(model_path, args, config)
    rules = tuple(modality.rules_from_data(train, processor, args.data, config))
    if rules:
        processor = modality.build_processor(model_path, with_rules(args, rules), config)
    return processor, rules


@dataclass(frozen=True)
class Modality:
    """What one modality contributes to each step of the flow.

    Data fields:
        name: the recipe's name (`main(name)`, `run_config.yaml`'s `modality`).
        task: the `transformers.pipeline` task of the trained model.
        auto_model: the `transformers` auto class name that builds the classifier.
        input_column: the standard name of the input column (what augmentation changes).
        default_learning_rates: strategy name -> learning rate used when none is given.
        example_input: a Python literal for the model card's usage snippet.
        column_flags: the `DataArguments` fields naming input columns (shown in errors).
        extensions: the file suffixes of a folder of inputs (media modalities; empty: a
            folder is not an input of this modality).
        default_dataset: how `run_config.yaml` and the card name the embedded data.
        default_model_hub_id: the Hub id the embedded checkpoint was copied from: the
            card's `base_model`, so the Hub links the model tree (None: no embedded one).
        default_epochs: strategy name -> `--num_train_epochs` when none is given (else the
            shared default; docs/defaults.md: the evidence).
        default_patience: strategy name -> `--early_stopping_patience` when none is given and
            the run trains that strategy's default epochs (else the shared 3).
        embedded_run_defaults: flag defaults used when the embedded model and data run.
        flags: the dataclass of the modality's own flags (`--max_seq_length` for text), parsed
            beside the toolkit's; its functions read them from `data_args` (`tl_hf.registry.
            Settings`: `DataArguments` joined with these). None: no flags of its own.
        default_strategy: `--strategy` when none is given (docs/defaults.md: the evidence).
        augment_module: the module holding the augmentation catalogue (`tl_hf.augment`).
        test_time_views: its model inputs are pixels that `--tta N` views (tl_hf.augment.tta).
        preprocess_on_access: preprocess per batch (`with_transform`) instead of storing the
            result through `datasets.map` (pixels and waveforms are too large to store); the
            Trainer must then keep the raw columns.

    Functions (see `tl_hf/text.py` for the reference implementation):
        find_input_columns(columns, features, label, data_args) -> {standard name: column}
        build_processor(model_path, args, checkpoint_config) -> tokenizer/processor
        make_preprocess(processor, data_args, train_split) -> batched fn(batch) -> model inputs
            (`train_split`: random crops and the like apply)
        build_collator(processor) -> fn(rows) -> batch of tensors
        default_model() -> path of the embedded checkpoint (None: a checkpoint is required)
        load_default_dataset(data_args) -> DatasetDict of the embedded data
        load_folder(path, data_args) -> DatasetDict from a class-per-subfolder folder
        validate_inputs(dsd, data_args) -> DatasetDict, raising `UserError` for bad inputs
        preprocess(dsd, processor, data_args, num_proc, skip) -> DatasetDict of model inputs
            (default: `make_preprocess` through `datasets.map`, or `with_transform` when
            `preprocess_on_access`)
        augment_context(processor, args) -> keyword arguments of the augmenter
        build_batch_augment(specs, num_labels, seed) -> fn(batch) -> batch, or None
        adapt_model(model, processor) -> None: changes to the model after loading
        rules_from_data(train_split, processor, data_args, checkpoint_config) -> [DataRule]:
            settings the user left open, chosen from the training split (image: the size)
    """

    name: str
    task: str
    auto_model: str
    input_column: str
    default_learning_rates: dict[str, float]
    example_input: str
    find_input_columns: Callable[..., dict[str, str]]
    build_processor: Callable[..., Any]
    make_preprocess: Callable[..., Callable[[dict], dict]]
    build_collator: Callable[[Any], Callable[[list], dict]]
    column_flags: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    default_dataset: str | None = None
    default_model_hub_id: str | None = None
    default_epochs: dict[str, int] = field(default_factory=dict)
    default_patience: dict[str, int] = field(default_factory=dict)
    embedded_run_defaults: dict[str, Any] = field(default_factory=dict)
    flags: type | None = None
    default_strategy: str = "llrd"
    augment_module: str | None = None
    preprocess_on_access: bool = False
    test_time_views: bool = False
    default_model: Callable[[], str | None] = lambda: None
    load_default_dataset: Callable[[Any], Any] = _no_default
    load_folder: Callable[[str, Any], Any] = _no_folder
    validate_inputs: Callable[[Any, Any], Any] = lambda dsd, data_args: dsd
    preprocess: Callable[..., Any] | None = None
    augment_context: Callable[[Any, Any], dict[str, Any]] = _no_context
    build_batch_augment: Callable[[Any, int, int], Any] = _no_batch_augment
    adapt_model: Callable[[Any, Any], None] = _no_adaptation
    rules_from_data: Callable[..., list[DataRule]] = lambda train, processor, data, config: []

    def __post_init__(self):
        if self.preprocess is None:
            make = _preprocess_on_access if self.preprocess_on_access else _preprocess_with_map
            object.__setattr__(self, "preprocess", make(self))


BUILTIN = {
    "text": "tl_hf.modalities.text",
    "image": "tl_hf.modalities.image",
    "audio": "tl_hf.modalities.audio",
}
# The modalities that ship with tl-hf, imported on first use (each module registers itself).
MODALITIES: Registry[Modality] = Registry(
    "modality",
    Modality,
    BUILTIN,
    unknown="unknown modality {name}: choose one of {choices}",
    public="tl_hf.modality",
)


def register_modality(modality: Modality) -> Modality:
    """Make `modality` available by name to the recipes, the Python API and the lab."""
    return MODALITIES.register(modality)


def modality_names() -> list[str]:
    """Every modality known now: the built-in ones and those registered."""
    return MODALITIES.names()


def get_modality(name: str) -> Modality:
    """The registered modality called `name` (built-in ones are imported on first use)."""
    return MODALITIES.get(name)
