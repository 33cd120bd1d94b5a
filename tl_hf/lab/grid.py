"""The lab's arguments and its grid of trials: strategy x learning rate x layers x decay x
augmentation set x seed. Each trial is a `TrialSpec`; its `key` names it in the study (a
rerun or a second worker finds it by that key)."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

from tl_hf.config import RunArgs
from tl_hf.errors import UserError

LR_LADDER = (1 / 3, 1.0, 3.0)  # `--learning_rates auto`: around each strategy's default
PRUNERS = ("median", "successive_halving", "none")


@dataclass
class LabArguments:
    """The lab's own flags (every recipe flag works beside them)."""

    modality: str = field(
        default="text",
        metadata={"help": "text, image, audio or a registered modality: which recipe trains."},
    )
    strategies: list[str] = field(
        default_factory=lambda: ["frozen", "llrd", "full"],
        metadata={
            "nonempty": True,
            "help": "Strategies to compare (any strategy the toolkit knows).",
        },
    )
    learning_rates: list[str] = field(
        default_factory=lambda: ["auto"],
        metadata={
            "nonempty": True,
            "help": "'auto' (per strategy: 1/3, 1 and 3 times its default) or a list of rates.",
        },
    )
    trainable_layers_grid: list[int] = field(
        default_factory=lambda: [0],
        metadata={
            "nonempty": True,
            "range": "[0, inf)",
            "flag": "--trainable_layers",
            "help": "Given as --trainable_layers K [K ...]: with frozen, also train the top K blocks.",
        },
    )
    llrd_decays: list[float] | None = field(
        default=None,
        metadata={
            "range": "(0, 1]",
            "help": "LLRD decays to try with llrd (default: --llrd_decay).",
        },
    )
    augment_sets: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={
            "nonempty": True,
            "help": "Named augmentation sets: 'none', 'default' (the modality's list), or "
            "NAME=SPEC+SPEC (e.g. light=hflip+rotate:degrees=15); a bare SPEC names itself.",
        },
    )
    seeds: int = field(
        default=3,
        metadata={
            "range": "[1, inf)",
            "help": "Seeds per configuration (--seed, --seed + 1, ...).",
        },
    )
    time_budget_minutes: float | None = field(
        default=None,
        metadata={
            "range": "(0, inf)",
            "help": "No new trial starts after this many minutes; the best configuration "
            "finished by then is still rerun as the winner, and the report lists the skipped.",
        },
    )
    storage: str | None = field(
        default=None,
        metadata={
            "help": "Optuna storage URL (sqlite:///, postgresql://, mysql://) or journal:PATH. Default: "
            "a SQLite file lab.db in --output_dir. Workers started with the same storage and study "
            "split the trials."
        },
    )
    study_name: str | None = field(
        default=None, metadata={"help": "Study name (default: the output folder's name)."}
    )
    prune: bool = field(
        default=True, metadata={"help": "Stop trials whose validation trails (see --pruner)."}
    )
    pruner: str = field(
        default="median",
        metadata={"help": "median or successive_halving.", "choices": list(PRUNERS)},
    )
    objective: str = field(
        default="eval_accuracy",
        metadata={"help": "Validation metric that ranks trials (loss metrics are minimised)."},
    )
    heartbeat_seconds: float = field(
        default=30.0,
        metadata={
            "range": "(0, inf)",
            "help": "A running trial's heartbeat; one silent for 3 beats is rerun by the next worker.",
        },
    )
    playbook: bool = field(
        default=False,
        metadata={
            "help": "Run the playbook instead of the grid: frozen baseline, diagnosis, per-layer probe, "
            "unfreezing, augmentation if it overfits, the winner; each decision written down "
            "(playbook_report.html)."
        },
    )
    keep_trial_folders: bool = field(
        default=False,
        metadata={"help": "Keep every trial's model and checkpoints (default: records only)."},
    )
    worker: bool = field(
        default=False,
        metadata={
            "help": "Run the study's waiting trials only (queued by another lab or by the page of "
            "`tl-hf ui`), with the arguments the lab recorded in the study; give --output_dir "
            "(or --storage and --study_name) to find it."
        },
    )
    worker_idle_minutes: float = field(
        default=0.0,
        metadata={
            "range": "[0, inf)",
            "help": "With --worker: wait this long for new trials before exiting.",
        },
    )
    serve: bool = field(
        default=False,
        metadata={"help": "Serve the lab's page (`tl-hf ui`) while the lab runs, and after."},
    )
    port: int = field(
        default=7860, metadata={"range": "[1, 65535]", "help": "With --serve: the page's port."}
    )
    host: str | None = field(
        default=None,
        metadata={
            "help": "With --serve: listen on this address instead of 127.0.0.1 (a token is then "
            "required, printed once)."
        },
    )


