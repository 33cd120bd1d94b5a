"""The playbook's decision trail: `playbook.json`, `playbook_report.html` (each step, why it
ran or was skipped, the evidence: probe plot, tables, curves; the final recipe as a command)
and a section of the winner's model card."""

from __future__ import annotations

import html
import os

from tl_hf.report.folder import fmt


def _probe_chart(probe: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tl_hf.lab.page import _png

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(probe["depths"], probe["accuracy"], "o-", color="tab:purple")
    ax.axvline(probe["peak_depth"], color="tab:green", ls="--", lw=1.2)
    ax.annotate(
        f"information peaks here (depth {probe['peak_depth']})",
        xy=(probe["peak_depth"], probe["best_accuracy"]),
        xytext=(8, -24),
        textcoords="offset points",
        color="tab:green",
        fontsize=8,
    )
    ax.set_xlabel("depth (0 = embeddings, L = last block)")
    ax.set_ylabel("linear probe, validation accuracy")
    ax.set_title(
        f"Per-layer probe ({probe['pooling']} pooling"
        + (", declared by the checkpoint)" if probe["pooling_declared"] else ")")
    )
    ax.set_xticks(list(probe["depths"]))  # whole blocks only
    ax.grid(alpha=0.3)
    return _png(fig)


def _selection_chart(selection: dict, carried: list[str]) -> str:
    """Probe accuracy against size, one point per candidate (the carried ones filled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tl_hf.lab.page import _png

    fig, ax = plt.subplots(figsize=(8, 3.6))
    from tl_hf.lab.grid import checkpoint_label

    for s in selection["scores"]:
        size, accuracy = s["parameters"] / 1e6, s["probe_accuracy"]
        name = checkpoint_label(s["name"])
        kept = name in carried
        ax.plot(size, accuracy, "o", ms=9, color="tab:green" if kept else "tab:gray")
        ax.annotate(
            f"#{s['rank']} {name}", (size, accuracy), xytext=(6, 6), textcoords="offset points"
        )
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("linear probe, validation accuracy")
    ax.set_title("Checkpoint selection: score vs size (green: carried into the next steps)")
    ax.margins(x=0.25, y=0.25)
    ax.grid(alpha=0.3)
    return _png(fig)


def _selection_parts(selection: dict, carried: list[str]) -> list[str]:
    from tl_hf.lab.grid import checkpoint_label
    from tl_hf.lab.page import _table

    rows = [
        [
            s["rank"],
            checkpoint_label(s["name"]),
            s["probe_accuracy"],
            s["logme"],
            f"{s['parameters'] / 1e6:.2f}M",
        ]
        + [s["ms_per_example"]]
        for s in selection["scores"]
    ]
    header = ["rank", "candidate", "probe accuracy", "LogME", "parameters", "ms/example"]
    return [_selection_chart(selection, carried), _table(rows, header)]


def _result_line(result: dict | None) -> str:
    if not result:
        return ""
    return (
        f"<p>Best: <b>{html.escape(result['config'])}</b>, validation {fmt(result.get('mean'))} +- "
        f"{fmt(result.get('std'))} over {result.get('complete')} seed(s).</p>"
    )


def card_section(trail: list[dict], winner: dict | None, objective: str) -> str:
    """Markdown for the winner's model card: how the playbook chose this model."""
    lines = ["## How this model was chosen (tl-hf playbook)", ""]
    for step in trail:
        lines.append(f"- **{step['step']}** ({'ran' if step['ran'] else 'skipped'}): {step['why']}")
        if step.get("policies"):
            rows = [{"policy": "none", **step["none"]}, *step["policies"]]
            lines.append(
                "  - validation, the frozen head (on stored augmented copies) / fine-tuned on the fly:"
            )
            lines += [
                f"    - {t['policy']} {score_text(t['screen'])} / {score_text(t.get('fine_tune'))}"
                for t in rows
            ]
    if winner:
        lines += [
            "",
            f"Winner: `{winner['config']}`, validation {objective} {winner['mean']:.4f} +- "
            f"{winner['std']:.4f} over {winner['complete']} seed(s). Reproduce it:",
            "",
            "```bash",
            winner["command"],
            "```",
        ]
    return "\n".join(lines) + "\n"


def write_playbook(session, result, trail: list[dict], probe: dict | None) -> str:
    """Write playbook.json and playbook_report.html; add the trail to the winner's card."""
    from tl_hf.lab.page import _charts, _summary_table, write_page
    from tl_hf.output.save import write_json

    lab_dir, objective = session.lab_dir, session.lab.objective
    write_json(
        os.path.join(lab_dir, "playbook.json"),
        {"trail": trail, "probe": probe, "winner": result.winner},
    )
    parts = [
        "<h1>tl-hf playbook: the decision trail</h1>",
        f"<p>Every step below says why it ran or was skipped; selection uses validation "
        f"{html.escape(objective)} only.</p>",
    ]
    for step in trail:
        parts += _step_parts(step, lab_dir)
    if probe and probe.get("pooling_declared"):
        parts.append(_pooling_part(probe, result.winner))
    parts += [
        "<h2>Every trial</h2>",
        _charts(result.rows, result.summary, objective),
        _summary_table(result.summary, objective, not_run=False),
    ]
    path = os.path.join(lab_dir, "playbook_report.html")
    write_page(path, "tl-hf playbook", "".join(parts))
    if result.winner and os.path.isfile(os.path.join(result.winner["folder"], "README.md")):
        _add_to_card(os.path.join(result.winner["folder"], "README.md"), trail, result, objective)
    return path


def _step_parts(step: dict, lab_dir: str) -> list[str]:
    """One step of the trail: why it ran or was skipped, its diagnosis, probe and result (the
    last step's with the winner's test metrics and the final recipe)."""
    from tl_hf.lab.page import _table, _test_metrics

    parts = [
        f"<h2>{html.escape(step['step'])} ({'ran' if step['ran'] else 'skipped'})</h2>"
        f"<p>{html.escape(step['why'])}</p>"
    ]
    diagnosis = step.get("diagnosis")
    if diagnosis:
        parts.append(
            f"<p>Diagnosis: <b>{html.escape(diagnosis['verdict'])}</b></p><ul>"
            + "".join(f"<li>{html.escape(r)}</li>" for r in diagnosis.get("reasons", []))
            + "</ul>"
        )
    if step.get("selection"):
        parts += _selection_parts(step["selection"], step.get("carried", []))
    if step.get("probe"):
        p = step["probe"]
        parts.append(_probe_chart(p))
        parts.append(
            _table(
                [[d, a] for d, a in zip(p["depths"], p["accuracy"], strict=True)],
                ["depth", "probe accuracy"],
            )
        )
    if step.get("policies"):
        parts += _augmentation_parts(step, lab_dir)
    if step["step"].startswith("5") and step.get("result"):
        w = step["result"]
        parts.append(_result_line(w))
        if w.get("test_metrics"):
            parts.append(_test_metrics(w["test_metrics"]))
        parts.append(f"<p>The final recipe:</p><pre>{html.escape(w['command'])}</pre>")
    else:
        parts.append(_result_line(step.get("result")))
    return parts


def _augmentation_parts(step: dict, lab_dir: str) -> list[str]:
    """Step 4's evidence: each policy's validation score on the cheap screen and fine-tuned,
    beside none, and a preview of what each policy does to a few training examples."""
    import json

    from tl_hf.lab.page import _table
    from tl_hf.report.html_report import img_tag

    none = step["none"]
    rows = [["none", score_text(none["screen"]), score_text(none["fine_tune"])]]
    rows += [
        [
            t["policy"],
            score_text(t["screen"], t.get("screen_std")),
            score_text(t.get("fine_tune")),
        ]
        for t in step["policies"]
    ]
    parts = [
        _table(
            rows,
            [
                "policy",
                "frozen head, stored augmented copies (validation)",
                f"fine-tuned on the fly: {none['config']} (validation)"
                if none["fine_tune"] is not None
                else "fine-tuned on the fly (not run)",
            ],
        ),
        f"<p>One standard error of the validation split: {step['margin']:.3f}.</p>",
    ]
    for policy, paths in step.get("previews", {}).items():
        shown = []
        for rel in paths:
            path = os.path.join(lab_dir, rel)
            if rel.endswith(".png"):
                with open(path, "rb") as f:
                    shown.append(img_tag(f.read(), f"{policy} preview"))
            elif rel.endswith(".wav"):
                shown.append(f'<audio controls src="{html.escape(rel)}"></audio>')
            elif rel.endswith(".jsonl"):
                with open(path, encoding="utf-8") as f:
                    pairs = [json.loads(line) for line in f if line.strip()]
                shown.append(
                    _table(
                        [[p["original"], p["augmented"]] for p in pairs], ["original", "augmented"]
                    )
                )
        parts.append(  # side by side: one column per policy
            '<div style="display:inline-block;vertical-align:top;margin-right:2em">'
            f"<h3>{html.escape(policy)}: a preview</h3>" + "".join(shown) + "</div>"
        )
    return parts


def score_text(mean, std=None) -> str:
    """A validation score as the trail shows it: 0.842, 0.842 +- 0.012, or - when none."""
    if mean is None:
        return "-"
    return f"{mean:.3f}" + (f" +- {std:.3f}" if std is not None else "")


def _pooling_part(probe: dict, winner: dict | None) -> str:
    """The pooling the checkpoint declares, which the probe used, and what the kept model reads."""
    kept = kept_model(winner) if winner else ""
    return (
        "<h2>Pooling</h2><p>The checkpoint declares "
        f"{html.escape(probe['pooling'])} pooling (sentence-transformers); the probe uses it."
        + (f" {html.escape(kept[0].upper() + kept[1:])}." if kept else "")
        + "</p>"
    )


def _add_to_card(card: str, trail: list[dict], result, objective: str) -> None:
    """Put the trail in the winner's model card, in place of an earlier trail."""
    from tl_hf.output.atomic import write_text

    with open(card, encoding="utf-8") as f:
        text = f.read()
    marker = "## How this model was chosen (tl-hf playbook)"
    text = text.split(marker)[0].rstrip() + "\n\n" + card_section(trail, result.winner, objective)
    write_text(card, text)


def choice_sentence(choice: dict | None) -> str:
    """How `choose_winner` chose, in words ("" when the best simply won)."""
    if not choice:
        return ""
    said = _augmentation_sentence(choice.get("augmentation"))
    if "reference" not in choice:
        return said
    if choice["reference_mean"] is None:
        return said + (
            f"the recipe default ({choice['reference']}) was pruned or did not finish, so the "
            "best is kept without that comparison; "
        )
    if "best" not in choice:
        return said + (
            f"the recipe default ({choice['reference']}, {choice['reference_mean']:.3f}) was the "
            "best configuration: nothing tried beat it; "
        )
    numbers = (
        f"{choice['best']} {choice['best_mean']:.3f} vs the recipe default {choice['reference']} "
        f"{choice['reference_mean']:.3f}, one standard error on {choice['validation_rows']} "
        f"validation rows {choice['margin']:.3f}"
    )
    if choice["kept_reference"]:
        return said + (
            "the recipe default is kept: the best beats it by no more than the validation split "
            f"can resolve ({numbers}); "
        )
    return said + f"the best beats the recipe default by more than one standard error ({numbers}); "


def _augmentation_sentence(weighed: dict | None) -> str:
    if not weighed:
        return ""
    numbers = (
        f"{weighed['augmented']} {weighed['augmented_mean']:.3f} vs {weighed['plain']} "
        f"{weighed['plain_mean']:.3f}, one standard error {weighed['margin']:.3f}"
    )
    if weighed["kept_augmentation"]:
        return f"the augmentation is kept: it beats the same configuration without it by more than one standard error ({numbers}); "
    return f"no augmentation is kept: the best augmented configuration beats the same one without augmentation by no more than the validation split can resolve ({numbers}); "


def kept_model(winner: dict) -> str:
    """Which model the winner's folder keeps, as for pooling (`tl_hf.model.pooling`)."""
    if winner.get("pooling") == "mean":
        return (
            "the kept model reads the masked mean of the tokens (the pooling the checkpoint "
            "declares) through a pooling block appended to its encoder: a stock transformers "
            "class that pipeline() loads"
        )
    return "the kept model is the stock transformers class, its head on the first token"
