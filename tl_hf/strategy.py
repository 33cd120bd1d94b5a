"""The strategy extension point's public name: re-exports `tl_hf.strategies` (the record, its
registry, the group builders) and the depth tables strategies read (`tl_hf.model.depth`)."""

from tl_hf.model.depth import (  # noqa: F401
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
from tl_hf.strategies.base import *  # noqa: F401,F403
from tl_hf.strategies.groups import describe_param_groups, format_param_groups  # noqa: F401
