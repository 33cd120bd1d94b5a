"""The scores of a candidate and the rule that ranks the candidates.

The rule (also written into `selection.json` and docs/select.md): the highest linear-probe
validation accuracy wins; candidates whose accuracy is within one validation example
(1 / the number of validation rows) of the best remaining one count as tied, and the tie goes to
the higher LogME on the training features, then the fewer parameters, then the faster forward
pass. The probe is what a frozen head reaches on these rows, measured on rows it did not fit;
LogME (evidence on the training rows alone) breaks ties the validation split is too small to
resolve, and size and speed say which of two equally good checkpoints is cheaper to use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

RULE = (
    "highest linear-probe validation accuracy; candidates within one validation example "
    "(1/n of the validation rows) of the best remaining one are tied, and a tie goes to the "
    "higher LogME (training features), then the fewer parameters, then the faster forward pass"
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


def probe_accuracy(train_x, train_y, val_x, val_y, seed: int = 0) -> float:
    """Validation accuracy of a logistic regression fitted on standardised training features."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(train_y)) < 2:
        return float(np.mean(np.asarray(val_y) == np.asarray(train_y)[0]))
    scaler = StandardScaler().fit(train_x)
    probe = LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER, random_state=seed)
    probe.fit(scaler.transform(train_x), train_y)
    return float(np.mean(probe.predict(scaler.transform(val_x)) == np.asarray(val_y)))


def rank_scores(scores: list[Score], validation_rows: int) -> list[Score]:
    """`scores` in the rule's order (module docstring), with `rank` (1 = chosen) set and
    `tied_with_best` marking the candidates the validation split could not tell from the pick."""
    resolution = 1.0 / max(validation_rows, 1)
    remaining, ordered = list(scores), []
    while remaining:
        best = max(s.probe_accuracy for s in remaining)
        tied = [s for s in remaining if s.probe_accuracy >= best - resolution - 1e-12]
        tied.sort(key=lambda s: (-s.logme, s.parameters, s.ms_per_example))
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
