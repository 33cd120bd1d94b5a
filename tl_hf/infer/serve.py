"""`tl-hf serve OUTPUT_DIR [--port 8000]`: a finished run answering HTTP on 127.0.0.1.

The stack is FastAPI on uvicorn (starlette and uvicorn are already in the set-up through the
trackers; FastAPI adds request parsing and error responses on top of them):

    GET  /health    {"status": "ok", "modality", "labels", "temperature"}
    POST /predict   text: JSON {"texts": ["...", ...]} (or {"text": "..."}), optional "top_k";
                    image/audio: multipart upload, one or more `files` fields
                    -> {"predictions": [{"label", "probability", "top": [{"label",
                       "probability"}, ...]}, ...]}

Probabilities are calibrated with the run's temperature. Limits, each answered with a 4xx
and a one-line message: the request body (`--max_request_mb`, 413), the inputs per request
(`--max_inputs`, 413), requests per second from one client (`--rate_limit`, a token bucket
with one second of burst, 429), a body that is not what the route takes (400), an input the
model cannot read (422). One model call runs at a time (a lock); requests queue for it."""

import argparse
import threading
import time
from typing import Any

from tl_hf.errors import UserError
from tl_hf.infer.loaded import LoadedRun
from tl_hf.infer.predict import add_tta_flag


class RateLimiter:
    """A token bucket per client: `rate` requests per second, bursts of up to `rate`."""

    def __init__(self, rate: float):
        self.rate, self.buckets, self.lock = rate, {}, threading.Lock()

    def allow(self, client: str) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(client, (self.rate, now))
            tokens = min(self.rate, tokens + (now - last) * self.rate)
            if tokens < 1:
                self.buckets[client] = (tokens, now)
                return False
            self.buckets[client] = (tokens - 1, now)
            return True


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes is refused with 413 (by its Content-Length
    before it is read, or while it streams in when no length was sent)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _plain(send, 413, self._message())
        seen = 0

        async def counted():
            from fastapi import HTTPException

            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # raised inside the route's read: FastAPI answers it
                raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"request body over {self.limit} bytes: send fewer or smaller inputs"


async def _plain(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def answer(run: LoadedRun, inputs: dict[str, list], top_k: int) -> list[dict[str, Any]]:
    """The predictions of one request (calibrated probabilities, the top k labels)."""
    out = []
    for row in run.ranked(run.probabilities(inputs), top_k):
        ranked = [{"label": label, "probability": round(p, 6)} for label, p in row]
        out.append({**ranked[0], "top": ranked})
    return out


def _text_inputs(body: Any, max_inputs: int) -> list[str]:
    from fastapi import HTTPException

    if not isinstance(body, dict):
        raise HTTPException(400, 'send a JSON object: {"texts": ["...", ...]}')
    texts = body.get("texts", [body["text"]] if "text" in body else None)
    if not isinstance(texts, list) or not texts:
        raise HTTPException(400, 'send {"texts": ["...", ...]} (a non-empty list of strings)')
    if len(texts) > max_inputs:
        raise HTTPException(413, f"{len(texts)} texts: send at most {max_inputs} per request")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise HTTPException(400, f"texts {bad[:5]} are empty or not strings: send text")
    return texts


def build_app(run: LoadedRun, max_request_bytes: int, rate_limit: float, max_inputs: int):
    """The FastAPI application of `run` (wrapped in the body-size limit)."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.concurrency import run_in_threadpool

    app = FastAPI(title=f"tl-hf: {run.root.name}", docs_url=None, redoc_url=None)
    limiter, lock = RateLimiter(rate_limit), threading.Lock()
    column = run.modality.input_column

    def predict_locked(inputs, top_k):
        with lock:
            return answer(run, inputs, top_k)

    @app.get("/health")
    def health():
        return {
            "status": "ok",
            "modality": run.modality.name,
            "labels": run.names,
            "temperature": run.temperature,
        }

    @app.post("/predict")
    async def predict(request: Request):  # FastAPI reads this annotation: no __future__
        client = request.client.host if request.client else "?"
        if not limiter.allow(client):
            raise HTTPException(429, f"over {rate_limit:g} requests per second: slow down")
        top_k = _top_k(request.query_params.get("top_k"))
        if column == "text":
            try:
                body = await request.json()
            except ValueError:
                raise HTTPException(400, 'the body is not JSON: send {"texts": [...]}') from None
            if isinstance(body, dict) and "top_k" in body:
                top_k = _top_k(body["top_k"])
            inputs = {"text": _text_inputs(body, max_inputs)}
        else:
            inputs = {column: await _uploaded(request, column, max_inputs)}
        try:
            predictions = await run_in_threadpool(predict_locked, inputs, top_k)
        except Exception as err:  # an upload the decoder cannot read
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise HTTPException(422, f"cannot read the {column} ({first})") from None
        return {"predictions": predictions}

    return BodyLimit(app, max_request_bytes)


def _top_k(value) -> int:
    from fastapi import HTTPException

    if value is None:
        return 1
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise HTTPException(400, f"top_k {value!r} is not a whole number") from None
    if k < 1:
        raise HTTPException(400, f"top_k {k} must be 1 or more")
    return k


async def _uploaded(request, column: str, max_inputs: int) -> list[dict]:
    from fastapi import HTTPException

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(400, f"upload the {column} files as multipart/form-data (field files)")
    form = await request.form()
    files = [f for f in form.getlist("files") if hasattr(f, "read")]
    if not files:
        raise HTTPException(400, f"no files in the upload: send the {column} files as field files")
    if len(files) > max_inputs:
        raise HTTPException(413, f"{len(files)} files: send at most {max_inputs} per request")
    return [{"bytes": await f.read(), "path": None} for f in files]


def serve(argv: list[str]) -> int:
    """Serve a finished run over HTTP on 127.0.0.1 (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="tl-hf serve", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="the --output_dir of a finished run")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None)
    add_tta_flag(parser)
    parser.add_argument("--max_request_mb", type=float, default=10.0)
    parser.add_argument("--max_inputs", type=int, default=64, help="inputs per request")
    parser.add_argument("--rate_limit", type=float, default=50.0, help="requests/s per client")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a port: give 1-65535")
    if args.max_request_mb <= 0 or args.max_inputs < 1:
        raise UserError("--max_request_mb and --max_inputs must be positive")
    try:
        import uvicorn
    except ImportError as err:
        raise UserError(
            "tl-hf serve needs FastAPI and uvicorn: pip install 'tl-hf[serve]'"
        ) from err
    from tl_hf.console import say
    from tl_hf.infer.loaded import load_run

    run = load_run(args.output_dir, args.device, tta=args.tta)
    app = build_app(run, int(args.max_request_mb * 2**20), args.rate_limit, args.max_inputs)
    routes = f"POST /predict, GET /health{run.views_label}"
    say(f"serving {args.output_dir} on http://127.0.0.1:{args.port} ({routes})")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0
