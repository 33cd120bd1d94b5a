"""`tl-hf ui LAB_DIR` (and `tl-hf lab ... --serve`): the lab as a page on 127.0.0.1.

FastAPI on uvicorn, as `tl-hf serve` (both in the `serve` extra): the routes are small JSON
readers and writers of the study, the page is one static HTML/JS/CSS set shipped with the
package (no request leaves the machine). Routes:

    GET  /                      the page        GET  /static/NAME   its script, style, charts
    GET  /api/state?v=VERSION   every trial, the configurations, the playbook trail
                                ({"same": true} while nothing changed since VERSION)
    GET  /api/curves?trials=1,2 each trial's loss, validation metrics, learning rates
    GET  /api/form              what the controls offer (strategies, the model's layers...)
    POST /api/queue             queue trials (checked as the command line checks them)
    POST /api/trials/N/stop     stop a running trial at its next evaluation
    POST /api/winner            mark a configuration as the winner: its command
    POST /api/workers           start one more worker (`tl-hf lab --worker`)

Security: 127.0.0.1 unless `--host`; then every route needs the token printed once (the page
keeps it in a same-site cookie). Requests that change the study must be JSON with the
`X-TLHF` header (a cross-site form cannot send either), and a request naming another host
than the one served is refused (DNS rebinding). Files are named from trial numbers only.
"""

import argparse
import contextlib
import secrets
import threading
from importlib import resources

from tl_hf.errors import UserError

STATIC = {  # the only files the page loads: name -> content type
    "app.js": "text/javascript",
    "app.css": "text/css",
    "charts.js": "text/javascript",  # the live report's chart code (tl_hf/report/charts.js)
    "live.css": "text/css",  # ... and its style
}
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"
COOKIE = "tlhf_token"
POLL_S = 0.1  # how often a held /api/state request looks for a change (stat calls only)
MAX_WAIT_S = 20.0  # the longest a /api/state request is held


def _asset(name: str) -> str:
    if name in ("charts.js", "live.css"):
        return resources.files("tl_hf.report").joinpath(name).read_text(encoding="utf-8")
    return resources.files("tl_hf.lab.ui").joinpath("static", name).read_text(encoding="utf-8")


class Guard:
    """ASGI middleware: the token (with --host), the Host header, JSON + header on writes."""

    def __init__(self, app, token: str | None, hosts: set[str]):
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from urllib.parse import parse_qs

        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers") or []}
        host = headers.get("host", "").rsplit(":", 1)[0].strip("[]")
        if self.hosts and host not in self.hosts:
            return await _deny(send, 421, f"this server answers {sorted(self.hosts)[0]} only")
        if self.token is not None:
            query = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0]
            cookies = dict(
                c.strip().split("=", 1) for c in headers.get("cookie", "").split(";") if "=" in c
            )
            given = headers.get("x-tlhf-token") or query or cookies.get(COOKIE, "")
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                return await _deny(
                    send, 401, "a token is required: open the address printed at start"
                )
        if scope["method"] not in ("GET", "HEAD") and (
            headers.get("x-tlhf") != "1"
            or "application/json" not in headers.get("content-type", "")
        ):
            return await _deny(send, 403, "send JSON with the X-TLHF: 1 header")
        await self.app(scope, receive, send)


async def _deny(send, status: int, detail: str) -> None:
    import json

    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps({"detail": detail}).encode()})


def _user_errors(call, *args):
    from fastapi import HTTPException

    try:
        return call(*args)
    except UserError as err:
        raise HTTPException(400, str(err)) from None


def _read_routes(app, view, workers, form) -> None:
    import asyncio
    import time

    from fastapi import Response
    from fastapi.concurrency import run_in_threadpool

    @app.get("/")
    def index(token: str | None = None):
        page = Response(_asset("index.html"), media_type="text/html")
        page.headers["Content-Security-Policy"] = CSP
        page.headers["Cache-Control"] = "no-store"
        if token:  # kept for the page's next requests (with --host)
            page.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return page

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC:
            return Response('{"detail":"no such file"}', 404, media_type="application/json")
        return Response(_asset(name), media_type=STATIC[name])

    @app.get("/api/state")
    async def state(v: str | None = None, wait: float = 0.0):
        # a long poll: held while nothing changed (stat calls every POLL_S), up to `wait` s
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_WAIT_S)
        while v and view.version() == v and time.monotonic() < deadline and not view.closing:
            await asyncio.sleep(POLL_S)
        data = await run_in_threadpool(view.snapshot)
        extra = {"workers": workers.alive(), "version": data["version"]}
        return {"same": True, **extra} if v == data["version"] else {**data, **extra}

    @app.get("/api/curves")
    def curves(trials: str = ""):
        numbers = [int(n) for n in trials.split(",") if n.strip().isdigit()]
        return view.curves(numbers)

    @app.get("/api/form")
    def form_route():
        return form()  # the probe is read fresh (a playbook may have run since)


