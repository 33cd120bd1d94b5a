"""Step 4 of the playbook: augmentation policies compared, the cheap way first.

1. Screen: each of the modality's policies (`PLAYBOOK_POLICIES` of its augmentation module)
   trains the frozen baseline's head on `SCREEN_COPIES` stored augmented copies per training
   example: the backbone's features of every copy are extracted once and cached, so a policy
   costs one extraction, not a fine-tune. Scored against the baseline without augmentation
   (step 1, same seeds).
2. Fine-tune: the best `FINE_TUNE_TOP` policies of the screen that were not clearly worse than
   none (by more than one standard error of the validation split) train the best configuration
   so far with fresh draws every epoch (`@on_the_fly`), over the same seeds.
3. The winner (`tl_hf.lab.winner.choose_winner`) keeps an augmented configuration only when it
   beats the same configuration without augmentation by more than one standard error.

The step runs whenever the training split is small (at most `SMALL_PER_CLASS` rows per class,
the sizes the evidence covers, docs/defaults.md) or the best so far overfits; the trail records
each policy's scores and a preview of what it does to a few training examples.
"""

from __future__ import annotations

import os
from typing import Any

SMALL_PER_CLASS = 100
SCREEN_COPIES = 4
FINE_TUNE_TOP = 2
PREVIEW_EXAMPLES = 4


def playbook_policies(modality) -> tuple[str, ...]:
    """The policies the step compares for a `Modality` (none when it has no augmentations)."""
    from tl_hf.augment.base import augment_module

    if not modality.augment_module:
        return ()
    return tuple(getattr(augment_module(modality), "PLAYBOOK_POLICIES", ()))


def screen_set(policy: str) -> str:
    return f"{policy}@copies={SCREEN_COPIES}"


def fine_tune_set(policy: str) -> str:
    return f"{policy}@on_the_fly"


def small_data_set(modality) -> str | None:
    """The `--augment_sets` item of the modality's small-data augmentation (`SmallData`: what
    the recipe default gets on small training splits), or None when it has none."""
    from tl_hf.augment.base import small_data

    small = small_data(modality)
    if small is None:
        return None
    return "+".join(small.augment) + ("@on_the_fly" if small.mode == "on_the_fly" else "@copies=1")


def policy_sets(modality) -> list[str]:
    """The `--augment_sets` items the playbook may use (registered when the session opens): the
    step's screens and fine-tunes, and the recipe default's small-data augmentation."""
    policies = playbook_policies(modality)
    small = small_data_set(modality)
    sets = [screen_set(p) for p in policies] + [fine_tune_set(p) for p in policies]
    return list(dict.fromkeys(sets + ([small] if small else [])))


def recipe_augment_set(session) -> str:
    """The augmentation set the recipe's own default gets on the session's data: its
    small-data set when the recipe's rule applies (`tl_hf.augment.base.small_data_rule`: the
    user left augmentation open, few rows per class, a fine-tuned backbone), else none."""
    from tl_hf.augment.base import small_data_rule
    from tl_hf.lab.data import prepared_for
    from tl_hf.modalities.base import get_modality
    from tl_hf.strategies.base import get_strategy

    base = session.base
    modality, strategy = get_modality(base.modality), get_strategy(base.strategy.strategy)
    train = prepared_for(session, "none", session.model).originals  # before preprocessing
    applies = small_data_rule(modality, strategy, base, train)
    return small_data_set(modality) if applies else "none"


def augmentation_decision(best: str | None, diagnosis: dict, per_class: float) -> tuple[bool, str]:
    """Whether step 4 runs, and why: on small data always (augmentation is the highest-return
    lever there, whatever the diagnosis), on larger data only when the best so far overfits."""
    if best is None:
        return False, "no configuration finished: nothing to augment"
    verdict = diagnosis["verdict"]
    if per_class <= SMALL_PER_CLASS:
        return True, (
            f"{per_class:.0f} training rows per class (at most {SMALL_PER_CLASS}): on small data "
            f"augmentation is the lever to try, whatever the diagnosis (the best so far, {best}, "
            f"is {verdict})"
        )
    if verdict == "overfitting":
        return True, f"the best so far ({best}) overfits: more augmentation"
    return False, (
        f"{per_class:.0f} training rows per class and the best so far ({best}) is {verdict}, "
        "not overfitting: augmentation would not be the lever"
    )


def step_augment(session, trail: list) -> list:
    """Step 4 (module docstring); returns the trial specs it ran."""
    from tl_hf.lab.data import rows_per_class
    from tl_hf.lab.grid import config_augment_set
    from tl_hf.lab.page import summarize, trial_rows
    from tl_hf.lab.stages import best_of, stage_rows, verdict_of
    from tl_hf.lab.study import final_trials
    from tl_hf.modalities.base import get_modality

    modality = get_modality(session.base.modality)
    # the best configuration without augmentation (the reference may carry the recipe's own)
    rows = trial_rows(final_trials(session.study))
    rows = [r for r in rows if config_augment_set(r["config"]) == "none"]
    best = best_of(summarize(rows, session.greater))
    best_rows = [r for r in rows if best and r["config"] == best["config"]]
    diagnosis = verdict_of(session, best_rows) if best else {"verdict": "unknown", "reasons": []}
    per_class = rows_per_class(session)
    run_it, why = augmentation_decision(best["config"] if best else None, diagnosis, per_class)
    policies = playbook_policies(modality)
    if run_it and not policies:
        run_it, why = False, f"the {modality.name} modality has no augmentations"
    if run_it and session.out_of_time():
        run_it, why = False, "the time budget ran out"
    step: dict[str, Any] = {"step": "4. augmentation", "ran": run_it, "why": why}
    step["diagnosis"] = diagnosis
    if not run_it:
        trail.append(step)
        return []
    specs, table, none_mean, margin = _screen(session, policies)
    first = best_rows[0]
    fine: list = []
    if first["strategy"] == "frozen" and not first["trainable_layers"]:
        step["why"] += "; the best so far is the frozen head: the screen is its augmentation"
    else:
        fine, passed = _fine_tune(session, first, table, none_mean, margin)
        specs += fine
        step["why"] += (
            f"; fine-tuned on the fly with the best configuration so far ({best['config']}): "
            + (", ".join(passed) or "none of the policies (each was below none)")
        )
    step.update(
        {
            "configs": sorted({s.config for s in specs}),
            "policies": table,
            "none": {
                "screen": none_mean,
                "fine_tune": best["mean"] if fine else None,
                "config": best["config"],
            },
            "margin": margin,
            "previews": _previews(session, modality, policies),
            "result": best_of(summarize(stage_rows(session, specs), session.greater)),
        }
    )
    trail.append(step)
    return specs


