"""`--report_to tensorboard` and `--report_to trackio`, offline and inside the output folder.

transformers' own callbacks (`TensorBoardCallback`, `TrackioCallback`) log the training
loss, the first group's learning rate and the evaluation metrics. tl-hf adds what they do
not: the learning rate of every parameter group (`lr/<group>`), and after the final
evaluation the final metrics (`final/<metric>`) and the diagnosis (text). Both trackers
write into the output folder (`tensorboard/`, `trackio/`) unless the user chose a place
(`TENSORBOARD_LOGGING_DIR`, `TRACKIO_DIR`); trackio stays local (no Space unless one is
named, no server, no system-metrics sampler thread).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from transformers import TrainerCallback

from tl_hf.output.names import TENSORBOARD_DIR, TRACKIO_DIR

TRACKIO_PROJECT = "tl-hf"
# The user's own TRACKIO_DIR, read once before tl-hf sets it (it is an environment variable
# that trackio reads when imported).
_USER_TRACKIO_DIR = os.environ.get("TRACKIO_DIR")


def reports_to(training_args, name: str) -> bool:
    return name in (training_args.report_to or [])


def prepare_tracker_args(training_args, explicit: set[str]) -> None:
    """Before the `Trainer` exists (on its own copy of the arguments): trackio's project and
    run name (default: `tl-hf` / the output folder's name), no Space snapshot, and its data
    directory in the output folder (trackio reads it when imported)."""
    if not reports_to(training_args, "trackio"):
        return
    if "project" not in explicit:
        training_args.project = TRACKIO_PROJECT
    if "run_name" not in explicit or not training_args.run_name:
        training_args.run_name = os.path.basename(os.path.abspath(training_args.output_dir))
    if "trackio_static_space_id" not in explicit:
        training_args.trackio_static_space_id = False  # no Space copy after training
    if _USER_TRACKIO_DIR is None:
        _set_trackio_dir(os.path.join(os.path.abspath(training_args.output_dir), TRACKIO_DIR))


def _set_trackio_dir(path: str) -> None:
    from pathlib import Path

    os.environ["TRACKIO_DIR"] = path
    # trackio copies the directory into module constants when first imported: a second run
    # in the same process must update them too.
    for name, module in list(sys.modules.items()):
        if name == "trackio" or name.startswith("trackio."):
            for attr, sub in (
                ("TRACKIO_DIR", ""),
                ("MEDIA_DIR", "media"),
                ("ARTIFACTS_DIR", "artifacts"),
            ):
                if isinstance(getattr(module, attr, None), Path):
                    setattr(module, attr, Path(path) / sub if sub else Path(path))


class _LocalTrackio:
    """The `trackio` module as TrackioCallback sees it, with an `init` that starts no CPU/GPU
    sampler thread (transformers has no option for it). A Space or bucket is used only
    when the user names one (`--trackio_space_id`, `TRACKIO_SPACE_ID`)."""

    def __init__(self, module):
        self._module = module

    def init(self, *args, **kwargs):
        kwargs.update(auto_log_cpu=False, auto_log_gpu=False)
        return self._module.init(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._module, name)


def _sibling(trainer, class_name: str):
    return next(
        (c for c in trainer.callback_handler.callbacks if type(c).__name__ == class_name), None
    )


def attach_trackers(trainer) -> TrainerCallback | None:
    """After the `Trainer` is built: TensorBoard logs into `output_dir/tensorboard`, trackio
    stays local, and a callback adds the learning rate of every group. Returns it (None
    when no tracker is on)."""
    tensorboard = _sibling(trainer, "TensorBoardCallback")
    trackio = _sibling(trainer, "TrackioCallback")
    if tensorboard is None and trackio is None:
        return None
    if tensorboard is not None and tensorboard.logging_dir is None:
        tensorboard.logging_dir = os.path.join(trainer.args.output_dir, TENSORBOARD_DIR)
    if trackio is not None:
        trackio._trackio = _LocalTrackio(trackio._trackio)
    callback = GroupLearningRatesCallback(tensorboard, trackio)
    trainer.add_callback(callback)
    return callback


def _group_names(optimizer) -> list[str]:
    names: list[str] = []
    for i, group in enumerate(optimizer.param_groups):
        name = str(group.get("name", f"group_{i}"))
        names.append(name if name not in names else f"{name}_{i}")
    return names


class GroupLearningRatesCallback(TrainerCallback):
    """`lr/<group>` for every optimizer group at every logging step, into the trackers that
    transformers' callbacks opened (it runs after them, so they are open)."""

    def __init__(self, tensorboard=None, trackio=None):
        self.tensorboard, self.trackio = tensorboard, trackio
        self._lrs: dict[str, float] = {}

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # before the scheduler steps: the rates this step used (what Trainer logs for group 0)
        if optimizer is not None:
            self._lrs = {
                f"lr/{name}": float(group["lr"])
                for name, group in zip(_group_names(optimizer), optimizer.param_groups)
            }

    def on_step_end(self, args, state, control, **kwargs):
        every = max(1, int(args.logging_steps or 1))
        if not (state.is_world_process_zero and self._lrs and state.global_step % every == 0):
            return
        writer = getattr(self.tensorboard, "tb_writer", None)
        if writer is not None:
            log_to_tensorboard(writer, state.global_step, self._lrs)
        if self.trackio is not None:
            log_to_trackio(self.trackio._trackio, state.global_step, self._lrs)


def log_to_tensorboard(writer, step: int, values: dict[str, Any], texts=None) -> None:
    for key, value in values.items():
        writer.add_scalar(key, value, step)
    for key, text in (texts or {}).items():
        writer.add_text(key, text, step)
    writer.flush()


def log_to_trackio(module, step: int, values: dict[str, Any], texts=None) -> None:
    if module.context_vars.current_run.get() is None:
        return
    row = {**values, **{k: module.Markdown(t) for k, t in (texts or {}).items()}}
    # no step=: trackio numbers its rows itself; the trainer step goes in the row, as
    # transformers does
    module.log({**row, "train/global_step": step})


def final_values(metrics: dict[str, Any]) -> dict[str, float]:
    """`final/<name>` for the numeric results of `all_results.json`."""
    return {
        f"final/{key}": float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def log_final_to_trackers(trainer, metrics: dict[str, Any], diagnosis: str) -> None:
    """After training (the trackers are closed by then): the final metrics and the
    diagnosis, appended to the same TensorBoard folder and the same trackio run."""
    tensorboard = _sibling(trainer, "TensorBoardCallback")
    trackio = _sibling(trainer, "TrackioCallback")
    step, values = trainer.state.global_step, final_values(metrics)
    texts = {"diagnosis": diagnosis}
    if tensorboard is not None and tensorboard.logging_dir:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(log_dir=tensorboard.logging_dir) as writer:  # a second event file
            log_to_tensorboard(writer, step, values, texts)
    if trackio is not None:
        module, args = trackio._trackio, trainer.args
        module.init(project=args.project, name=args.run_name, resume="must")
        try:
            log_to_trackio(module, step, values, texts)
        finally:
            module.finish()
