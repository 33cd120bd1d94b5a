"""Reading a finished run's output folder (results, groups, run config, labels, history,
diagnosis, predictions) and the tables the HTML report and the card share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tl_hf.output.names import CALIBRATION_FILE
from tl_hf.report.history import DIAGNOSIS_FILE, PREDICTIONS_FILE, load_history


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        return {}
    import yaml

    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}


def load_run(output_dir: Path, results: dict | None = None) -> dict[str, Any]:
    """The files of a run's folder; `results` stands in for `all_results.json`, which a
    run writes last (it marks the folder finished) after the card and report built from it."""
    config = read_json(output_dir / "config.json", {})
    id2label = config.get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=lambda k: int(k))]
    return {
        "results": results
        if results is not None
        else read_json(output_dir / "all_results.json", {}),
        "groups": read_json(output_dir / "param_groups.json", []),
        "run": read_yaml(output_dir / "run_config.yaml"),
        "config": config,
        "labels": labels,
        "history": load_history(output_dir),
        "diagnosis": read_json(output_dir / DIAGNOSIS_FILE),
        "predictions": read_json(output_dir / PREDICTIONS_FILE),
        "calibration": read_json(output_dir / CALIBRATION_FILE),
    }


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


PER_CLASS_HEADER = ["label", "precision", "recall", "f1", "support"]


def per_class_rows(results: dict, key: str = "test_per_class") -> list[list[Any]]:
    """A per-class report (the test split's by default) as table rows (report.html, the card,
    an evaluation's page)."""
    return [
        [name, m.get("precision"), m.get("recall"), m.get("f1"), m.get("support")]
        for name, m in (results.get(key) or {}).items()
    ]


def metric_rows(results: dict) -> list[list[Any]]:
    rows = []
    for key, value in results.items():
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and key.split("_", 1)[0] in ("train", "eval", "test")
        ):
            rows.append([key, value])
    return rows


def calibration_lines(record: dict | None) -> list[str]:
    """The run's calibration (`calibration.json`, `tl_hf.infer.calibrate`) in one sentence
    per split, for the card and the report."""
    if not record:
        return []
    lines = [
        f"Probabilities are calibrated by temperature scaling (T = {record['temperature']:.3g}, "
        "fitted on the validation split): `tl-hf predict`, `evaluate` and `serve` divide the "
        "logits by T; `pipeline()` gives the raw softmax."
    ]
    for split in ("validation", "test"):
        values = record.get(split) or {}
        if isinstance(values.get("ece"), float) and isinstance(values.get("ece_calibrated"), float):
            lines.append(
                f"Expected calibration error on the {split} split: {values['ece']:.4f} raw, "
                f"{values['ece_calibrated']:.4f} after temperature scaling."
            )
    return lines
