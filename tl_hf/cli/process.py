"""How a tl-hf process ends once its work is done (the recipes, `tl-hf`, `python -m tl_hf`)."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def exit_process(code: int | None) -> NoReturn:
    """End the process with status `code`: the other non-daemon threads joined, the atexit
    handlers run (logging, trackers, temporary folders) and the standard streams flushed,
    then `os._exit`. This skips only the interpreter's teardown of every module and object,
    which after a run takes 1.7 s on these cores, all of it in C (torch, arrow), for nothing
    a finished process needs. Where CPython's `atexit._run_exitfuncs` is missing, `sys.exit`.
    """
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None:
        sys.exit(code)
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()  # what the interpreter's own shutdown waits for first
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing reaches it
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)