def _write_routes(app, view, queue, workers) -> None:
    from fastapi import Request

    @app.post("/api/queue")
    async def enqueue(request: Request):  # FastAPI reads these annotations: no __future__
        body = await _json(request)
        answer = _user_errors(queue.enqueue, body)
        workers.wanted()
        return answer

    @app.post("/api/trials/{number}/stop")
    def stop(number: int):
        return {"number": number, "status": _user_errors(queue.stop, number)}

    @app.post("/api/winner")
    async def winner(request: Request):
        body = await _json(request)
        return _user_errors(queue.mark_winner, str(body.get("config", "")))

    @app.post("/api/workers")
    def start_worker():
        return {"started": workers.start(), "workers": workers.alive()}


async def _json(request) -> dict:
    from fastapi import HTTPException

    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "send a JSON object")
    return body


def build_app(view, token: str | None = None, hosts: set[str] | None = None, workers=None):
    """The page's application over `view` (a `tl_hf.lab.ui.state.LabView`)."""
    from fastapi import FastAPI

    from tl_hf.lab.ui.queue import Queue
    from tl_hf.lab.ui.workers import Workers

    queue = Queue(view)
    workers = workers or Workers(view, keep=0)
    cached: dict = {}

    def form():
        if "form" not in cached:
            with contextlib.suppress(UserError):
                cached["form"] = queue.form()
            cached.setdefault("form", {"enabled": False, "reason": queue.reason})
        return (
            {**cached["form"], "probe": queue.probe()}
            if cached["form"]["enabled"]
            else cached["form"]
        )

    app = FastAPI(title="tl-hf lab", docs_url=None, redoc_url=None, openapi_url=None)
    _read_routes(app, view, workers, form)
    _write_routes(app, view, queue, workers)
    return Guard(app, token, hosts or set())


class Running:
    """A uvicorn server in a thread (`wait()` blocks, `stop()` ends it and its workers)."""

    def __init__(self, server, thread, workers, view):
        self.server, self.thread, self.workers, self.view = server, thread, workers, view

    def wait(self) -> None:
        """Until the server ends, Ctrl-C or SIGTERM (both raise KeyboardInterrupt here)."""
        import signal

        def interrupted(signum, frame):
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupted)
        try:
            while self.thread.is_alive():
                self.thread.join(0.5)
        finally:
            signal.signal(signal.SIGTERM, previous)

    def stop(self) -> None:
        import time

        self.view.closing = True  # held /api/state requests answer now
        time.sleep(3 * POLL_S)
        self.server.should_exit = True
        self.thread.join(10)
        self.workers.close()


def start_in_thread(lab_dir, storage=None, study_name=None, port=7860, host=None, keep=1):
    """Serve the lab's page from a thread of this process; returns a `Running`."""
    import time

    import uvicorn

    from tl_hf.console import say
    from tl_hf.lab.ui.state import LabView
    from tl_hf.lab.ui.workers import Workers

    view = LabView(lab_dir, storage, study_name)
    view.snapshot()  # the first read of a big study is the slow one: before the first page
    token = secrets.token_urlsafe(24) if host else None
    bind = host or "127.0.0.1"
    hosts = set() if host else {"127.0.0.1", "localhost", "::1"}
    workers = Workers(view, keep=keep)
    app = build_app(view, token, hosts, workers)
    config = uvicorn.Config(
        app, host=bind, port=port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=1,  # held /api/state requests do not delay a stop
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="tl-hf-ui", daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    if not server.started:
        workers.close()
        raise UserError(f"--port {port}: cannot listen on {bind}:{port}; choose another port")
    shown = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
    address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    say(f"lab page: {address}" + ("  (the token is printed once)" if token else ""), "tl-hf ui")
    return Running(server, thread, workers, view)


def main(argv: list[str]) -> int:
    """`tl-hf ui LAB_DIR [--port] [--host] [--storage] [--study_name] [--workers]`."""
    parser = argparse.ArgumentParser(prog="tl-hf ui", description=__doc__.splitlines()[0])
    parser.add_argument("lab_dir", help="the --output_dir of a lab (tl-hf lab ...)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default=None, help="listen here instead of 127.0.0.1 (token)")
    parser.add_argument("--storage", default=None, help="the lab's --storage, if not lab.db")
    parser.add_argument("--study_name", default=None)
    parser.add_argument(
        "--workers", type=int, default=1, help="workers the page starts when trials wait (0: none)"
    )
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a port: give 1-65535")
    if args.workers < 0:
        raise UserError(f"--workers {args.workers}: give 0 or more")
    try:
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise UserError("tl-hf ui needs FastAPI and uvicorn: pip install 'tl-hf[serve]'") from err
    running = start_in_thread(
        args.lab_dir, args.storage, args.study_name, args.port, args.host, args.workers
    )
    try:
        running.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return 0
