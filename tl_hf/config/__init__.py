"""The first step of the flow: the arguments of a run, from flags, a YAML/JSON config file or
keyword arguments, checked before anything heavy is loaded (re-exports only).

- `arguments`: one dataclass per concern, and `RunArgs`;
- `parse`: the parser (the toolkit's flags, every plugin's own, `TrainingArguments`), config
  files, the Python API's keyword arguments;
- `resolve`: what the modality and strategy decide when the user did not, and the checks that
  span several flags.
"""

from tl_hf.config.arguments import (
    AUGMENT_MODES,
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
from tl_hf.config.parse import (
    build_args,
    build_args_with,
    default_output_dir,
    launched_without_accelerator,
    load_config_file,
    parse_args,
    parse_args_with,
)
from tl_hf.config.resolve import default_learning_rate, options_for, resolve_args
from tl_hf.errors import UserError
from tl_hf.strategies.base import StrategyArguments

__all__ = [
    "AUGMENT_MODES",
    "DATACLASSES",
    "DATA_KEYS",
    "TRAINING_DEFAULTS",
    "AugmentArguments",
    "DataArguments",
    "EarlyStoppingArguments",
    "ModelArguments",
    "OutputArguments",
    "ReportArguments",
    "RunArgs",
    "SpeedArguments",
    "StrategyArguments",
    "UserError",
    "build_args",
    "build_args_with",
    "default_learning_rate",
    "default_output_dir",
    "launched_without_accelerator",
    "load_config_file",
    "options_for",
    "parse_args",
    "parse_args_with",
    "resolve_args",
]
