"""tl-hf: transfer learning for Hugging Face checkpoints.

`import tl_hf` stays cheap: the heavy libraries load inside the functions that need them.

    import tl_hf
    result = tl_hf.train_text_classifier(dataset_name="my.csv", strategy="llrd")
    result.metrics["test_accuracy"], result.model
"""

from tl_hf.errors import UserError
from tl_hf.modalities.base import Modality, get_modality, register_modality
from tl_hf.strategies.base import Strategy, get_strategy, register_strategy

__version__ = "0.1.0"
__all__ = [
    "Modality",
    "Strategy",
    "UserError",
    "get_modality",
    "register_modality",
    "get_strategy",
    "register_strategy",
    "run_lab",
    "run_playbook",
    "select_checkpoint",
    "train_classifier",
    "train_text_classifier",
    "train_image_classifier",
    "train_audio_classifier",
]


def __getattr__(name):
    if name == "select_checkpoint":
        from tl_hf.select import select_checkpoint

        return select_checkpoint
    if name in ("run_lab", "run_playbook"):
        import tl_hf.lab

        return getattr(tl_hf.lab, name)
    if name in (
        "train_classifier",
        "train_text_classifier",
        "train_image_classifier",
        "train_audio_classifier",
        "RunResult",
    ):
        from tl_hf import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'tl_hf' has no attribute {name!r}")
