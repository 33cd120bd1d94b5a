"""The playbook's checkpoints: step 0 ranks the candidates, step 1 climbs the model ladder.

0. With `--candidates` (or, when no checkpoint is named, the modality's installed ladder,
   `tl_hf.embedded.ladder`): rank them on frozen features (`tl_hf.select`); carry the top one,
   and the second too when the ranking found it tied with the top one (probe accuracies within
   one binomial standard error of the validation split: a difference it cannot resolve).
1. After the frozen baselines of the carried checkpoints, the best one's diagnosis moves along
   the ladder (DESIGN: underfitting -> a bigger model, overfitting -> a smaller one): the next
   larger (or smaller) candidate by parameters gets a baseline too, and replaces the best when
   its baseline is better. The unfreezing step then runs on the best checkpoint, and the
   recipe default on the other carried one.

The ranking is stored in the study (`selection` user attribute), so a rerun after a kill, or
a second worker, continues with the same checkpoints instead of ranking again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tl_hf.console import say


@dataclass
class Ladder:
    """The ranked candidates (best first), their sizes and paths, and which ones are carried."""

    ranked: list[str]
    parameters: dict[str, int]
    carried: list[str]
    tried: list[str] = field(default_factory=list)

    def next_along(self, verdict: str, current: str) -> str | None:
        """The candidate the diagnosis of `current` points to: the smallest one larger than it
        (underfitting) or the largest one smaller (overfitting), among those not tried."""
        size = self.parameters[current]
        left = [n for n in self.ranked if n not in self.tried]
        if verdict == "underfitting":
            larger = [n for n in left if self.parameters[n] > size]
            return min(larger, key=self.parameters.get) if larger else None
        if verdict == "overfitting":
            smaller = [n for n in left if self.parameters[n] < size]
            return max(smaller, key=self.parameters.get) if smaller else None
        return None


def _log(message: str) -> None:
    say(message, who="tl-hf lab")


def playbook_candidates(base) -> list[str] | None:
    """`--candidates`, else the installed ladder of the modality when no checkpoint was named
    (two or more rungs), else None: the playbook runs on its one checkpoint."""
    from tl_hf.embedded.ladder import ladder_for

    if base.model.candidates:
        return list(base.model.candidates)
    if "model_name_or_path" in base.explicit:
        return None
    ladder = ladder_for(base.modality, note=_log)
    return ladder if len(ladder) >= 2 else None


def carried(scores: list[dict]) -> list[str]:
    """The top candidate, and the second when the ranking found it tied with the pick (within
    one binomial standard error of the validation split, `tl_hf.select.rank`)."""
    close = len(scores) > 1 and scores[1]["tied_with_best"]
    return [scores[0]["name"], scores[1]["name"]] if close else [scores[0]["name"]]


def _rank(session, names: list[str]) -> dict[str, Any]:
    """Rank `names` on the session's data (`tl_hf.select`), write `selection.json` in the lab
    folder and return what the study keeps."""
    from tl_hf.select.api import select_with_args, write_selection

    base = session.base
    args = dataclasses.replace(
        base, model=dataclasses.replace(base.model, candidates=names, model_name_or_path=None)
    )
    selection = select_with_args(args, session.dataset)
    write_selection(selection, session.lab_dir)
    scores = [s.as_dict() for s in selection.scores]  # names as given (paths resolve them)
    return {
        "given": names,
        "ranked": [s["name"] for s in scores],
        "scores": scores,
        "validation_rows": selection.validation_rows,
        "rule": selection.rule,
        "seconds": selection.seconds,
        "left_out": [{"name": n, "reason": why} for n, why in selection.left_out],
    }


def _labels(names: list[str]) -> list[str]:
    """The candidates' labels (`checkpoint_label`), which must differ: configurations are
    told apart by them."""
    from tl_hf.errors import UserError
    from tl_hf.lab.grid import checkpoint_label

    labels = [checkpoint_label(n) for n in names]
    same = sorted({label for label in labels if labels.count(label) > 1})
    if same:
        raise UserError(
            f"--candidates: two folders end in {', '.join(same)}: the playbook names "
            "checkpoints by their last folder name; rename or link one of them"
        )
    return labels


def step_select(session, trail: list) -> Ladder | None:
    """Step 0 (module docstring); None when the playbook has one checkpoint. Points the
    session at the top candidate (`use_checkpoint`)."""
    names = playbook_candidates(session.base)
    if names is None:
        trail.append(
            {
                "step": "0. checkpoint selection",
                "ran": False,
                "why": "one checkpoint was named (or the modality has no installed ladder): "
                "give --candidates A B C to rank several",
            }
        )
        return None
    _labels(names)
    stored = session.study.user_attrs.get("selection")
    if stored and stored.get("given") == names:
        _log("checkpoint ranking: the study's (this lab ranked these candidates before)")
        record = stored
    else:
        record = _rank(session, names)
        session.study.set_user_attr("selection", record)
    ladder = Ladder(
        ranked=record["ranked"],
        parameters={s["name"]: s["parameters"] for s in record["scores"]},
        carried=carried(record["scores"]),
    )
    from tl_hf.lab.grid import checkpoint_label

    source = "--candidates" if session.base.model.candidates else "the modality's ladder"
    ladder.tried = list(ladder.carried)
    use_checkpoint(session, ladder.carried[0])
    left_out = "".join(
        f"; left out: {checkpoint_label(c['name'])} "
        f"({c['reason'].replace(c['name'], checkpoint_label(c['name']))})"
        for c in record["left_out"]
    )
    trail.append(
        {
            "step": "0. checkpoint selection",
            "ran": True,
            "why": f"{len(record['ranked'])} candidates ({source}) ranked on frozen features of "
            f"the training and validation rows; rule: {record['rule']}; carried: "
            + " and ".join(map(checkpoint_label, ladder.carried))
            + (
                " (the second's probe accuracy is within one standard error of the first's)"
                if len(ladder.carried) > 1
                else ""
            )
            + left_out,
            "selection": record,
            "carried": [checkpoint_label(n) for n in ladder.carried],
        }
    )
    return ladder


def use_checkpoint(session, name: str) -> None:
    """Run the session's main steps (probe, unfreezing, the reference) on candidate `name`."""
    from tl_hf.lab.grid import checkpoint_path

    base = session.base
    model = dataclasses.replace(
        base.model, model_name_or_path=checkpoint_path(base.modality, name), candidates=None
    )
    session.base = dataclasses.replace(
        base, model=model, explicit=base.explicit | {"model_name_or_path"}
    )
    session.model = name