def _screen(session, policies) -> tuple[list, list[dict], float | None, float]:
    """The frozen baseline's head on stored augmented copies of each policy (cached features),
    over the seeds: (its specs, a row per policy, the baseline's mean without augmentation,
    one standard error of the validation split at that mean)."""
    import dataclasses

    from tl_hf.lab.grid import TrialSpec, default_learning_rate
    from tl_hf.lab.page import summarize
    from tl_hf.lab.playbook_report import score_text
    from tl_hf.lab.stages import best_of, log, stage, stage_rows
    from tl_hf.lab.winner import accuracy_objective, validation_margin

    seeds, seed = session.lab.seeds, session.base.training.seed
    rate = default_learning_rate(session.base, "frozen")
    frozen = TrialSpec("frozen", float(f"{rate:.6g}"), 0, None, "none", seed, model=session.model)
    # the frozen baseline without augmentation, on the same seeds: step 1 ran it
    nothing = [dataclasses.replace(frozen, seed=seed + i) for i in range(seeds)]
    plain = best_of(summarize(stage_rows(session, nothing), session.greater))
    specs = [
        dataclasses.replace(frozen, augment_set=screen_set(p), seed=seed + i)
        for p in policies
        for i in range(seeds)
    ]
    session.never_prune.update(s.config for s in specs)  # each policy needs its score
    screened = {r["config"]: r for r in summarize(stage(session, specs), session.greater)}
    table = []
    for p in policies:
        row = screened.get(dataclasses.replace(frozen, augment_set=screen_set(p)).config, {})
        spread = row.get("std") if seeds > 1 else None  # one seed has no spread to show
        table.append({"policy": p, "screen": row.get("mean"), "screen_std": spread})
    none_mean = plain["mean"] if plain else None
    margin = (
        validation_margin(session, none_mean)
        if none_mean is not None and accuracy_objective(session)
        else 0.0
    )
    log(
        f"augmentation screen (frozen head, {SCREEN_COPIES} stored copies): "
        + ", ".join(f"{t['policy']} {score_text(t['screen'])}" for t in table)
        + f"; none {score_text(none_mean)}"
    )
    return specs, table, none_mean, margin


def _fine_tune(session, first: dict, table: list[dict], none_mean, margin) -> tuple[list, list]:
    """The best configuration so far (`first`: one of its trial rows) on the fly with the best
    `FINE_TUNE_TOP` policies of the screen not clearly below none; fills `table`'s
    `fine_tune` column. Returns (the specs run, the policies tried)."""
    import dataclasses

    from tl_hf.lab.grid import TrialSpec
    from tl_hf.lab.page import summarize
    from tl_hf.lab.stages import stage

    ranked = sorted(
        (t for t in table if t["screen"] is not None),
        key=lambda t: t["screen"],
        reverse=session.greater,
    )
    sign = 1 if session.greater else -1  # a loss objective: lower is better
    passed = [
        t["policy"]
        for t in ranked
        if none_mean is None or sign * (t["screen"] - none_mean) >= -margin
    ][:FINE_TUNE_TOP]
    spec, seed = TrialSpec.from_attrs(first), session.base.training.seed
    fine = [
        dataclasses.replace(spec, augment_set=fine_tune_set(p), seed=seed + i)
        for p in passed
        for i in range(session.lab.seeds)
    ]
    if not fine or session.out_of_time():
        return [], passed
    session.never_prune.update(s.config for s in fine)
    done = {r["config"]: r["mean"] for r in summarize(stage(session, fine), session.greater)}
    for t in table:
        t["fine_tune"] = done.get(
            dataclasses.replace(spec, augment_set=fine_tune_set(t["policy"])).config
        )
    return fine, passed


def _previews(session, modality, policies) -> dict[str, list[str]]:
    """A few training examples beside their augmented versions, per policy (paths relative to
    the lab folder): the image grid, spectrograms, or the text pairs."""
    from tl_hf.augment.base import write_augment_preview
    from tl_hf.lab.data import prepared_for

    out = {}
    for p in policies:
        data = prepared_for(session, screen_set(p), session.model)
        if data.augmenter is None:
            continue
        folder = os.path.join(session.lab_dir, "augment_preview", p.replace("+", "_"))
        paths = write_augment_preview(
            modality,
            data.originals,
            data.augmenter,
            PREVIEW_EXAMPLES,
            session.base.training.seed,
            folder,
        )
        out[p] = [os.path.relpath(x, session.lab_dir) for x in paths]
    return out
