"""The scores of a candidate and the rule that ranks the candidates.

The rule (also written into `selection.json` and docs/select.md): the highest linear-probe
validation accuracy wins; candidates whose accuracy is within one binomial standard error of
the best remaining one's, sqrt(p (1 - p) / n) on the n validation rows (at least one example,
1 / n), count as tied, and the tie goes to the larger checkpoint (more parameters), then the
higher LogME on the training features, then the faster forward pass.

Why: the probe is what a frozen head reaches on these rows, measured on rows it did not fit,
but a small validation split resolves little (one standard error is 4-6 points on 40-112 rows),
and what the recipe then does is fine-tune. Fine-tuned with the recipe default, the largest
rung of the text ladder was the best on two of three real sets and 0.9 points from the best on
the third, while the frozen scores ranked it first, second or last (bench/RESULTS_select.md):
within what the split can resolve, the larger checkpoint is the better bet. LogME and speed
decide between checkpoints of one size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

RULE = (
    "highest linear-probe validation accuracy; candidates within one binomial standard error "
    "(sqrt(p(1-p)/n) on the n validation rows, at least one row) of the best remaining one are "
    "tied, and a tie goes to the larger checkpoint, then the higher LogME (training features), "
    "then the faster forward pass"
)
PROBE_C = 1.0  # inverse L2 strength of the probe (sklearn's default), on standardised features
PROBE_MAX_ITER = 2000


@dataclass
class Score:
    """One candidate's evidence."""

    name: str
    logme: float
    probe_accuracy: float
    parameters: int
    ms_per_example: float
    feature_dim: int
    features: str  # what the vectors are (which stored tensor)
    pooling: str
    seconds: float
    rank: int = 0
    tied_with_best: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def fit_probe(train_x, train_y, seed: int = 0):
    """A logistic regression fitted on standardised training features: a function from
    features to predicted labels."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        only = np.asarray(train_y)[0]
        return lambda x: np.full(len(x), only)
    scaler = StandardScaler().fit(train_x)
    probe = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER, random_state=seed)
    probe.fit(scaler.transform(train_x), train_y)
    return lambda x: probe.predict(scaler.transform(x))


def probe_accuracy(train_x, train_y, val_x, val_y, seed: int = 0) -> float:
    """Validation accuracy of a logistic regression fitted on standardised training features."""
    import numpy as np

    return float(np.mean(fit_probe(train_x, train_y, seed)(val_x) == np.asarray(val_y)))


def standard_error(accuracy: float, rows: int) -> float:
    """One binomial standard error of an accuracy measured on `rows` rows, sqrt(p (1 - p) / n):
    what a split of that size can resolve (the playbook's one-standard-error rule uses it too,
    `tl_hf.lab.winner.validation_margin`)."""
    p = min(max(accuracy, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / max(rows, 1))


def resolution(accuracy: float, validation_rows: int) -> float:
    """What the validation split resolves at `accuracy`: one binomial standard error, and at
    least one example."""
    return max(standard_error(accuracy, validation_rows), 1.0 / max(validation_rows, 1))


def rank_scores(scores: list[Score], validation_rows: int) -> list[Score]:
    """`scores` in the rule's order (module docstring), with `rank` (1 = chosen) set and
    `tied_with_best` marking the candidates the validation split could not tell from the pick."""
    remaining, ordered = list(scores), []
    while remaining:
        best = max(s.probe_accuracy for s in remaining)
        low = best - resolution(best, validation_rows) - 1e-12
        tied = [s for s in remaining if s.probe_accuracy >= low]
        tied.sort(key=lambda s: (-s.parameters, -s.logme, s.ms_per_example))
        if not ordered:
            for s in tied:
                s.tied_with_best = len(tied) > 1
        ordered += tied
        remaining = [s for s in remaining if s not in tied]
    for i, s in enumerate(ordered, 1):
        s.rank = i
    return ordered


def format_score(score: Score) -> str:
    """The console line of one candidate."""
    mark = (
        "  <- chosen"
        if score.rank == 1
        else (" (tied with the pick)" if score.tied_with_best else "")
    )
    return (
        f"#{score.rank} {score.name}: probe accuracy {score.probe_accuracy:.4f}, LogME "
        f"{score.logme:.4f}, {score.parameters / 1e6:.2f}M parameters, "
        f"{score.ms_per_example:.2f} ms/example, {score.feature_dim}-d {score.features}{mark}"
    )
