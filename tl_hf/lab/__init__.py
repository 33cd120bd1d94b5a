"""The fine-tuning lab (re-exports only): entry points in `api`, one session's loop in
`session`, a trial in `trials`, the winner in `winner`, the grid in `grid`, the study in
`study`, the pages in `page` and `playbook_report`, the playbook in `playbook`."""

from tl_hf.lab.api import main, run_lab, run_lab_with_args, run_playbook
from tl_hf.lab.grid import LabArguments
from tl_hf.lab.session import LabResult, Session, finish, open_session, run_specs
from tl_hf.lab.winner import choose_winner

__all__ = [
    "LabArguments",
    "LabResult",
    "Session",
    "choose_winner",
    "finish",
    "main",
    "open_session",
    "run_lab",
    "run_lab_with_args",
    "run_playbook",
    "run_specs",
]