def climb(session, trail: list, ladder: Ladder, primary: str, diagnosis: dict, baseline) -> str:
    """Step 1's move along the ladder: the diagnosis of the best baseline (`primary`) names
    the next candidate; its baseline runs (`baseline(name)` -> its summary row) and it is kept
    when it beats `primary`'s. Returns the checkpoint the next steps run on."""
    from tl_hf.lab.grid import checkpoint_label as label

    verdict = diagnosis["verdict"]
    step = "1b. model ladder"
    nxt = ladder.next_along(verdict, primary)
    if nxt is None:
        why = (
            f"the best baseline ({label(primary)}) is {verdict}: no move along the ladder"
            if verdict not in ("underfitting", "overfitting")
            else f"the best baseline ({label(primary)}) is {verdict}, and no "
            f"{'larger' if verdict == 'underfitting' else 'smaller'} candidate is left"
        )
        trail.append({"step": step, "ran": False, "why": why})
        return primary
    if session.out_of_time():
        trail.append({"step": step, "ran": False, "why": "the time budget ran out"})
        return primary
    ladder.tried.append(nxt)
    direction = "larger" if verdict == "underfitting" else "smaller"
    before, after = baseline(primary), baseline(nxt)
    better = (
        after is not None
        and before is not None
        and ((after["mean"] > before["mean"]) == session.greater)
        and after["mean"] != before["mean"]
    )
    if better:
        ladder.carried = [nxt, primary]
    kept = nxt if better else primary
    trail.append(
        {
            "step": step,
            "ran": True,
            "why": f"the best baseline ({label(primary)}) is {verdict}: the next {direction} "
            f"candidate ({label(nxt)}, {ladder.parameters[nxt] / 1e6:.2f}M parameters against "
            f"{ladder.parameters[primary] / 1e6:.2f}M) got a frozen baseline too; kept: "
            f"{label(kept)}" + (" (its baseline is better)" if better else " (it did not beat it)"),
            "result": after,
        }
    )
    return kept
