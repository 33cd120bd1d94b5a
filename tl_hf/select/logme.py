"""LogME: the log maximum evidence of a linear model on frozen features (You et al., ICML 2021).

For each class k, the one-hot column y_k is modelled as Bayesian linear regression on the
features F [n, D]: y_k = F w + noise, w ~ N(0, 1/alpha I), noise ~ N(0, 1/beta). The evidence
p(y_k | F, alpha, beta) = N(y_k; 0, F F^T / alpha + I / beta) is maximised over alpha and beta
by the paper's fixed-point iteration (MacKay's updates), written on the SVD of F so one
iteration costs O(min(n, D)):

    gamma = sum_i beta s_i^2 / (alpha + beta s_i^2)
    m     = beta (alpha I + beta F^T F)^-1 F^T y
    alpha = gamma / |m|^2,   beta = (n - gamma) / |F m - y|^2

and the log evidence at the fixed point, divided by n, averaged over the classes, is LogME:
higher means the features explain the labels better with a simpler linear model.
"""

from __future__ import annotations

import math

MAX_ITERATIONS = 100
TOLERANCE = 1e-6  # relative change of alpha / beta that ends the iteration


def _spectrum(features):
    """(U [n, r], s^2 [r], D) of the features' thin SVD, in float64."""
    import numpy as np

    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"LogME needs features of shape [n, D], got {f.shape}")
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    return u, s**2, f.shape[1]


def _evidence(n: int, dim: int, alpha: float, beta: float, s2, z, y_norm2: float) -> float:
    """log p(y | F, alpha, beta) / n, from the spectrum (`s2`), `z = U^T y` and |y|^2."""
    import numpy as np

    shrink = alpha + beta * s2
    m_norm2 = float(np.sum((beta * np.sqrt(s2) * z / shrink) ** 2))
    residual = float(np.sum((alpha * z / shrink) ** 2)) + max(y_norm2 - float(np.sum(z**2)), 0.0)
    log_det = float(np.sum(np.log(shrink))) + (dim - len(s2)) * math.log(alpha)
    evidence = (
        n / 2 * math.log(beta)
        + dim / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * m_norm2
        - log_det / 2
    )
    return evidence / n


def _fixed_point(n: int, dim: int, s2, z, y_norm2: float) -> tuple[float, float]:
    """The (alpha, beta) the paper's iteration converges to for one target column."""
    import numpy as np

    alpha, beta = 1.0, 1.0
    for _ in range(MAX_ITERATIONS):
        shrink = alpha + beta * s2
        gamma = float(np.sum(beta * s2 / shrink))
        m_norm2 = float(np.sum((beta * np.sqrt(s2) * z / shrink) ** 2))
        residual = float(np.sum((alpha * z / shrink) ** 2)) + max(
            y_norm2 - float(np.sum(z**2)), 0.0
        )
        new_alpha = gamma / max(m_norm2, 1e-12)
        new_beta = max(n - gamma, 1e-12) / max(residual, 1e-12)
        ratio, new_ratio = alpha / beta, new_alpha / new_beta
        alpha, beta = new_alpha, new_beta
        if abs(new_ratio - ratio) <= TOLERANCE * abs(ratio):
            break
    return alpha, beta


def logme(features, labels) -> float:
    """LogME of `features` [n, D] for integer class `labels` [n] (mean over the classes of
    the per-class log maximum evidence divided by n). Higher is better; comparable between
    feature extractors on the same labelled rows."""
    import numpy as np

    y = np.asarray(labels).astype(int)
    u, s2, dim = _spectrum(features)
    n = u.shape[0]
    if n != len(y):
        raise ValueError(f"{n} feature rows but {len(y)} labels")
    scores = []
    for k in np.unique(y):
        target = (y == k).astype(np.float64)
        z = u.T @ target
        y_norm2 = float(target @ target)
        alpha, beta = _fixed_point(n, dim, s2, z, y_norm2)
        scores.append(_evidence(n, dim, alpha, beta, s2, z, y_norm2))
    return float(np.mean(scores))


def log_evidence(features, target, alpha: float, beta: float) -> float:
    """log p(target | features, alpha, beta) / n, computed directly from the marginal
    Gaussian N(0, F F^T / alpha + I / beta) (the check on the fixed point: slow, O(n^3))."""
    import numpy as np

    f = np.asarray(features, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    n = f.shape[0]
    cov = f @ f.T / alpha + np.eye(n) / beta
    sign, log_det = np.linalg.slogdet(cov)
    quad = float(t @ np.linalg.solve(cov, t))
    return float(-0.5 * (n * math.log(2 * math.pi) + log_det + quad) / n)
