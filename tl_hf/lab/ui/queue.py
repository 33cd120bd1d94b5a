"""The page's controls: what they offer (strategies, the checkpoint's layers, rates), a request
turned into trials with the command line's own checks and messages (the lab's arguments
rebuilt with the request's values through `build_args_with`, `build_grid`, `trial_args`, and
the frozen strategy's layer check on a skeleton of the checkpoint), the trials queued as
WAITING in the same study; stopping a trial; marking a configuration as the winner."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from tl_hf.errors import UserError


def _number(body: dict, key: str, kind=float):
    value = body.get(key)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise UserError(f"--{key} takes a number, got {value!r}") from None
    if kind is float and not math.isfinite(number):
        raise UserError(f"--{key} takes a finite number, got {value!r}")
    return number


def _check_augment(args) -> None:
    """The augmentations of a trial, checked as a run checks them before loading data."""
    from tl_hf.augment.base import resolve_augment_specs
    from tl_hf.modalities.base import get_modality

    resolve_augment_specs(get_modality(args.modality), args.augment, args.explicit)


class Queue:
    """Queues trials into `view.study` with the lab's recorded arguments."""

    def __init__(self, view):
        from tl_hf.lab.session import args_from_record

        self.view = view
        self.reason = None
        try:
            if not view.record:
                raise UserError("the study holds no recorded lab arguments (an older tl-hf)")
            if view.record.get("in_memory"):
                raise UserError(
                    "the lab trains on an in-memory dataset, which a worker cannot load"
                )
            self.base, self.lab = args_from_record(view.record)
        except UserError as err:
            self.base = self.lab = None
            self.reason = f"queueing is off: {err}"

    @functools.cached_property
    def skeleton(self):
        """The classifier built on the meta device from the checkpoint's config (no weights):
        its blocks bound the layers slider and check `--trainable_layers` like a run does."""
        import torch
        import transformers

        from tl_hf.modalities.base import get_modality
        from tl_hf.model.checkpoint import load_checkpoint_config

        model_args = self.base.model
        config = load_checkpoint_config(model_args.model_name_or_path, model_args)
        auto = getattr(transformers, get_modality(self.base.modality).auto_model)
        try:
            with torch.device("meta"):
                return auto.from_config(config)
        except Exception:  # remote code or an exotic family: the trial itself checks
            return None

    def form(self) -> dict[str, Any]:
        """What the controls offer and start from."""
        from tl_hf.lab.grid import default_learning_rate
        from tl_hf.model.depth import num_blocks
        from tl_hf.strategies.base import strategy_names

        if self.base is None:
            return {"enabled": False, "reason": self.reason}
        try:
            layers = num_blocks(self.skeleton) if self.skeleton is not None else None
        except Exception:
            layers = None
        strategies = strategy_names()
        given = [r for r in self.lab.learning_rates if r != "auto"]
        rates = {}
        for name in strategies:  # the lab's own rate when it named one, else the recipe's
            try:
                rates[name] = float(given[0]) if given else default_learning_rate(self.base, name)
            except Exception:
                rates[name] = self.base.training.learning_rate
        return {
            "enabled": True,
            "strategies": strategies,
            "strategy": self.lab.strategies[0],
            "layers": layers,
            "learning_rates": rates,
            "llrd_decay": self.base.strategy.llrd_decay,
            "augment_sets": list(self.lab.augment_sets),
            "epochs": self.base.training.num_train_epochs,
            "seeds": 1,
            "probe": self.probe(),
        }

    def probe(self) -> dict | None:
        """The playbook's per-layer probe, when the playbook ran (drawn beside the slider)."""
        playbook = self.view.snapshot().get("playbook") or {}
        return playbook.get("probe")

    def specs(self, body: dict) -> list:
        """The trials a request asks for, checked as the command line checks them."""
        from tl_hf.lab.grid import build_grid, parse_augment_sets, trial_args
        from tl_hf.lab.session import args_from_record

        if self.base is None:
            raise UserError(self.reason)
        strategy = str(body.get("strategy") or "")
        self._check_strategy(strategy)
        rate = str(body.get("learning_rate", "")).strip()  # build_grid reads it as the flag does
        layers = _number(body, "trainable_layers", int)
        seeds = _number(body, "seeds", int)
        epochs = _number(body, "num_train_epochs")
        augment = str(body.get("augment_set") or "none").strip()
        items = list(self.view.record["lab"].get("augment_sets") or self.lab.augment_sets)
        name = augment
        if augment not in parse_augment_sets(items):
            items.append(augment)
            name = list(parse_augment_sets([augment]))[0]
        values = {
            "strategies": [strategy],
            "learning_rates": [rate],
            "trainable_layers_grid": [layers],
            "seeds": seeds,
            "augment_sets": items,
            "num_train_epochs": epochs,
        }
        if strategy == "llrd":
            values["llrd_decays"] = [_number(body, "llrd_decay")]
        base, lab = args_from_record(self.view.record, **values)
        specs = [s for s in build_grid(base, lab) if s.augment_set == name]
        sets = parse_augment_sets(lab.augment_sets)
        if epochs != self.base.training.num_train_epochs:
            specs = [dataclasses.replace(s, epochs=epochs) for s in specs]
        for spec in specs:
            args = trial_args(base, spec, sets[spec.augment_set], "/nonexistent/check-only")
            self._check_layers(spec)
            _check_augment(args)
        return specs, lab.augment_sets

    def _check_strategy(self, strategy: str) -> None:
        from tl_hf.strategies.base import get_strategy

        get_strategy(strategy)  # an unknown name: the registry's own message

    def _check_layers(self, spec) -> None:
        from types import SimpleNamespace

        from tl_hf.strategies.basic import frozen_trainable

        if spec.strategy == "frozen" and spec.trainable_layers and self.skeleton is not None:
            frozen_trainable(self.skeleton, SimpleNamespace(trainable_layers=spec.trainable_layers))

    def enqueue(self, body: dict) -> dict[str, Any]:
        """Queue the request's trials (those not in the study yet); their numbers."""
        import tl_hf.lab.study as st

        specs, augment_sets = self.specs(body)
        study = self.view.study
        record = self.view.record
        if list(record["lab"].get("augment_sets") or []) != list(augment_sets):
            record = {**record, "lab": {**record["lab"], "augment_sets": list(augment_sets)}}
            st.record_lab_args(study, record)
            self.view.record = record
        added = st.enqueue_missing(study, specs)
        keys = {s.key for s in specs}
        numbers = [t.number for t in st.final_trials(study) if t.user_attrs.get("key") in keys]
        return {"queued": added, "trials": numbers, "already": len(specs) - added}

    def stop(self, number: int) -> str:
        """Stop trial `number`: a running one at its next evaluation (its worker reads the
        flag), a waiting one at once (closed, never run)."""
        from optuna.trial import TrialState

        import tl_hf.lab.study as st

        trial = next(
            (t for t in self.view.study.get_trials(deepcopy=False) if t.number == number), None
        )
        if trial is None:
            raise UserError(f"no trial {number} in the study")
        if trial.state == TrialState.RUNNING:
            st.request_stop(self.view.study, number)
            return "stopping at its next evaluation"
        if trial.state == TrialState.WAITING:
            storage = self.view.study._storage
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", "cancelled in the page")
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            return "cancelled before it ran"
        raise UserError(
            f"trial {number} is {trial.state.name.lower()}: only a running or waiting trial stops"
        )

    def mark_winner(self, config: str) -> dict[str, Any]:
        """Mark `config` as the winner; its command (the recipe that trains it alone)."""
        from tl_hf.lab.grid import TrialSpec, parse_augment_sets, trial_args
        from tl_hf.lab.study import WINNER_MARK_ATTR
        from tl_hf.lab.winner import winner_command

        if self.base is None:
            raise UserError(self.reason)
        rows = [r for r in self.view.snapshot()["trials"] if r["config"] == config]
        if not rows:
            raise UserError(f"no configuration {config!r} in the study")
        done = [r for r in rows if r["state"] == "complete"] or rows
        pick = (max if self.view.greater else min)(
            done, key=lambda r: r["objective_value"] if r["objective_value"] is not None else 0.0
        )
        spec = TrialSpec.from_attrs(pick)
        sets = parse_augment_sets(self.view.record["lab"].get("augment_sets") or ["none"])
        augment = sets.get(spec.augment_set) or sets.setdefault(
            "none", parse_augment_sets(["none"])["none"]
        )
        folder = f"outputs/{self.base.modality}_lab_winner"
        command = winner_command(
            self.base, spec, augment, trial_args(self.base, spec, augment, folder)
        )
        self.view.study.set_user_attr(WINNER_MARK_ATTR, {"config": config, "command": command})
        return {"config": config, "command": command}
