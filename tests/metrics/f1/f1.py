"""F1 as an `evaluate` metric module that ships inside tl-hf: per class, or averaged
(macro by default, also micro and weighted)."""

import datasets
import evaluate
import numpy as np


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 score: harmonic mean of precision and recall, macro-averaged by default.",
            citation="",
            inputs_description="predictions, references: lists of integer class ids; average: "
            "'macro' | 'micro' | 'weighted' | None; labels: class ids to report",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, average="macro", labels=None):
        from sklearn.metrics import f1_score

        if labels is None:
            labels = np.unique(np.concatenate([np.asarray(references), np.asarray(predictions)]))
        score = f1_score(references, predictions, average=average, labels=labels, zero_division=0)
        return {"f1": score.tolist() if average is None else float(score)}
