"""The pipeline every entry point runs, top to bottom:

    config -> data -> augment -> preprocess -> model -> strategy -> train -> report -> save/push

`run()` is the straight-line flow of named steps (`plan`, `steps`, `phases`, `trainer`,
`finish`); `train_*_classifier()` are the Python API; the recipes in `recipes/` parse flags and
call `run()`. `run()` never changes the arguments it is given: what it derives goes into the
`Plan` and into `RunResult.args` / `run_config.yaml`, which record what ran.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import tl_hf.pipeline.finish as finish
import tl_hf.pipeline.phases as phases
import tl_hf.pipeline.plan as plan
import tl_hf.pipeline.steps as steps
import tl_hf.pipeline.trainer as trainer
from tl_hf.config import RunArgs, build_args
from tl_hf.errors import UserError


@dataclass
class RunResult:
    """What a run returns: its metrics (as in all_results.json), the trained (best) model,
    where it was saved, the arguments as they ran and the optimizer's groups."""

    metrics: dict[str, Any]
    model: Any
    output_dir: str
    args: RunArgs
    param_groups: list[dict[str, Any]]


@contextlib.contextmanager
def _step(timer, phase: str, stage: str | None = None):
    """One step: timed as `phase` (--profile), named `stage` in the line an interrupt prints."""
    from tl_hf.output.interrupt import set_stage

    if stage:
        set_stage(stage)
    with timer.phase(phase):
        yield


def run(args: RunArgs, dataset=None, prepared=None, callbacks=()) -> RunResult:
    """Run one fine-tuning job end to end and return its result.

    Args:
        args: the run's arguments (`tl_hf.config.parse_args` / `build_args`).
        dataset: an in-memory dataset, if the data is not named by the arguments.
        prepared: data already loaded, augmented and preprocessed for these arguments by
            `prepare_data` (the lab shares it between trials); its splits are used as given.
        callbacks: extra `TrainerCallback`s (the lab's pruning callback).
    """
    from tl_hf.console import quiet_libraries, say
    from tl_hf.output.interrupt import start_run
    from tl_hf.output.timing import PhaseTimer

    timer = PhaseTimer()  # where the time goes (--profile prints it)
    with _step(timer, "imports"):
        from transformers import set_seed
    # one progress bar per phase; --verbose shows the libraries' own bars and messages
    with quiet_libraries(args.report.verbose):
        start_run(args.training.output_dir)  # Ctrl-C / SIGTERM from here: one line, resume command
        selection = None
        if args.model.candidates:  # --candidates: rank them, then train the chosen one
            if prepared is not None:
                raise UserError("--candidates cannot use prepared data: each candidate has its own")
            with _step(timer, "checkpoint selection", "checkpoint selection"):
                args, selection = steps.select_step(args, dataset)
        with _step(timer, "plan and checks"):  # everything a user can get wrong, nothing loaded
            p = plan.plan_run(args)
            output = plan.open_output_step(p, say)
            set_seed(args.training.seed)  # the new head's initialisation, LoRA's adapters
        try:
            with _step(timer, "data: load, augment, preprocess", "data preparation"):
                data = prepared if prepared is not None else steps.prepare_data(p, dataset)
                p = plan.with_data_rules(p, data.rules)  # what the training split chose
            with _step(timer, "model load", "model loading"):
                model = steps.load_model_step(p, data)
                pooling = steps.pooling_step(model, p)
            with _step(timer, "strategy and groups"):
                trained_phases = phases.prepare_model_step(model, p, data, output.resume_from)
                groups = steps.apply_strategy_step(model, p)
            with _step(timer, "feature cache"):
                features = steps.cache_features_step(model, p, data)
            with _step(timer, "output folder and trainer"):
                steps.prepare_output_dir(p, data, groups, output)
                steps.write_selection_step(selection, p)
                own = trainer.build_callbacks(p, trained_phases, output.resume_from)
                t = trainer.setup_trainer(
                    model, p, data, features, [*own, *callbacks], timer, output
                )
            with _step(timer, "train", "training"):
                train_result = finish.train_step(t, features, p)
            timer.add("curves and history files", own[-1].write_seconds, inside="train")
            with _step(timer, "final evaluation and test predictions", "final evaluation"):
                metrics = finish.evaluate_step(t, train_result, features, data.label_names)
            with _step(timer, "save model", "saving"):
                finish.save_model_step(t, p)
            ran = finish.what_ran(p, t, pooling, features.cache is not None, data.rules)
            finish.report_step(ran, p, t, metrics, data, dataset, timer)
            return RunResult(metrics, t.model, ran.training.output_dir, ran, groups)
        finally:
            output.release()


def train_classifier(
    modality: str, dataset=None, args: RunArgs | None = None, **kwargs: Any
) -> RunResult:
    """Fine-tune a classifier: the same pipeline and arguments as the recipes.

    Args:
        modality: "text", "image", "audio", or a registered modality's name.
        dataset: optional in-memory `datasets.Dataset`/`DatasetDict` (else `dataset_name`/files).
        args: already-built arguments (from `tl_hf.config.parse_args`); else built from kwargs.
        **kwargs: any recipe flag by name, e.g. `model_name_or_path`, `strategy`,
            `learning_rate`, `num_train_epochs`, `output_dir`.
    """
    if args is not None and kwargs:
        raise UserError("give either args or keyword arguments, not both")
    return run(args if args is not None else build_args(modality, dataset, **kwargs), dataset)


def train_text_classifier(dataset=None, **kwargs: Any) -> RunResult:
    """`train_classifier("text", ...)`."""
    return train_classifier("text", dataset, **kwargs)


def train_image_classifier(dataset=None, **kwargs: Any) -> RunResult:
    """`train_classifier("image", ...)`."""
    return train_classifier("image", dataset, **kwargs)


def train_audio_classifier(dataset=None, **kwargs: Any) -> RunResult:
    """`train_classifier("audio", ...)`."""
    return train_classifier("audio", dataset, **kwargs)
