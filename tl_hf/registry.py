"""The two extension points' plumbing, in one place: a `Registry` of records by name (the
modalities, the strategies), and `Settings`, how a plugin reads its flags (the shared ones of
its concern joined with its own, declared in the record's `flags` dataclass).

A leaf module: it imports nothing of tl-hf's but the errors.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from tl_hf.errors import UserError

R = TypeVar("R")


class Registry(Generic[R]):
    """Records of one kind by name; the built-in ones live in modules imported on first use
    (each registers itself).

    Args:
        kind: what the records are, for messages ("modality", "strategy").
        record_type: the record's class (`register` refuses anything else).
        builtin: name -> module of the records that ship with tl-hf.
        unknown: the message for an unknown name, formatted with `name` and `choices`.
        public: the dotted name users register with (named in the messages).
    """

    def __init__(
        self, kind: str, record_type: type, builtin: dict[str, str], unknown: str, public: str
    ):
        self.kind, self.record_type, self.builtin = kind, record_type, dict(builtin)
        self.unknown, self.public = unknown, public
        self._records: dict[str, R] = {}

    def register(self, record: R) -> R:
        if not isinstance(record, self.record_type):
            raise TypeError(
                f"register_{self.kind} takes a {self.public}.{self.record_type.__name__}, "
                f"got {type(record).__name__}"
            )
        self._records[record.name] = record
        return record

    def names(self) -> list[str]:
        """Every name known now: the built-in ones and those registered."""
        return sorted(set(self.builtin) | set(self._records))

    def get(self, name: str) -> R:
        """The record called `name` (a built-in one is imported on first use)."""
        if name not in self._records and name in self.builtin:
            importlib.import_module(self.builtin[name])
        if name not in self._records:
            raise UserError(
                self.unknown.format(name=repr(name), choices=", ".join(self.names()))
                + f" (or register yours with {self.public}.register_{self.kind})"
            )
        return self._records[name]

    def __iter__(self) -> Iterator[R]:
        """Every record: the built-in ones (imported) and those registered."""
        return iter([self.get(name) for name in self.names()])


class Settings:
    """What a plugin reads as its settings: the shared flags of its concern (a dataclass) joined
    with its own (the instance of its record's `flags` dataclass, or None). Attributes are
    looked up in the shared flags, then in the plugin's own: `options.llrd_decay`,
    `options.lora_r`. Immutable; `replace` returns a changed copy."""

    __slots__ = ("shared", "own")

    def __init__(self, shared: Any, own: Any = None):
        object.__setattr__(self, "shared", shared)
        object.__setattr__(self, "own", own)

    def _parts(self) -> list[Any]:
        own = object.__getattribute__(self, "own")
        return [object.__getattribute__(self, "shared"), *([own] if own is not None else [])]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for part in self._parts():
            if name in {f.name for f in dataclasses.fields(part)}:
                return getattr(part, name)
        raise AttributeError(
            f"no setting {name!r} in {' or '.join(type(p).__name__ for p in self._parts())}"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"settings are read-only: use .replace({name}=...)")

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied to whichever part holds each field."""
        parts = self._parts()
        names = [{f.name for f in dataclasses.fields(p)} for p in parts]
        unknown = set(changes) - set().union(*names)
        if unknown:
            raise TypeError(f"no setting {sorted(unknown)[0]!r} to replace")
        new = [
            dataclasses.replace(p, **{k: v for k, v in changes.items() if k in n})
            for p, n in zip(parts, names, strict=True)
        ]
        return Settings(*new)

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name, the shared ones first."""
        out: dict[str, Any] = {}
        for part in self._parts():
            out.update({f.name: getattr(part, f.name) for f in dataclasses.fields(part)})
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self._parts() == other._parts()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.as_dict().items(), key=lambda kv: kv[0]).__repr__()))

    def __reduce__(self):
        return (Settings, tuple(self._parts()) if len(self._parts()) == 2 else (self._parts()[0],))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Settings({inner})"


def settings_of(shared: Any, flags: type | None, values: dict[str, Any] | None = None) -> Settings:
    """`Settings` of `shared` with the plugin's own flags: `values` (flag name -> value) for
    the fields of `flags` that it names, the defaults for the rest."""
    if flags is None:
        return Settings(shared)
    known = {f.name for f in dataclasses.fields(flags)}
    return Settings(shared, flags(**{k: v for k, v in (values or {}).items() if k in known}))
