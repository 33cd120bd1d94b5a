"""One lab trial: the recipe's own pipeline (`tl_hf.pipeline.run`) on data prepared once per
augmentation set, with a callback that reports the validation metric to Optuna every epoch
and stops the trial when the pruner says it trails."""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import shutil
import time
from typing import Any

from transformers import TrainerCallback

from tl_hf.console import say

# What a trial folder keeps once the trial ends (the model and checkpoints go).
KEPT_RECORDS = (
    "all_results.json",
    "training_history.json",
    "param_groups.json",
    "run_config.yaml",
    "diagnosis.json",
)


class ReportToOptuna(TrainerCallback):
    """Reports `objective` after every evaluation during training; stops the run when pruned,
    or when the page (`tl-hf ui`) asked to stop this trial (a flag in the study)."""

    def __init__(self, trial, objective: str, prune: bool):
        self.trial, self.objective, self.prune = trial, objective, prune
        self.pruned_at: int | None = None
        self.stopped_at: int | None = None
        self.last: float | None = None
        self._training = False

    def on_train_begin(self, args, state, control, **kwargs):
        self._training = True

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self._training or not metrics or self.objective not in metrics:
            return
        epoch = int(round(state.epoch or 0))
        self.last = float(metrics[self.objective])
        self.trial.report(self.last, epoch)
        # the last evaluation ends the trial anyway: pruning it then would only drop a finished
        # trial from the ranking
        last = state.max_steps and state.global_step >= state.max_steps
        if not last and _stop_asked(self.trial):
            self.stopped_at = epoch
            control.should_training_stop = True
        elif self.prune and not last and self.trial.should_prune():
            self.pruned_at = epoch
            control.should_training_stop = True


def _stop_asked(trial) -> bool:
    from tl_hf.lab.study import stop_requested

    study = getattr(trial, "study", None)
    return study is not None and stop_requested(study, trial.number)


@dataclasses.dataclass
class Outcome:
    state: str  # "complete", "pruned" or "failed"
    value: float | None
    attrs: dict[str, Any]
    result: Any = None  # the RunResult, when the pipeline finished


def peak_memory_mb() -> float:
    """The accelerator's peak allocation when there is one, else this process's peak RSS."""
    import resource

    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def may_prune(session, spec) -> bool:
    """Whether the pruner may stop this trial: not when pruning is off, never for the
    session's reference (the playbook's recipe default: a pruned reference leaves nothing to
    weigh the best against, `tl_hf.lab.winner.choose_winner`) nor for the configurations the
    session protects (`Session.never_prune`)."""
    protected = spec.config == session.reference or spec.config in session.never_prune
    return session.lab.prune and not protected


def run_trial(args, prepared, trial, objective: str, prune: bool) -> Outcome:
    """Train one trial through the pipeline; never raises for the trial's own failures."""
    import torch

    from tl_hf.errors import UserError
    from tl_hf.pipeline import run

    callback = ReportToOptuna(trial, objective, prune)
    started = time.time()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        result = run(args, prepared=prepared, callbacks=[callback])
    except UserError as err:
        return Outcome("failed", None, {"fail_reason": f"bad combination: {err}"})
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return Outcome("failed", None, {"fail_reason": "out of memory"})
    except Exception as err:  # the lab goes on; the reason is recorded
        return Outcome(
            "failed",
            None,
            {"fail_reason": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"},
        )
    metrics = result.metrics
    attrs = {
        "best_epoch": metrics.get("best_epoch"),
        "stopped_epoch": metrics.get("stopped_epoch"),
        "train_time_s": round(float(metrics.get("train_runtime", 0.0)), 2),
        "wall_time_s": round(time.time() - started, 2),
        "trainable_params": int(sum(g["num_params"] for g in result.param_groups)),
        "peak_memory_mb": peak_memory_mb(),
        "objective_value": metrics.get(objective),
    }
    train_loss = metrics.get("train_loss")
    if (
        train_loss is None
        or not math.isfinite(train_loss)
        or not math.isfinite(metrics.get("eval_loss", 0.0))
    ):
        return Outcome("failed", None, {**attrs, "fail_reason": "NaN or infinite loss"}, result)
    if objective not in metrics:
        return Outcome(
            "failed", None, {**attrs, "fail_reason": f"the run reported no {objective}"}, result
        )
    if callback.stopped_at is not None:  # recorded like a pruned trial: not ranked
        stop = {"pruned_at_epoch": callback.stopped_at, "stopped_by_user": True}
        return Outcome(
            "pruned", callback.last, {**attrs, **stop, "last_metric": callback.last}, result
        )
    if callback.pruned_at is not None:
        return Outcome(
            "pruned",
            callback.last,
            {**attrs, "pruned_at_epoch": callback.pruned_at, "last_metric": callback.last},
            result,
        )
    return Outcome("complete", float(metrics[objective]), attrs, result)


def clean_trial_folder(folder: str) -> None:
    """Delete the trial's model and checkpoints, keeping its small records."""
    if not os.path.isdir(folder):
        return
    for entry in os.listdir(folder):
        if entry in KEPT_RECORDS:
            continue
        path = os.path.join(folder, entry)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def run_grid_trial(session, trial, spec):
    """Run one of the study's trials in `lab_dir/trials/trial_NNNN` under its heartbeat and tell
    the study how it ended (its folder then keeps the records only, unless asked)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from tl_hf.errors import UserError
    from tl_hf.lab.data import prepared_for, without_test
    from tl_hf.lab.grid import trial_args
    from tl_hf.lab.study import heartbeat, refresh_augment_sets
    from tl_hf.output.names import trial_folder

    lab = session.lab
    folder = trial_folder(session.lab_dir, trial.number)
    with heartbeat(session.study, trial, lab.heartbeat_seconds):
        try:
            if spec.augment_set not in session.augment_sets:  # a set the page added since
                refresh_augment_sets(session)
            if spec.augment_set not in session.augment_sets:
                raise UserError(f"no augmentation set {spec.augment_set!r} in this lab")
            args = trial_args(session.base, spec, session.augment_sets[spec.augment_set], folder)
            data = without_test(prepared_for(session, spec.augment_set, spec.model))
        except UserError as err:
            outcome = Outcome("failed", None, {"fail_reason": f"bad combination: {err}"})
        else:
            outcome = run_trial(args, data, trial, lab.objective, may_prune(session, spec))
    states = {
        "complete": TrialState.COMPLETE,
        "pruned": TrialState.PRUNED,
        "failed": TrialState.FAIL,
    }
    try:
        for key, value in outcome.attrs.items():
            trial.set_user_attr(key, value)
        value = outcome.value if outcome.state == "complete" else None
        session.study.tell(trial, value, state=states[outcome.state])
    except UpdateFinishedTrialError:
        # another worker took this trial as silent (a starved heartbeat) and finished it: its
        # record stands; this worker's result is dropped instead of crashing the lab
        say(
            f"trial {trial.number} was finished by another worker; this run's result is dropped",
            who="tl-hf lab",
        )
    if not lab.keep_trial_folders:
        clean_trial_folder(folder)
    gc.collect()
    return outcome
