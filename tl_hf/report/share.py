"""What a run shares (the card, the report, `run_config.yaml`, the pushed files) names things
the way a reader elsewhere can follow: a local folder or file by its own name, never by its
absolute path on this machine; an embedded default checkpoint by the Hub id it was copied
from; and the run by the command that reproduces it."""

from __future__ import annotations

import os
import shlex
from typing import Any


def is_local_path(value: Any) -> bool:
    """Whether `value` is an absolute (or home-relative) local path."""
    return isinstance(value, str) and (os.path.isabs(value) or value.startswith("~"))


def shareable_name(value: Any) -> Any:
    """A local absolute path becomes its last component, relative (`/data/ckpt/my-bert` ->
    `./my-bert`: still a local path, never mistaken for a Hub id); anything else is
    returned unchanged."""
    if not is_local_path(value):
        return value
    name = os.path.basename(os.path.normpath(os.path.expanduser(value)))
    return f"./{name}" if name else value


def shareable(value: Any) -> Any:
    """`value` (a dict, list or scalar, nested) with every local absolute path replaced by
    its last component."""
    if isinstance(value, dict):
        return {k: shareable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shareable(v) for v in value]
    return shareable_name(value)


def embedded_hub_id(modality_name: str | None) -> str | None:
    """The Hub id the modality's embedded default checkpoint was copied from (None when the
    modality is unknown here or has no embedded checkpoint)."""
    from tl_hf.errors import UserError
    from tl_hf.modalities.base import get_modality

    try:
        return get_modality(modality_name or "text").default_model_hub_id
    except UserError:  # a folder written by a modality that is not registered here
        return None


def model_display_name(model_name_or_path: str | None, modality_name: str) -> str:
    """How the console and the live page name a run's checkpoint: a Hub id as given, a
    local folder by its name, the embedded default by the Hub id it was copied from."""
    if model_name_or_path:
        return str(shareable_name(model_name_or_path)).removeprefix("./")
    hub_id = embedded_hub_id(modality_name)
    return f"{hub_id} (embedded copy)" if hub_id else "the embedded default checkpoint"


def _flag_values(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        return [f"--{key}"] if value else [f"--{key}", "false"]
    if isinstance(value, list | tuple):
        return [f"--{key}", *(str(v) for v in value)] if value else []
    if isinstance(value, dict):
        import json

        return [f"--{key}", json.dumps(value)]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return [f"--{key}", str(value)]


def reproduce_command(
    modality: str, config: dict[str, Any], explicit: set[str], launcher: list[str] | None = None
) -> str:
    """The command line that reruns a run: `launcher` (default `tl-hf train MODALITY`), then the
    flags the user set, with the values that ran (paths named as in `shareable`)."""
    words = list(launcher or ["tl-hf", "train", modality])
    for key in sorted(explicit):
        if key in config:
            words += _flag_values(key, shareable(config[key]))
    return shlex.join(words)
