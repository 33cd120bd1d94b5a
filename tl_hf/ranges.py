"""Valid ranges of numeric settings, declared beside each flag and checked before anything loads.

A toolkit flag declares its range in its field's metadata (`metadata={"range": "(0, 1]"}`, with
an optional `"hint"` giving a good value); `TrainingArguments` flags, which are not ours, have
theirs in `TRAINING_RANGES`. A spec is an interval in the usual notation, `[` / `]` closed and
`(` / `)` open, `inf` unbounded, or several alternatives joined by ` or ` (e.g. `-1 or [1, inf)`,
where a bare number is that value alone). A value outside its range is one `UserError` naming
the flag, the value and the range: `--learning_rate must be > 0, got -1.0`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from tl_hf.errors import UserError

RANGE_METADATA = ("range", "hint", "nonempty", "flag")  # field metadata keys read here

# TrainingArguments flags (transformers checks few of them itself; a batch size of 0 or a
# negative learning rate would fail deep inside training, or silently train nothing).
TRAINING_RANGES: dict[str, str] = {
    "learning_rate": "(0, inf)",
    "per_device_train_batch_size": "[1, inf)",
    "per_device_eval_batch_size": "[1, inf)",
    "gradient_accumulation_steps": "[1, inf)",
    "eval_accumulation_steps": "[1, inf)",
    "num_train_epochs": "(0, inf)",
    "max_steps": "-1 or [1, inf)",
    "warmup_steps": "[0, inf)",
    "weight_decay": "[0, inf)",
    "adam_beta1": "[0, 1)",
    "adam_beta2": "[0, 1)",
    "adam_epsilon": "(0, inf)",
    "max_grad_norm": "[0, inf)",
    "label_smoothing_factor": "[0, 1)",
    "logging_steps": "(0, inf)",
    "eval_steps": "(0, inf)",
    "save_steps": "(0, inf)",
    "save_total_limit": "[1, inf)",
    "eval_delay": "[0, inf)",
    "seed": "[0, 4294967295]",
    "data_seed": "[0, 4294967295]",
    "dataloader_num_workers": "[0, inf)",
    "neftune_noise_alpha": "(0, inf)",
}
TRAINING_HINTS = {
    "num_train_epochs": "train for at least part of an epoch, or set --max_steps N",
    "learning_rate": "e.g. 5e-5, or leave it out for the strategy's default",
}


def _bound(text: str) -> float:
    text = text.strip()
    return {"inf": math.inf, "-inf": -math.inf}.get(text) or float(text)


def _parts(spec: str) -> list[tuple[float, bool, float, bool]]:
    """(low, low closed, high, high closed) per alternative of `spec`."""
    out = []
    for part in spec.split(" or "):
        part = part.strip()
        if part[0] in "[(":
            low, high = part[1:-1].split(",")
            out.append((_bound(low), part[0] == "[", _bound(high), part[-1] == "]"))
        else:
            value = _bound(part)
            out.append((value, True, value, True))
    return out


def in_range(value: float, spec: str) -> bool:
    for low, low_closed, high, high_closed in _parts(spec):
        above = value >= low if low_closed else value > low
        below = value <= high if high_closed else value < high
        if above and below:
            return True
    return False


def describe_range(spec: str) -> str:
    """`(0, inf)` -> `> 0`, `[1, inf)` -> `>= 1`, `(0, 1]` -> `in (0, 1]`, alternatives joined."""
    words = []
    for part, (low, low_closed, high, high_closed) in zip(
        spec.split(" or "), _parts(spec), strict=True
    ):
        if low == high:
            words.append(f"{low:g}")
        elif math.isinf(high):
            words.append(f"{'>=' if low_closed else '>'} {low:g}")
        elif math.isinf(low):
            words.append(f"{'<=' if high_closed else '<'} {high:g}")
        else:
            words.append(f"in {part.strip()}")
    return " or ".join(words)


def check_value(flag: str, value: Any, spec: str, hint: str | None = None) -> None:
    """A `UserError` when the number `value` of `flag` is outside `spec` (None passes)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if math.isnan(value) or not in_range(value, spec):
        raise UserError(
            f"{flag} must be {describe_range(spec)}, got {value}" + (f": {hint}" if hint else "")
        )


def declared_ranges(types: Iterable[type]) -> dict[str, dict[str, Any]]:
    """name -> {range, hint, nonempty, flag} of the dataclass fields that declare a range or
    non-emptiness, plus `TRAINING_RANGES` for `TrainingArguments`."""
    import dataclasses

    found: dict[str, dict[str, Any]] = {}
    for cls in types:
        if cls.__name__ == "TrainingArguments":
            for name, spec in TRAINING_RANGES.items():
                found[name] = {"range": spec, "hint": TRAINING_HINTS.get(name)}
            continue
        for f in dataclasses.fields(cls):
            if "range" in f.metadata or f.metadata.get("nonempty"):
                found[f.name] = {k: f.metadata.get(k) for k in RANGE_METADATA}
    return found


def check_ranges(values: Mapping[str, Any], types: Iterable[type]) -> None:
    """Check every flag of `values` (flag name -> value) that declares a range; lists are
    checked element by element (and must not be empty when their field says so)."""
    ranges = declared_ranges(types)
    if (values.get("max_steps") or -1) > 0:
        ranges.pop("num_train_epochs", None)  # --max_steps decides the length
    for name, declared in ranges.items():
        if name not in values:
            continue
        value, flag = values[name], declared.get("flag") or f"--{name}"
        items = value if isinstance(value, list | tuple) else [value]
        if declared.get("nonempty") and isinstance(value, list | tuple) and not value:
            raise UserError(f"{flag} is empty: give at least one value")
        if declared.get("range") is not None:
            for item in items:
                check_value(flag, item, declared["range"], declared.get("hint"))
