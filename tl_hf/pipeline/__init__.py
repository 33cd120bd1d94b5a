"""The pipeline every entry point runs (re-exports only): `run` (`tl_hf.pipeline.flow`), the
plan (`plan`), the steps of the flow (`steps`, `phases`, `trainer`, `finish`)."""

from tl_hf.pipeline.finish import recorded_evaluation
from tl_hf.pipeline.flow import (
    RunResult,
    run,
    train_audio_classifier,
    train_classifier,
    train_image_classifier,
    train_text_classifier,
)
from tl_hf.pipeline.plan import Plan, plan_run
from tl_hf.pipeline.steps import Prepared, load_model_step, prepare_data

__all__ = [
    "Plan",
    "Prepared",
    "RunResult",
    "load_model_step",
    "plan_run",
    "prepare_data",
    "recorded_evaluation",
    "run",
    "train_audio_classifier",
    "train_classifier",
    "train_image_classifier",
    "train_text_classifier",
]
