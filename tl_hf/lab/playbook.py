"""The transfer-learning playbook as a command, on the lab's trials and study:

0. with `--candidates` (or the installed ladder): rank them, carry the best (`tl_hf.lab.ladder`);
1. a frozen baseline (cached features), its diagnosis, a move along the ladder if it misfits;
2. a per-layer probe (`tl_hf.lab.probe`): where the task's information lives proposes
   `--trainable_layers` and an LLRD decay;
3. unfreezing: full fine-tuning and LLRD (with the proposed decay) at a few learning rates,
   and the frozen backbone with the proposed top blocks trainable, over seeds;
4. augmentation, on small data or when the best so far overfits: the modality's policies
   screened on a frozen head over cached augmented copies, the best one or two fine-tuned
   (`tl_hf.lab.augment_step`);
5. the winner by mean validation over seeds, rerun into a complete run folder, the only run
   scored on the test split.

Every step is written down with why it ran or was skipped and its evidence
(`playbook.json`, `playbook_report.html`, and a section of the winner's model card).
`lab --playbook` and `tl_hf.run_playbook(...)` run it; a rerun after a kill continues.
"""

from __future__ import annotations

from typing import Any

from tl_hf.config import RunArgs
from tl_hf.lab.augment_step import policy_sets, step_augment
from tl_hf.lab.grid import (
    LR_LADDER,
    LabArguments,
    TrialSpec,
    checkpoint_label,
    default_learning_rate,
)
from tl_hf.lab.ladder import climb, step_select, use_checkpoint
from tl_hf.lab.playbook_report import choice_sentence, kept_model  # noqa: F401  (the trail's words)
from tl_hf.lab.stages import best_of, log, specs_of, stage, verdict_of


def extra_strategies(
    diagnosis: dict, probe: dict | None, rows_per_class: float, known: set[str]
) -> dict[str, str]:
    """Strategies beyond full and LLRD that the evidence argues for (name -> why), among
    those the toolkit knows:
    - `lp_ft` when the probe finds the task's information at the top block (good features:
      Kumar et al. 2022 show fine-tuning from a probed head keeps them), or when the checkpoint
      declares a pooling other than the first token (its probe reads that pooling,
      `tl_hf.model.pooling`);
    - `gradual` when the baseline underfits on little data (< 100 rows per class: ULMFiT's
      gradual unfreezing guards what little data can teach against forgetting);
    - `lora` when the baseline is healthy or overfits (few trainable parameters regularise)."""
    out = {}
    if "lp_ft" in known and probe and probe["peak_depth"] == probe["num_blocks"]:
        out["lp_ft"] = (
            "the probe finds the information at the top block: good features, probe the head first"
        )
    elif "lp_ft" in known and probe and probe.get("pooling_declared") and probe["pooling"] != "cls":
        out["lp_ft"] = (
            f"the checkpoint declares {probe['pooling']} pooling: only a probe-first fine-tune "
            "starts from the features it was trained to give"
        )
    if "gradual" in known and diagnosis["verdict"] == "underfitting" and rows_per_class < 100:
        out["gradual"] = (
            f"the baseline underfits on {rows_per_class:.0f} rows per class: unfreeze gradually"
        )
    if "lora" in known and diagnosis["verdict"] in ("healthy", "overfitting"):
        out["lora"] = (
            f"the baseline is {diagnosis['verdict']}: low-rank adapters train few parameters"
        )
    return out


def _known_strategies() -> set[str]:
    from tl_hf.strategies.base import strategy_names

    return set(strategy_names())


def _probe(session) -> dict[str, Any]:
    """Step 2 on the baseline's data: the base model, frozen, one pass with hidden states."""
    from tl_hf.lab.data import prepared_for
    from tl_hf.lab.probe import run_probe
    from tl_hf.pipeline import load_model_step, plan_run

    base = session.base
    data = prepared_for(session, "none", session.model)
    plan = plan_run(base)
    model = load_model_step(plan, data)
    result = run_probe(
        model,
        data.features,
        plan.modality.build_collator(data.processor),
        plan.model_path,
        base.training.per_device_eval_batch_size,
        base.training.seed,
    )
    return {
        "depths": result.depths,
        "accuracy": result.accuracy,
        "pooling": result.pooling,
        "pooling_declared": result.pooling_declared,
        "num_blocks": result.num_blocks,
        **result.proposal,
    }