# LabArguments fields that say how this process runs, not what the lab is: never recorded in the
# study (a worker or a page reads the rest)
PROCESS_FIELDS = ("worker", "worker_idle_minutes", "serve", "port", "host")


@dataclass(frozen=True)
class TrialSpec:
    """One trial of the grid."""

    strategy: str
    learning_rate: float
    trainable_layers: int | None
    llrd_decay: float | None
    augment_set: str
    seed: int
    epochs: float | None = None  # None: the lab's --num_train_epochs
    # a checkpoint other than the lab's own (the playbook's candidates): its name as given
    model: str | None = None

    @property
    def config(self) -> str:
        """The configuration without the seed (what seeds are averaged over)."""
        parts = [f"model={checkpoint_label(self.model)}"] if self.model else []
        parts += [self.strategy, f"lr={self.learning_rate:.3g}"]
        if self.trainable_layers is not None:
            parts.append(f"layers={self.trainable_layers}")
        if self.llrd_decay is not None:
            parts.append(f"decay={self.llrd_decay:g}")
        if self.epochs is not None:
            parts.append(f"epochs={self.epochs:g}")
        parts.append(f"aug={self.augment_set}")
        return " ".join(parts)

    @property
    def key(self) -> str:
        return f"{self.config} seed={self.seed}"

    def attrs(self) -> dict:
        return {**dataclasses.asdict(self), "key": self.key, "config": self.config}

    @classmethod
    def from_attrs(cls, attrs: dict) -> TrialSpec:
        """The spec a trial's user attributes (or a row of `trial_rows`) record; fields added
        later (`epochs`) take their default when an older study lacks them."""
        return cls(
            **{
                f.name: attrs.get(f.name, f.default)
                if f.default is not dataclasses.MISSING
                else attrs[f.name]
                for f in dataclasses.fields(cls)
            }
        )


def config_augment_set(config: str) -> str:
    """The augmentation set named in a configuration (`TrialSpec.config`, which ends with it)."""
    return config.rsplit("aug=", 1)[-1]


def unaugmented(config: str) -> str:
    """The same configuration without augmentation."""
    return config.rsplit("aug=", 1)[0] + "aug=none"


@dataclass(frozen=True)
class AugmentSet:
    """One named augmentation set: `--augment` items (None: the modality's default list;
    ["none"]: none) and, when the set says so, its mode and number of stored copies."""

    items: list[str] | None
    mode: str | None = None
    copies: int | None = None


def parse_augment_sets(items: list[str]) -> dict[str, AugmentSet]:
    """NAME -> `AugmentSet`. Items: `none`, `default`, `NAME=SPEC+SPEC`, or a bare `SPEC+SPEC`
    (naming itself), each optionally ending in `@on_the_fly` or `@copies=K`."""
    sets: dict[str, AugmentSet] = {}
    for item in items:
        body, _, how = item.partition("@")
        mode = copies = None
        if how == "on_the_fly":
            mode = "on_the_fly"
        elif how.startswith("copies="):
            try:
                mode, copies = "map", int(how.split("=", 1)[1])
            except ValueError:
                copies = -1
            if copies < 1:
                raise UserError(f"--augment_sets item {item!r}: write @copies=K with K >= 1")
        elif how:
            raise UserError(
                f"--augment_sets item {item!r}: the part after @ must be on_the_fly or copies=K"
            )
        head, eq, rest = body.partition("=")
        if eq and ":" not in head:
            name, specs = head.strip(), [s for s in rest.split("+") if s]
        elif body == "default":
            name, specs = "default", None
        else:
            name, specs = body, [s for s in body.split("+") if s]
        if how and not eq:
            name = f"{name}@{how}"
        if not name or (specs is not None and not specs):
            raise UserError(
                f"--augment_sets item {item!r} is empty: write NAME=SPEC+SPEC, 'none' or 'default'"
            )
        if name in sets:
            raise UserError(f"--augment_sets names {name!r} twice: give each set its own name")
        sets[name] = AugmentSet(specs, mode, copies)
    return sets


