"""Where a run's time goes: wall-clock seconds per phase of the flow (`--profile` prints the
table and writes `timings.json`). Recording costs a `perf_counter()` call per phase, so it is
always on; only the printing and the file depend on the flag."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from tl_hf.output.names import TIMINGS_FILE  # noqa: F401  (re-exported)


def process_age() -> float | None:
    """Seconds since this process started (interpreter start-up and imports included), or None
    where /proc is not there."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class PhaseTimer:
    """Seconds per named phase, in the order phases first ran; a phase entered twice adds up.

    `inside` names phases measured within another one (evaluation and checkpoints inside
    training): they are shown indented and not added to the total twice.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.inside: dict[str, str] = {}
        self.started = time.perf_counter()
        self.age_at_start = process_age()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float, inside: str | None = None) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        if inside is not None:
            self.inside[name] = inside

    def as_dict(self) -> dict[str, float | None]:
        """The phases, the process's age when the run began (start-up and imports) and the
        run's wall time so far."""
        out: dict[str, float | None] = {k: round(v, 4) for k, v in self.seconds.items()}
        out["startup_before_run"] = (
            None if self.age_at_start is None else round(self.age_at_start, 4)
        )
        out["run_wall"] = round(time.perf_counter() - self.started, 4)
        return out

    def table(self) -> str:
        """A plain-text table: phase, seconds, share of the run's wall time."""
        wall = time.perf_counter() - self.started
        rows = []
        if self.age_at_start is not None:
            rows.append(("start-up and imports (before run)", self.age_at_start, None))
        for name, secs in self.seconds.items():
            label = f"  {name} (in {self.inside[name]})" if name in self.inside else name
            rows.append((label, secs, secs / wall if wall else 0.0))
        accounted = sum(v for k, v in self.seconds.items() if k not in self.inside)
        rows.append(("other (between phases)", max(0.0, wall - accounted), None))
        rows.append(("run wall time", wall, 1.0))
        width = max(len(r[0]) for r in rows)
        lines = [f"{'phase':<{width}}  seconds   share"]
        for label, secs, share in rows:
            lines.append(
                f"{label:<{width}}  {secs:7.3f}  "
                + (f"{100 * share:5.1f}%" if share is not None else "     -")
            )
        return "\n".join(lines)
