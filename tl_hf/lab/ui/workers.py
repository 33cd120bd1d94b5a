"""The workers the page starts: `tl-hf lab --worker` subprocesses on the lab's storage (the lab's
own runner). The page keeps `keep` of them available while trials wait and none runs; more
can be started from the page or by hand, on this machine or another one."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings

IDLE_MINUTES = 10.0  # a started worker waits this long for the next trial before exiting
WATCH_EVERY_S = 2.0


class Workers:
    def __init__(self, view, keep: int = 1):
        self.view, self.keep = view, keep
        self.procs: list[subprocess.Popen] = []
        self.lock = threading.Lock()
        self._closing = threading.Event()
        self._pending_since: float | None = None
        if keep:
            threading.Thread(target=self._watch, name="tl-hf-ui-workers", daemon=True).start()

    def command(self) -> list[str]:
        view = self.view
        command = [sys.executable, "-m", "tl_hf", "lab", "--worker", "--output_dir", view.lab_dir]
        if not view.storage.startswith("sqlite:///"):
            command += ["--storage", view.storage]
        command += ["--study_name", view.study_name, "--worker_idle_minutes", str(IDLE_MINUTES)]
        modality = (view.record or {}).get("modality")
        return command + (["--modality", modality] if modality else [])

    def alive(self) -> int:
        with self.lock:
            self.procs = [p for p in self.procs if p.poll() is None]
            return len(self.procs)

    def start(self) -> int:
        """Start one worker; returns its pid. Its output goes to trials/worker_PID.log."""
        from tl_hf.output.names import TRIALS_DIR

        folder = os.path.join(self.view.lab_dir, TRIALS_DIR)
        os.makedirs(folder, exist_ok=True)
        name = f"worker_{os.getpid()}_{len(self.procs)}.log"
        with open(os.path.join(folder, name), "ab") as log:
            proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        with self.lock:
            self.procs.append(proc)
        return proc.pid

    def wanted(self) -> None:
        """Trials were queued: start a worker now if the page keeps one and none is alive."""
        if self.keep and not self.alive() and not self._busy():
            self.start()

    def _busy(self) -> bool:
        rows = self.view.snapshot()["trials"]
        return any(r["state"] == "running" for r in rows)

    def _watch(self) -> None:
        """Trials waiting, none running and none of ours alive for two looks: start one (a
        lab still running its grid claims the next trial between two looks)."""
        while not self._closing.wait(WATCH_EVERY_S):
            try:
                rows = self.view.snapshot()["trials"]
            except Exception:
                continue
            running = any(r["state"] == "running" for r in rows)
            ours = self.alive()  # reaps a worker that died: a zombie's pid still answers
            if running and self._requeue():  # a killed worker's trial waits again
                continue
            waiting = any(r["state"] == "waiting" for r in rows)
            if not waiting or running or ours >= self.keep:
                self._pending_since = None
                continue
            if self._pending_since is None:
                self._pending_since = time.time()
            elif time.time() - self._pending_since >= WATCH_EVERY_S:
                self._pending_since = None
                self.start()

    def _requeue(self) -> int:
        """Close the running trials of dead workers and queue them again, as a worker does."""
        from tl_hf.lab.worker import requeue_interrupted

        beat = ((self.view.record or {}).get("lab") or {}).get("heartbeat_seconds", 30.0)
        try:
            with warnings.catch_warnings():  # Optuna marks its stale-trial check experimental
                warnings.simplefilter("ignore")
                return requeue_interrupted(self.view.study, beat)
        except Exception:  # another process closed it first: the next look sees the result
            return 0

    def close(self) -> None:
        """Stop watching and end the workers this page started (a trial they were running is
        queued again by the next worker, as a killed lab's is)."""
        self._closing.set()
        with self.lock:
            procs = list(self.procs)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