def run_playbook_with_args(base: RunArgs, lab: LabArguments, dataset=None):
    """The five steps (module docstring) on one study; returns the lab's `LabResult`."""
    import dataclasses

    from tl_hf.lab.playbook_report import write_playbook
    from tl_hf.lab.session import finish, open_session, run_specs
    from tl_hf.modalities.base import get_modality

    augment_sets = ["none", *lab.augment_sets, *policy_sets(get_modality(base.modality))]
    lab = dataclasses.replace(lab, augment_sets=list(dict.fromkeys(augment_sets)))
    session = open_session(base, lab, dataset)
    trail: list[dict[str, Any]] = []
    ladder = step_select(session, trail)
    specs, diagnosis = _step_baseline(session, trail, ladder)
    reference = _reference_specs(session)  # on the checkpoint the baseline step kept
    session.reference = reference[0].config
    if ladder and len(ladder.carried) > 1:  # the other carried checkpoint: its recipe default
        reference += [
            dataclasses.replace(s, model=m) for m in ladder.carried[1:] for s in reference
        ]
    probe = _step_probe(session, trail)
    specs += _step_unfreeze(session, trail, diagnosis, probe, reference)
    specs += step_augment(session, trail)
    winner = run_specs(session, specs, then_winner=True)
    result = finish(session, specs, winner)
    trail.append(
        {
            "step": "5. winner",
            "ran": result.winner is not None,
            "why": "the best mean validation over seeds across every step"
            + (
                f" (of the trials finished within the time budget; {len(result.skipped)} not "
                "started: rerun the command to finish them and choose again)"
                if result.skipped
                else ""
            )
            + "; "
            + choice_sentence(result.winner.get("choice"))
            + "rerun into a complete run folder, the only run scored on the test split; "
            + kept_model(result.winner)
            if result.winner
            else "no winner: no configuration completed within the time budget",
            "result": result.winner,
        }
    )
    write_playbook(session, result, trail, probe)
    return result


def _reference_specs(session) -> list[TrialSpec]:
    """The recipe's own default configuration (its strategy at its default rate and decay, and
    the augmentation the recipe gives this data, `recipe_augment_set`), over the playbook's
    seeds: the reference the winner must beat (`choose_winner`)."""
    from tl_hf.lab.augment_step import recipe_augment_set

    base = session.base
    strategy = base.strategy.strategy
    decay = base.strategy.llrd_decay if strategy == "llrd" else None
    return specs_of(
        strategy,
        [default_learning_rate(base, strategy)],
        session.lab.seeds,
        base.training.seed,
        decay=decay,
        augment=recipe_augment_set(session),
        model=session.model,
    )


def _skipped(trail: list, step: str, why: str) -> list:
    trail.append({"step": step, "ran": False, "why": why})
    return []


def _step_baseline(session, trail: list, ladder) -> tuple[list[TrialSpec], dict]:
    """1. The frozen backbone with a new head (cached features) on each carried checkpoint,
    the best one's diagnosis, and a move along the ladder (`tl_hf.lab.ladder.climb`)."""
    from tl_hf.lab.page import summarize

    base = session.base
    rate = default_learning_rate(base, "frozen")
    specs: list[TrialSpec] = []

    def baseline(model):
        """The frozen baseline of `model` (run once), its summary row."""
        new = specs_of("frozen", [rate], session.lab.seeds, base.training.seed, 0, model=model)
        specs.extend(s for s in new if s not in specs)
        return best_of(summarize(stage(session, new), session.greater))

    models = ladder.carried if ladder else [None]
    results = {m: baseline(m) for m in models}
    ranked = sorted(
        (m for m in models if results[m]),
        key=lambda m: results[m]["mean"],
        reverse=session.greater,
    )
    primary = ranked[0] if ranked else models[0]
    rows = stage(session, [s for s in specs if s.model == primary])
    diagnosis = verdict_of(session, rows)
    trail.append(
        {
            "step": "1. frozen baseline",
            "ran": True,
            "why": "the playbook starts from the cheapest model: the backbone as it is, a new head"
            + (
                f" (on {', '.join(map(checkpoint_label, models))}; the best: "
                f"{checkpoint_label(primary)})"
                if ladder
                else ""
            ),
            "configs": [c["config"] for c in summarize(rows, session.greater)],
            "result": results[primary],
            "diagnosis": diagnosis,
        }
    )
    log(f"baseline: {diagnosis['verdict']}")
    if ladder:
        kept = climb(session, trail, ladder, primary, diagnosis, baseline)
        use_checkpoint(session, kept)
    return specs, diagnosis


