"""The modality extension point's public name (re-exports `tl_hf.modalities`)."""

from tl_hf.modalities.base import *  # noqa: F401,F403
from tl_hf.modalities.base import Modality, get_modality, modality_names, register_modality

__all__ = ["Modality", "get_modality", "modality_names", "register_modality"]
