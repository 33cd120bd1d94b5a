"""What the page shows, read from the lab's study (the only source of truth) and the lab folder:
every trial (`tl_hf.lab.page.trial_rows`), the configurations' mean +- std
(`tl_hf.lab.page.summarize`), each trial's curves (its folder's `training_history.json`, or
the live `report.live.js` while it trains), the playbook's trail (`playbook.json`).

Paths are built here from trial numbers only: nothing a request sends names a file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from tl_hf.errors import UserError
from tl_hf.output.names import (
    HISTORY_FILE,
    LAB_DB,
    LIVE_DATA_FILE,
    PLAYBOOK_JSON,
    trial_folder,
)

MAX_CURVE_POINTS = 400  # per series of an overlaid trial: enough for a smooth line


def _stat(path: str) -> tuple:
    try:
        s = os.stat(path)
    except OSError:
        return ()
    return (s.st_mtime_ns, s.st_size)


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _read_live(path: str) -> dict | None:
    """The live sidecar's payload (`tlhfLiveUpdate({...});`), None when absent or final."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        return None
    head, tail = "tlhfLiveUpdate(", ");"
    if not (text.startswith(head) and text.endswith(tail)):
        return None
    try:
        payload = json.loads(text[len(head) : -len(tail)])
    except ValueError:
        return None
    return None if payload.get("final") else payload


def _thin(rows: list, limit: int = MAX_CURVE_POINTS) -> list:
    if len(rows) <= limit:
        return rows
    stride = -(-len(rows) // limit)
    return rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])


class LabView:
    """One lab's study and folder, read for the page. `version()` is a cheap stamp (file
    times) that changes whenever anything the page shows may have changed; `snapshot()` is
    recomputed only then."""

    def __init__(self, lab_dir: str, storage: str | None = None, study_name: str | None = None):
        from tl_hf.lab.study import lab_args_record
        from tl_hf.lab.worker import load_existing_study

        self.lab_dir = os.path.realpath(lab_dir)
        self.storage = storage or f"sqlite:///{os.path.join(self.lab_dir, LAB_DB)}"
        self.study_name = study_name or self._only_study() or os.path.basename(self.lab_dir)
        self.study = load_existing_study(self.storage, self.study_name)
        if self.study is None:
            raise UserError(
                f"{lab_dir} holds no lab study ({self.study_name!r} at {self.storage}): give the "
                "--output_dir of a lab (tl-hf lab ...), or its --storage and --study_name"
            )
        self.record = lab_args_record(self.study) or {}
        lab = self.record.get("lab") or {}
        self.objective = lab.get("objective", "eval_accuracy")
        self.greater = not self.objective.endswith("loss")
        self.lock = threading.Lock()
        self._cache: tuple[str, dict] | None = None
        self._running: list[int] = []
        self._objective_curves: dict[int, dict] = {}
        self.closing = False  # set when the server stops: held requests answer at once

    def _only_study(self) -> str | None:
        import optuna

        if self.storage.startswith("sqlite:///") and not os.path.isfile(self.storage[10:]):
            return None
        try:
            names = optuna.get_all_study_names(self.storage)
        except Exception:
            return None
        return names[0] if len(names) == 1 else None

    def trial_folder(self, number: int) -> str:
        return trial_folder(self.lab_dir, number)

    def version(self) -> str:
        """Changes when the study or a running trial's files change (stat calls only, for a
        SQLite study; other storages are re-read every 2 s)."""
        if not self.storage.startswith("sqlite:///"):
            return f"t{int(time.time() / 2)}"
        db = self.storage[len("sqlite:///") :]
        stamps = [_stat(db), _stat(db + "-wal"), _stat(db + "-journal")]
        stamps.append(_stat(os.path.join(self.lab_dir, PLAYBOOK_JSON)))
        for number in self._running:
            folder = self.trial_folder(number)
            stamps += [
                _stat(os.path.join(folder, LIVE_DATA_FILE)),
                _stat(os.path.join(folder, HISTORY_FILE)),
            ]
        return format(hash(tuple(stamps)) & 0xFFFFFFFFFFFF, "x")

    def snapshot(self) -> dict[str, Any]:
        """Every trial, the configurations, the playbook trail, the marked winner."""
        with self.lock:
            version = self.version()
            if self._cache and self._cache[0] == version:
                return self._cache[1]
            for _ in range(3):  # the stamp is taken before the read: a write during the read
                data = self._read()  # changes the next stamp, never hides in this one
                running = [r["number"] for r in data["trials"] if r["state"] == "running"]
                if running == self._running:
                    break
                self._running = running  # their files join the stamp: stamp and read again
                version = self.version()
            else:
                data = self._read()  # read after the last stamp
            data["version"] = version
            self._cache = (version, data)
            return data

    def _read(self) -> dict[str, Any]:
        from tl_hf.lab.page import summarize, trial_rows
        from tl_hf.lab.study import WINNER_MARK_ATTR, final_trials

        trials = final_trials(self.study)
        rows = trial_rows(trials)
        self._objective_curves = {}
        for row in rows:
            row.pop("key", None)
            # the per-epoch objective goes out with the curves, not with every state
            self._objective_curves[row["number"]] = row.pop("curve")
            if row["state"] == "running":
                live = _read_live(os.path.join(self.trial_folder(row["number"]), LIVE_DATA_FILE))
                if live:
                    row["progress"] = {k: live.get(k) for k in ("epoch", "eta_s", "elapsed_s")}
                    row["progress"]["num_train_epochs"] = live.get("num_train_epochs")
        attrs = self.study.user_attrs
        return {
            "objective": self.objective,
            "greater_is_better": self.greater,
            "trials": rows,
            "summary": summarize(rows, self.greater),
            "marked_winner": attrs.get(WINNER_MARK_ATTR),
            "lab_winner": self._lab_winner(),
            "playbook": _read_json(os.path.join(self.lab_dir, PLAYBOOK_JSON)),
            "modality": self.record.get("modality"),
            "lab_dir": self.lab_dir,
        }

    def _lab_winner(self) -> dict | None:
        from optuna.trial import TrialState

        done = [
            t
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("winner")
        ]
        if not done:
            return None
        winner = done[-1].user_attrs["winner"]
        return {k: winner.get(k) for k in ("config", "mean", "std", "command", "test_metrics")}

    def curves(self, numbers: list[int]) -> dict[str, Any]:
        """Per trial: train loss, validation metrics and learning rate per group (its folder's
        history, or the live sidecar while it trains), thinned for drawing."""
        out = {}
        for number in numbers[:50]:
            folder = self.trial_folder(number)
            history = _read_live(os.path.join(folder, LIVE_DATA_FILE))
            saved = _read_json(os.path.join(folder, HISTORY_FILE))
            if history is None or (saved and saved.get("finished")):
                history = saved
            if not history:  # no files (yet): the objective the study holds per epoch
                curve = (self._objective_curves or {}).get(number) or {}
                history = {"eval": [{"epoch": e, self.objective: v} for e, v in curve.items()]}
                if not curve:
                    continue
            out[str(number)] = {
                "train": _thin([[r["epoch"], r["loss"]] for r in history.get("train") or []]),
                "eval": history.get("eval") or [],
                "learning_rates": _thin(history.get("learning_rates") or []),
                "best_epoch": history.get("best_epoch"),
                "early_stopped": history.get("early_stopped"),
                "finished": history.get("finished"),
                "num_train_epochs": history.get("num_train_epochs"),
            }
        return out
