"""The live monitor: `report.html` exists from the first step of training and redraws itself
while the run trains, then the final report (`html_report`) replaces it.

The page is one file with everything inline (CSS, JavaScript, data; no network request; a
Content-Security-Policy forbids any) and works from `file://`. While training, the monitor
rewrites a small sidecar, `report.live.js` (`tlhfLiveUpdate({...history...})`); the open page
re-adds it as a `<script>` every few seconds (browsers block `fetch` of `file://` but not a
classic script) and redraws, keeping the reader's zoom, hidden series and tooltip. When the
final report is written, the sidecar says `{final: true}` and the open page reloads into it.

`serve_output_dir` serves the folder on 127.0.0.1 (`--monitor_port`) for a browser elsewhere.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

from tl_hf.output.names import LIVE_DATA_FILE, REPORT_FILE
from tl_hf.report.history import atomic_write

REFRESH_SECONDS = 2.0
# Per-step series are thinned to about this many points: a 100k-step run keeps a page that
# loads and redraws in a fraction of a second.
MAX_POINTS = 3000
# Nothing from the network, ever; scripts only inline or from the folder itself (the sidecar).
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline' file: 'self'; "
    "img-src data:"
)


def _asset(name: str) -> str:
    return resources.files("tl_hf.report").joinpath(name).read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    # Safe inside <script>: no "</script>" or "<!--" in the text; NaN/inf become null.
    text = json.dumps(_finite(value), separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _thin(rows: list, max_points: int) -> list:
    if len(rows) <= max_points:
        return rows
    stride = -(-len(rows) // max_points)
    return rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])


def patience_left(history: dict) -> int | None:
    """Evaluations still allowed without improvement before early stopping ends the run."""
    patience = history.get("early_stopping_patience")
    if not patience:
        return None
    best_step = history.get("best_step")
    since = sum(
        1 for r in history.get("eval", []) if best_step is not None and r["step"] > best_step
    )
    return max(0, patience - since)


def live_payload(history: dict, **progress: Any) -> dict:
    """What the page draws: the history (per-step series thinned) plus the patience left and
    the progress fields given (`step`, `epoch`, `max_steps`, `elapsed_s`, `eta_s`,
    `updated_at`, `final`)."""
    payload = {k: v for k, v in history.items() if k != "after_training"}
    for key in ("train", "learning_rates"):
        payload[key] = _thin(history.get(key) or [], MAX_POINTS)
    payload["patience_left"] = patience_left(history)
    payload.update(progress)
    return payload


def render_monitor(payload: dict, live_src: str | None = None) -> str:
    """The monitor as an HTML fragment (styles, containers, script) with its data inline;
    with `live_src` it polls that sidecar file every `REFRESH_SECONDS`."""
    config = {"data": payload, "live": live_src, "refreshMs": int(REFRESH_SECONDS * 1000)}
    return (
        f"<style>{_asset('live.css')}</style>"
        '<div class="tlhf" id="tlhf-monitor"><div class="tlhf-head"></div>'
        '<div class="tlhf-panels"></div><div class="hint"></div></div>'
        '<div class="tlhf-tip"></div>'
        f"<script>const TLHF={_script_json(config)};\n{_asset('charts.js')}\n{_asset('live.js')}</script>"
    )


def page(title: str, body: str, style: str = "") -> str:
    """A complete, self-contained HTML page (no request leaves it: see `CSP`)."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{style}</style></head>"
        f"<body>{body}</body></html>"
    )


PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em}"
    "h1{font-size:20px}"
)


def write_live(output_dir: str | os.PathLike, payload: dict, title: str, page_too: bool) -> None:
    """Rewrite the sidecar with `payload`; with `page_too`, (re)write the live page itself.

    The page is written once, at the start of a run: later updates only replace the small
    sidecar, so an open page keeps its state."""
    root = Path(output_dir)
    atomic_write(root / LIVE_DATA_FILE, f"tlhfLiveUpdate({_script_json(payload)});\n".encode())
    if page_too:
        body = f"<h1>{html.escape(title)}</h1>" + render_monitor(payload, live_src=LIVE_DATA_FILE)
        atomic_write(root / REPORT_FILE, page(title, body, PAGE_STYLE).encode())


def mark_final(output_dir: str | os.PathLike) -> None:
    """Tell a live page still open that the final report has replaced it (it reloads)."""
    path = Path(output_dir) / LIVE_DATA_FILE
    if path.exists():
        atomic_write(path, b'tlhfLiveUpdate({"final":true});\n')


def progress_fields(state, started: float) -> dict[str, Any]:
    """Step, epoch, elapsed time and ETA of a running `Trainer` (its `TrainerState`)."""
    elapsed = time.time() - started
    step, max_steps = state.global_step, state.max_steps or 0
    eta = elapsed / step * (max_steps - step) if step and max_steps else None
    return {
        "step": step,
        "epoch": state.epoch,
        "max_steps": max_steps or None,
        "elapsed_s": round(elapsed, 1),
        "eta_s": None if eta is None else round(eta, 1),
        "updated_at": time.strftime("%H:%M:%S"),
    }


def serve_output_dir(output_dir: str | os.PathLike, port: int):
    """Serve `output_dir` on http://127.0.0.1:`port` from a daemon thread; returns the
    server (`shutdown()` stops it). Loopback only: reach it from elsewhere through a tunnel
    (`ssh -L PORT:127.0.0.1:PORT host`)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from tl_hf.errors import UserError

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # one line per poll would flood the console
            pass

        def end_headers(self):
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

    handler = functools.partial(QuietHandler, directory=os.path.abspath(output_dir))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as err:
        raise UserError(f"--monitor_port {port}: {err.strerror}; choose another port") from err
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="tl-hf-monitor", daemon=True).start()
    return server
