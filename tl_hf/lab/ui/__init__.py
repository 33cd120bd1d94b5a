"""The lab as a page (re-exports only): `tl-hf ui LAB_DIR` and `tl-hf lab ... --serve`. The
study is read in `state`, the controls queue trials in `queue`, workers start in `workers`,
the FastAPI application is in `server`; the page itself is in `static/`."""

from tl_hf.lab.ui.server import build_app, main, start_in_thread
from tl_hf.lab.ui.state import LabView

__all__ = ["LabView", "build_app", "main", "start_in_thread"]
