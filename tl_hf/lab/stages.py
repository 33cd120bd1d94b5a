"""The building blocks of the playbook's steps (`tl_hf.lab.playbook`, `tl_hf.lab.augment_step`):
run a stage of trials, read back its rows, the best configuration and the majority diagnosis."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tl_hf.console import say
from tl_hf.lab.grid import TrialSpec
from tl_hf.lab.study import final_trials
from tl_hf.output.names import trial_folder


def log(message: str) -> None:
    say(message, who="tl-hf playbook")


def specs_of(
    strategy, rates, seeds, base_seed, layers=None, decay=None, augment="none", model=None
) -> list[TrialSpec]:
    return [
        TrialSpec(strategy, float(f"{lr:.6g}"), layers, decay, augment, base_seed + i, model=model)
        for lr in rates
        for i in range(seeds)
    ]


def stage(session, specs) -> list[dict]:
    """Run a stage's trials; return their rows (this stage only)."""
    from tl_hf.lab.session import run_specs

    run_specs(session, specs)
    return stage_rows(session, specs)


def stage_rows(session, specs) -> list[dict]:
    """The study's rows of `specs` (those that ran)."""
    from tl_hf.lab.page import trial_rows

    keys = {s.key for s in specs}
    return [r for r in trial_rows(final_trials(session.study)) if r["key"] in keys]


def verdict_of(session, rows: list[dict]) -> dict[str, Any]:
    """The diagnosis of a configuration: each seed's history diagnosed, the majority verdict."""
    from tl_hf.report import diagnose, load_history

    verdicts, reasons = [], []
    for row in rows:
        history = load_history(trial_folder(session.lab_dir, row["number"]))
        if history and history.get("eval"):
            found = diagnose(history, strategy=row["strategy"])
            verdicts.append(found["verdict"])
            reasons += found["reasons"]
    if not verdicts:
        return {"verdict": "unknown", "reasons": ["no finished trial to diagnose"], "counts": {}}
    counts = Counter(verdicts)
    return {
        "verdict": counts.most_common(1)[0][0],
        "reasons": list(dict.fromkeys(reasons))[:4],
        "counts": dict(counts),
    }


def best_of(summary: list[dict], configs: set[str] | None = None) -> dict | None:
    ranked = [
        c for c in summary if c["rank"] is not None and (configs is None or c["config"] in configs)
    ]
    return ranked[0] if ranked else None
