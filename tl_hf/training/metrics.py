"""The metrics of every evaluation: accuracy, macro-F1, the cross-entropy loss and the loss
after temperature scaling (the best-checkpoint rule, docs/defaults.md) from the gathered
logits, and the per-class report of the test split."""

from __future__ import annotations

# The temperatures temperature scaling searches (1/20 .. 20): the range bench/size_evidence.py
# replayed the rule on.
TEMPERATURE_RANGE = (0.05, 20.0)
# Bins of the expected calibration error (the usual 15 of Guo et al. 2017).
ECE_BINS = 15


def compute_metrics(eval_pred) -> dict[str, float]:
    """Accuracy, macro-F1 and the cross-entropy loss, all from the gathered logits.

    Accuracy and F1 are counted with numpy, as the `evaluate` modules shipped in
    `metrics` compute them (F1 over the classes that occur in labels or predictions, 0
    where undefined): loading those modules and scikit-learn cost every run a second or two.

    The loss returned here replaces the Trainer's `eval_loss`, which averages per-batch mean
    losses: under several processes the last batch of an odd-sized split is padded with
    repeated examples, and their losses leak into those batch means (the logits of the
    padding are dropped by `gather_for_metrics`, the batch means are not). From the logits,
    every example counts exactly once on any number of processes.
    """
    import numpy as np

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    logits = np.asarray(logits, dtype=np.float64)
    predictions = logits.argmax(-1)
    targets, labels = targets_and_labels(labels, logits.shape[-1])
    temperature = fit_temperature(logits, targets)
    present = np.union1d(labels, predictions).astype(np.int64)
    _, _, f1, _ = _per_class_counts(predictions, labels, present)
    return {
        "loss": soft_nll(logits, targets),
        "accuracy": float((predictions == labels).mean()),
        "f1": float(f1.mean()),
        "scaled_loss": soft_nll(logits / temperature, targets),
        # the temperature of that loss, and the calibration error before and after it: the
        # best evaluation's are the run's calibration (tl_hf.infer.calibrate)
        "temperature": temperature,
        "ece": expected_calibration_error(softmax(logits), labels),
        "scaled_ece": expected_calibration_error(softmax(logits, temperature), labels),
    }


def targets_and_labels(labels, num_classes: int):
    """(a distribution over the classes per example, the class per example) from hard labels
    or soft ones (mixup: soft cross-entropy, scored against the dominant class)."""
    import numpy as np

    labels = np.asarray(labels)
    if labels.ndim > 1:
        return labels.astype(np.float64), labels.argmax(-1)
    return np.eye(num_classes)[labels.astype(np.int64)], labels


def soft_nll(logits, targets) -> float:
    """Mean cross-entropy of `logits` against per-example target distributions."""
    return float(-(targets * log_softmax(logits)).sum(-1).mean())


def fit_temperature(logits, targets, steps: int = 40) -> float:
    """The temperature T (within TEMPERATURE_RANGE) that minimises the cross-entropy of
    logits / T against `targets` (one row per example, a distribution over the classes).

    The loss is convex in b = 1/T (a log-sum-exp minus a linear term), and its derivative
    mean(E_softmax(b z)[z] - E_target[z]) increases with b: bisection on its sign (in log b)
    finds the minimum, or the end of the range it lies beyond (a split the model separates
    perfectly keeps lowering the loss as T falls).
    """
    import numpy as np

    z = np.asarray(logits, dtype=np.float64)
    target_mean = (targets * z).sum(-1)

    def slope(b: float) -> float:
        return float(((softmax(z, 1 / b) * z).sum(-1) - target_mean).mean())

    lo, hi = np.log(1 / TEMPERATURE_RANGE[1]), np.log(1 / TEMPERATURE_RANGE[0])
    if slope(np.exp(lo)) >= 0:
        return TEMPERATURE_RANGE[1]
    if slope(np.exp(hi)) <= 0:
        return TEMPERATURE_RANGE[0]
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if slope(np.exp(mid)) < 0 else (lo, mid)
    return float(1 / np.exp((lo + hi) / 2))


def expected_calibration_error(probabilities, labels, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the confidence (top probability) of each example binned
    in `bins` equal-width bins, |accuracy - mean confidence| per bin weighted by its share."""
    import numpy as np

    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    confidence, predicted = probabilities.max(-1), probabilities.argmax(-1)
    correct = (predicted == labels).astype(np.float64)
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(labels))


def log_softmax(logits, temperature: float = 1.0):
    """log softmax(logits / temperature) over the last axis, in float64."""
    import numpy as np

    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def softmax(logits, temperature: float = 1.0):
    """softmax(logits / temperature) over the last axis, in float64."""
    import numpy as np

    return np.exp(log_softmax(logits, temperature))


def _per_class_counts(predictions, labels, classes):
    """Precision, recall, F1 (0 where undefined) and support of each class in `classes`."""
    import numpy as np

    predictions, labels = np.asarray(predictions), np.asarray(labels)
    hit = predictions[:, None] == classes[None, :]
    true = labels[:, None] == classes[None, :]
    tp = (hit & true).sum(0)
    predicted, support = hit.sum(0), true.sum(0)

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros(len(classes)), where=b > 0)

    f1 = ratio(2 * tp, predicted + support)
    return ratio(tp, predicted), ratio(tp, support), f1, support


def per_class_report(predictions, labels, names: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support for every class."""
    import numpy as np

    p, r, f, s = _per_class_counts(predictions, labels, np.arange(len(names)))
    return {
        n: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, n in enumerate(names)
    }
