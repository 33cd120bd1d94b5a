"""Metric modules for `evaluate.load`, shipped with tl-hf so no Hub fetch is needed."""

import os

METRICS_DIR = os.path.dirname(os.path.abspath(__file__))


def metric_path(name: str) -> str:
    """Folder of a shipped metric module (for `evaluate.load`)."""
    return os.path.join(METRICS_DIR, name)