def trial_args(base: RunArgs, spec: TrialSpec, augment: AugmentSet, output_dir: str) -> RunArgs:
    """The arguments of one trial: the base run's, with the trial's checkpoint, strategy, rate,
    layers, decay, augmentation, seed and output folder (resolved and checked like a recipe's)."""
    from tl_hf.config import resolve_args

    training = copy.copy(base.training)
    training.output_dir, training.seed = output_dir, spec.seed
    training.learning_rate = spec.learning_rate
    if spec.epochs is not None:
        training.num_train_epochs = spec.epochs
    if "disable_tqdm" not in base.explicit:
        training.disable_tqdm = True  # one progress line per trial instead of a bar per epoch
    strategy = base.strategy.replace(
        strategy=spec.strategy,
        trainable_layers=spec.trainable_layers or 0,
        llrd_decay=spec.llrd_decay if spec.llrd_decay is not None else base.strategy.llrd_decay,
    )
    wanted_augment = augment.items != ["none"]
    mode = augment.mode or base.augment.augment_mode
    copies = augment.copies or base.augment.augment_copies
    augment_args = dataclasses.replace(
        base.augment,
        augment=augment.items,
        augment_mode=mode,
        augment_copies=copies or (1 if wanted_augment and mode == "map" else 0),
    )
    explicit = base.explicit | {"learning_rate", "output_dir", "seed", "strategy"}
    if spec.epochs is not None:
        explicit |= {"num_train_epochs"}
    if wanted_augment:
        explicit |= {"augment", "augment_mode"}
    model = base.model
    if spec.model:
        model = dataclasses.replace(
            model, model_name_or_path=checkpoint_path(base.modality, spec.model), candidates=None
        )
        explicit |= {"model_name_or_path"}
    return resolve_args(
        dataclasses.replace(
            base,
            model=model,
            strategy=strategy,
            augment=augment_args,
            training=training,
            explicit=explicit,
        )
    )


def checkpoint_label(name: str) -> str:
    """How configurations, tables and the card name a checkpoint: a Hub id or ladder name as
    given, a local folder by its last component (no local path in what is shared)."""
    from tl_hf.report.share import shareable_name

    return str(shareable_name(name)).removeprefix("./")


def checkpoint_path(modality: str, name: str) -> str:
    """The folder or Hub id of a checkpoint named as `--candidates` name it."""
    from tl_hf.modalities.base import get_modality
    from tl_hf.select.extract import candidate_path

    return candidate_path(name, get_modality(modality))


def default_learning_rate(base: RunArgs, strategy: str) -> float:
    """The learning rate a recipe run would use for `strategy` (its default)."""
    from tl_hf.config import default_learning_rate as recipe_default
    from tl_hf.config import options_for
    from tl_hf.modalities.base import get_modality
    from tl_hf.strategies.base import get_strategy

    record = get_strategy(strategy)
    options = options_for(base, record, trainable_layers=0)
    return recipe_default(get_modality(base.modality), record, options)


def build_grid(base: RunArgs, lab: LabArguments) -> list[TrialSpec]:
    """Every trial, configurations in the order given, seeds innermost."""
    sets = parse_augment_sets(lab.augment_sets)
    explicit_rates = [r for r in lab.learning_rates if r != "auto"]
    try:
        rates = [float(r) for r in explicit_rates]
    except ValueError as err:
        raise UserError(
            f"--learning_rates takes 'auto' or numbers, got {' '.join(lab.learning_rates)}"
        ) from err
    if any(r <= 0 for r in rates):
        raise UserError("--learning_rates must be positive")
    decays = lab.llrd_decays or [base.strategy.llrd_decay]
    grid = []
    for strategy in dict.fromkeys(lab.strategies):
        ladder = (
            [default_learning_rate(base, strategy) * f for f in LR_LADDER]
            if "auto" in lab.learning_rates
            else []
        )
        for lr in dict.fromkeys([*ladder, *rates]):
            for layers in lab.trainable_layers_grid if strategy == "frozen" else [None]:
                for decay in decays if strategy == "llrd" else [None]:
                    for name in sets:
                        for i in range(lab.seeds):
                            grid.append(
                                TrialSpec(
                                    strategy,
                                    float(f"{lr:.6g}"),
                                    layers,
                                    decay,
                                    name,
                                    base.training.seed + i,
                                )
                            )
    return grid
