"""The fine-tuning lab's entry points: the command (`tl-hf lab`, `recipes/lab.py`, `python -m
tl_hf.lab`) and the Python API (`tl_hf.run_lab`, `tl_hf.run_playbook`).

    tl-hf lab --modality text --strategies frozen llrd full --learning_rates auto --seeds 3
    tl-hf lab --modality image --augment_sets none light=hflip+rotate --time_budget_minutes 30
    tl_hf.run_lab(modality="text", strategies=["frozen", "llrd"], seeds=2, train_file="train.csv")

Strategies x learning rates x layers x augmentation sets x seeds side by side, every trial
through the recipes' own pipeline, recorded in an Optuna study (`tl_hf.lab.session`); with
`--playbook`, the playbook's steps on the same study (`tl_hf.lab.playbook`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import Any

from tl_hf.config import RunArgs
from tl_hf.console import say
from tl_hf.errors import UserError
from tl_hf.lab.grid import LabArguments
from tl_hf.lab.session import LabResult, finish, open_session, run_specs


def _lab_argv(argv: list[str]) -> tuple[str, list[str]]:
    """(modality, the argv for the parser): `--trainable_layers` (a list in the lab) renamed to
    the lab's own field, and the lab's default folder. The modality is read first: the
    recipe's defaults depend on it."""
    import argparse

    reader = argparse.ArgumentParser(add_help=False)
    reader.add_argument("--modality", default=LabArguments.modality)
    modality = reader.parse_known_args(argv)[0].modality
    rest = [
        a.replace("--trainable_layers", "--trainable_layers_grid", 1)
        if a == "--trainable_layers" or a.startswith("--trainable_layers=")
        else a
        for a in argv
    ]
    if not any(a == "--output_dir" or a.startswith("--output_dir=") for a in rest):
        rest += ["--output_dir", os.path.join("outputs", f"{modality}_lab")]
    return modality, rest


def main(argv: list[str] | None = None) -> int:
    """`tl-hf lab ...`: exit 2 with one line for user errors."""
    from tl_hf.config import parse_args_with

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        modality, rest = _lab_argv(argv)
        base, (lab,) = parse_args_with(modality, rest, extra=(LabArguments,), prog="tl-hf lab")
        if lab.worker:
            from tl_hf.lab.worker import run_worker

            run_worker(base, lab)
            return 0
        server = _start_page(base, lab) if lab.serve else None
        result = run_lab_with_args(base, lab)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(
            "[tl-hf lab] interrupted: rerun the same command to finish the missing trials",
            file=sys.stderr,
        )
        return 130
    if result.winner:
        report = os.path.join(result.lab_dir, "lab_report.html")
        say(
            f"winner: {result.winner['config']} (validation {result.winner['mean']:.4f} +- "
            f"{result.winner['std']:.4f}); report: {report}",
            who="tl-hf lab",
        )
    if server is not None:
        say("the lab is done; the page stays up for new trials (Ctrl-C stops it)", who="tl-hf lab")
        with contextlib.suppress(KeyboardInterrupt):
            server.wait()
        server.stop()
    return 0


def _start_page(base: RunArgs, lab: LabArguments):
    """`--serve`: the lab's page (`tl_hf.lab.ui`) in a thread of this process, up before the
    first trial (the study is created first, so the page has something to read)."""
    from tl_hf.lab.session import open_session
    from tl_hf.lab.ui.server import start_in_thread

    open_session(base, lab)
    return start_in_thread(
        base.training.output_dir, lab.storage, lab.study_name, lab.port, lab.host
    )


def run_playbook(modality: str = "text", dataset=None, **kwargs: Any) -> LabResult:
    """The playbook (`tl_hf.lab.playbook`): `run_lab(..., playbook=True)`."""
    return run_lab(modality, dataset, playbook=True, **kwargs)


def run_lab(modality: str = "text", dataset=None, **kwargs: Any) -> LabResult:
    """The lab from Python: every recipe keyword plus the lab's (`LabArguments`), e.g.
    `run_lab("text", strategies=["frozen", "llrd"], seeds=2, train_file="train.csv")`.
    `trainable_layers` takes a list here, as on the command line."""
    from tl_hf.config import build_args_with

    if "trainable_layers" in kwargs:
        kwargs["trainable_layers_grid"] = list(kwargs.pop("trainable_layers"))
    kwargs.setdefault("output_dir", os.path.join("outputs", f"{modality}_lab"))
    base, (lab,) = build_args_with(modality, dataset, extra=(LabArguments,), **kwargs)
    return run_lab_with_args(base, dataclasses.replace(lab, modality=modality), dataset)


def run_lab_with_args(base: RunArgs, lab: LabArguments, dataset=None) -> LabResult:
    """Run (or continue) the lab described by `base` (the recipe arguments every trial starts
    from) and `lab` (the grid, storage and budget), or the playbook with `lab.playbook`."""
    from tl_hf.lab.grid import build_grid

    if lab.playbook:
        from tl_hf.lab.playbook import run_playbook_with_args

        return run_playbook_with_args(base, lab, dataset)
    specs = build_grid(base, lab)  # validates the grid before anything is loaded
    session = open_session(base, lab, dataset)
    if base.model.candidates:  # rank them (or read the study's ranking); the grid runs on the top
        from tl_hf.lab.ladder import step_select

        step_select(session, [])
        specs = [dataclasses.replace(s, model=session.model) for s in specs]
    winner = run_specs(session, specs, then_winner=True)
    return finish(session, specs, winner)
