"""Calibration: temperature scaling fitted on the validation split at the end of training.

Every evaluation already fits the temperature T that minimises the validation loss of
logits / T (`tl_hf.training.metrics.fit_temperature`, the best-checkpoint rule's loss); the
best evaluation's T is the run's calibration. `calibration.json` records it with the expected
calibration error (ECE, 15 bins) before and after it on the validation split and, with the
validation T applied, on the test split (the test split never chooses T). `tl-hf predict`,
`evaluate` and `serve` divide the logits by T before the softmax; `pipeline()` on the saved
model gives the raw softmax (the card says so)."""

from __future__ import annotations

import os
from typing import Any

from tl_hf.training.metrics import (
    ECE_BINS,
    TEMPERATURE_RANGE,
    expected_calibration_error,
    soft_nll,
    softmax,
    targets_and_labels,
)

# evaluation keys computed on the test split with a temperature fitted on the test split
# itself: replaced by the ones computed with the validation temperature
TEST_FITTED = ("test_temperature", "test_ece", "test_scaled_ece", "test_scaled_loss")


def calibration_record(metrics: dict[str, Any], test_logits=None, test_labels=None) -> dict | None:
    """The run's calibration from the final model's validation evaluation (`eval_*` keys in
    `metrics`) and the test split's logits; None when the evaluation fitted no temperature
    (a run resumed from a checkpoint of an older tl-hf). Changes `metrics` in place: the
    test split's ECE before and after the validation temperature replace the self-fitted ones."""
    for key in TEST_FITTED:
        metrics.pop(key, None)
    temperature = metrics.get("eval_temperature")
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        return None
    record: dict[str, Any] = {
        "method": "temperature scaling",
        "temperature": float(temperature),
        "fitted_on": "validation",
        "bins": ECE_BINS,
        "validation": {
            "ece": metrics.get("eval_ece"),
            "ece_calibrated": metrics.get("eval_scaled_ece"),
        },
    }
    if temperature <= TEMPERATURE_RANGE[0]:
        # the model separates the validation split perfectly: its loss keeps falling as T
        # falls, so the split cannot say how far to sharpen; sharpening to the range's end
        # would make every wrong prediction on new data near-certain. Keep the raw softmax.
        temperature = 1.0
        record.update(
            temperature=1.0,
            fitted_on="validation (not identifiable: the split is separated perfectly; T = 1 kept)",
        )
        record["validation"]["ece_calibrated"] = record["validation"]["ece"]
    if test_logits is not None and test_labels is not None:
        import numpy as np

        z = np.asarray(test_logits, dtype=np.float64)
        targets, labels = targets_and_labels(test_labels, z.shape[-1])
        metrics["test_scaled_loss"] = soft_nll(z / temperature, targets)
        record["test"] = {
            "ece": expected_calibration_error(softmax(test_logits), labels),
            "ece_calibrated": expected_calibration_error(softmax(test_logits, temperature), labels),
        }
        metrics["test_ece"] = record["test"]["ece"]
        metrics["test_scaled_ece"] = record["test"]["ece_calibrated"]
    return record


def write_calibration(output_dir: str | os.PathLike, record: dict) -> None:
    from tl_hf.output.atomic import write_json
    from tl_hf.output.names import CALIBRATION_FILE

    write_json(os.path.join(output_dir, CALIBRATION_FILE), record)
