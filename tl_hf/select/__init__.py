"""Choose the checkpoint (re-exports only): rank candidate checkpoints on frozen features of the
user's data (`api`: the entry points; `extract`: one candidate's feature pass; `logme`: the
evidence; `rank`: the probe and the rule)."""

from tl_hf.select.api import SELECTION_FILE, Selection, select_checkpoint, select_with_args
from tl_hf.select.logme import logme
from tl_hf.select.rank import RULE, Score, rank_scores

__all__ = [
    "RULE",
    "SELECTION_FILE",
    "Score",
    "Selection",
    "logme",
    "rank_scores",
    "select_checkpoint",
    "select_with_args",
]
