"""Flags, a YAML/JSON config file or keyword arguments -> the arguments of a run.

One parser reads the toolkit's dataclasses (`tl_hf.config.arguments`), every registered
modality's and strategy's own flags, the caller's extra dataclasses (the lab's grid),
`TrainingArguments` and `ReportArguments`. Every number is checked against its declared range
before any dataclass is built (`tl_hf.ranges`); `tl_hf.config.resolve` then fills in what
depends on the modality and the strategy and checks combinations.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from tl_hf.config.arguments import (
    DATA_KEYS,
    DATACLASSES,
    TRAINING_DEFAULTS,
    AugmentArguments,
    DataArguments,
    EarlyStoppingArguments,
    ModelArguments,
    OutputArguments,
    ReportArguments,
    RunArgs,
    SpeedArguments,
)
from tl_hf.errors import UserError
from tl_hf.ranges import RANGE_METADATA, check_ranges
from tl_hf.strategies.base import STRATEGIES, StrategyArguments


def plugin_flag_types() -> tuple[type, ...]:
    """The own-flags dataclasses of every modality and strategy (built-in ones imported)."""
    from tl_hf.modalities.base import MODALITIES

    found: dict[type, None] = {}
    for record in [*MODALITIES, *STRATEGIES]:
        if record.flags is not None:
            found[record.flags] = None
    return tuple(found)


def parser_types(extra: tuple[type, ...] = ()) -> tuple[type, ...]:
    from transformers import TrainingArguments

    # ReportArguments last: how a run is watched, after what it trains
    return (*DATACLASSES, *plugin_flag_types(), *extra, TrainingArguments, ReportArguments)


def build_parser(prog: str, types: tuple[type, ...]):
    """The `HfArgumentParser` of `types`; errors are one `UserError` line."""
    import copy
    import types as pytypes

    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        @staticmethod
        def _parse_dataclass_field(parser, field):
            # the toolkit's own metadata (tl_hf.ranges) is not an add_argument keyword
            if any(k in field.metadata for k in RANGE_METADATA):
                field = copy.copy(field)
                field.metadata = pytypes.MappingProxyType(
                    {k: v for k, v in field.metadata.items() if k not in RANGE_METADATA}
                )
            HfArgumentParser._parse_dataclass_field(parser, field)

    parser = Parser(types, allow_abbrev=False)
    parser.prog = prog

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
    from tl_hf.modalities.base import get_modality

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


def _pull_config(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """(the `--config FILE` mapping, the other flags as given)."""
    config: dict[str, Any] = {}
    rest, i = [], 0
    while i < len(argv):
        if argv[i] == "--config" and i + 1 < len(argv):
            config = load_config_file(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--config="):
            config = load_config_file(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    return config, rest


def parse_args_with(
    modality: str,
    argv: list[str] | None = None,
    extra: tuple[type, ...] = (),
    prog: str | None = None,
):
    """`parse_args` with `extra` dataclasses of flags parsed beside the recipe's (the lab's
    grid); returns (RunArgs, [one instance per extra dataclass])."""
    argv = list(sys.argv[1:] if argv is None else argv)
    types = parser_types(extra)
    parser = build_parser(prog or f"{modality}_classify", types)
    config, rest = _pull_config(argv)
    written_for = config.pop("modality", modality)  # run_config.yaml records it
    config.pop("command", None)  # ... and the command line that reproduces it
    if config.pop("selection", None) is not None and config.get("candidates"):
        config.pop("model_name_or_path", None)  # ... and the ranking's pick: it ranks again
    if written_for != modality:
        raise UserError(f"the config file is for the {written_for} recipe, not the {modality} one")
    _check_keys(config, parser, "the config file")
    given = set(config) | _flag_names(rest)
    parser.set_defaults(**{**_defaults(modality, given), **config})
    # every number in range before any dataclass (TrainingArguments included) is built
    check_ranges(vars(parser.parse_known_args(rest)[0]), types)
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
    return assemble_args(modality, types, parts, extra, explicit)


def build_args(modality: str, dataset=None, **kwargs: Any) -> RunArgs:
    """Build the arguments of a run from keyword arguments (the Python API); `dataset` is
    the in-memory dataset, if any (it decides whether the embedded default's sizing applies)."""
    args, _ = build_args_with(modality, dataset, **kwargs)
    return args


def build_args_with(modality: str, dataset=None, extra: tuple[type, ...] = (), **kwargs: Any):
    """`build_args` with `extra` dataclasses (see `parse_args_with`)."""
    types = parser_types(extra)
    parser = build_parser(f"{modality}_classify", types)
    _check_keys(kwargs, parser, "the keyword arguments")
    values = {
        **_defaults(modality, set(kwargs) | ({"dataset_name"} if dataset is not None else set())),
        **kwargs,
    }
    check_ranges(values, types)
    try:
        parts = parser.parse_dict(values)
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from err
    return assemble_args(modality, types, list(parts), extra, set(kwargs))


def assemble_args(modality: str, types, parts, extra: tuple[type, ...], explicit: set[str]):
    """The parsed parts (one per type) -> (the resolved RunArgs, the extra instances)."""
    from transformers import TrainingArguments

    from tl_hf.config.resolve import resolve_args
    from tl_hf.registry import Settings

    by_type = dict(zip(types, parts, strict=True))
    plugins = {t.__name__: by_type[t] for t in plugin_flag_types()}
    raw = RunArgs(
        modality=modality,
        model=by_type[ModelArguments],
        data=Settings(by_type[DataArguments]),
        output=by_type[OutputArguments],
        strategy=Settings(by_type[StrategyArguments]),
        stopping=by_type[EarlyStoppingArguments],
        augment=by_type[AugmentArguments],
        training=by_type[TrainingArguments],
        explicit=explicit,
        report=by_type[ReportArguments],
        speed=by_type[SpeedArguments],
        plugins=plugins,
    )
    return resolve_args(raw), [by_type[t] for t in extra]
