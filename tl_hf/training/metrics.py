"""The metrics of every evaluation: accuracy, macro-F1 and the cross-entropy loss from the
gathered logits, and the per-class report of the test split."""

from __future__ import annotations


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
    labels = np.asarray(labels)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    if (
        labels.ndim > 1
    ):  # soft labels (mixup): soft cross-entropy, scored against the dominant class
        loss = -(labels * log_probs).sum(-1).mean()
        labels = labels.argmax(-1)
    else:
        loss = -np.take_along_axis(log_probs, labels[:, None].astype(np.int64), -1).mean()
    present = np.union1d(labels, predictions).astype(np.int64)
    _, _, f1, _ = _per_class_counts(predictions, labels, present)
    return {
        "loss": float(loss),
        "accuracy": float((predictions == labels).mean()),
        "f1": float(f1.mean()),
    }


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