def _step_probe(session, trail: list) -> dict | None:
    """2. Where the task's information lives: a linear probe per block."""
    from tl_hf.lab.probe import CannotProbe

    if session.out_of_time():
        return _skipped(trail, "2. per-layer probe", "the time budget ran out") or None
    try:
        probe = _probe(session)
    except CannotProbe as err:
        return _skipped(trail, "2. per-layer probe", str(err)) or None
    where = (
        "the top block"
        if probe["peak_depth"] == probe["num_blocks"]
        else f"depth {probe['peak_depth']}"
    )
    trail.append(
        {
            "step": "2. per-layer probe",
            "ran": True,
            "probe": probe,
            "why": f"a linear probe per block on {probe['pooling']} pooling"
            + (" (declared by the checkpoint)" if probe["pooling_declared"] else "")
            + f": the information peaks at {where} (accuracy {probe['best_accuracy']:.3f}); proposed "
            f"--trainable_layers {probe['trainable_layers']}, --llrd_decay {probe['llrd_decay']}",
        }
    )
    return probe


def _step_unfreeze(
    session, trail: list, diagnosis: dict, probe: dict | None, reference: list[TrialSpec]
) -> list[TrialSpec]:
    """3. Full and LLRD at a ladder of rates, the probe's proposal, the strategies argued for,
    and the recipe's own default (the reference)."""
    from tl_hf.lab.data import rows_per_class
    from tl_hf.lab.page import summarize

    if session.out_of_time():
        return _skipped(trail, "3. unfreeze", "the time budget ran out")
    base, seeds, seed = session.base, session.lab.seeds, session.base.training.seed
    decay = probe["llrd_decay"] if probe else base.strategy.llrd_decay
    specs = []
    for strategy in ("full", "llrd"):
        rate = default_learning_rate(base, strategy)
        specs += specs_of(
            strategy,
            [rate * f for f in LR_LADDER],
            seeds,
            seed,
            decay=decay if strategy == "llrd" else None,
            model=session.model,
        )
    why = (
        f"the baseline is {diagnosis['verdict']}: unfreeze (full at 1/3, 1 and 3 times its default rate; "
        f"LLRD with decay {decay} likewise"
    )
    if probe:
        specs += specs_of(
            "frozen",
            [default_learning_rate(base, "frozen")],
            seeds,
            seed,
            layers=probe["trainable_layers"],
            model=session.model,
        )
        why += f"; frozen with the top {probe['trainable_layers']} block(s) trainable, as the probe proposes"
    per_class = rows_per_class(session)
    for name, reason in extra_strategies(diagnosis, probe, per_class, _known_strategies()).items():
        specs += specs_of(
            name, [default_learning_rate(base, name)], seeds, seed, model=session.model
        )
        why += f"; {name}: {reason}"
    # the recipe default runs first: the pruner spares a study's first trials, and the
    # reference must finish to be weighed against the best (`choose_winner`)
    specs = reference + [s for s in specs if s.key not in {r.key for r in reference}]
    why += f"; first the recipe default ({reference[0].config}), the reference to beat"
    rows = stage(session, specs)
    trail.append(
        {
            "step": "3. unfreeze",
            "ran": True,
            "why": why + ")",
            "configs": sorted({s.config for s in specs}),
            "result": best_of(summarize(rows, session.greater)),
        }
    )
    return specs
