"""A fake Hugging Face Hub for tests: the write API huggingface_hub 2.4 uses, on 127.0.0.1.

    with fake_hub(fail_commits=1) as hub:   # a 500 on the first commit attempt
        with hub_env(hub, monkeypatch):     # HF_ENDPOINT, HF_TOKEN, online mode
            push_output_dir(...)
        hub.repos["tester/my-model"]["files"]["config.json"]  # bytes as uploaded

Endpoints (each seen in huggingface_hub's source and in the request log of a real
`upload_folder` against this server):
- `GET  /api/whoami-v2`: the user behind the token;
- `POST /api/repos/create`: a new repo (409 with its url when it exists, as the Hub does);
- `POST /api/validate-yaml`: `create_commit` checks a README's metadata before uploading;
- `POST /api/models/{repo_id}/preupload/{revision}`: `uploadMode: "regular"` per file, so
  content travels base64 inside the commit, with no LFS/Xet storage to fake;
- `POST /api/models/{repo_id}/commit/{revision}`: NDJSON, a header line then one
  `{"key": "file", "value": {"path", "content", "encoding"}}` per file;
- `GET  /api/models/{repo_id}`: repo info (used by `create_repo` on some errors);
- `GET  /{repo_id}/resolve/{revision}/{path}`: a stored file, so downloads work too.
Anything else answers 404 and stays in `requests`, which is how a new call shows up.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USER = "tester"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


@dataclass
class FakeHub:
    """State of one fake Hub: repos, the request log and the failures still to inject."""

    fail_commits: int = 0  # answer this many commit attempts with `fail_status`
    fail_status: int = 500
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    commit_attempts: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def files(self, repo_id: str) -> dict[str, bytes]:
        """The files stored in a repo: path -> bytes."""
        return self.repos[repo_id]["files"]

    def write_repo(self, repo_id: str, folder) -> None:
        """Write a repo's files to a local folder (to load a model from them)."""
        from pathlib import Path

        for path, data in self.files(repo_id).items():
            target = Path(folder) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, payload: Any = None, raw: bytes | None = None) -> None:
            body = raw if raw is not None else json.dumps(payload or {}).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type",
                "application/octet-stream" if raw is not None else "application/json",
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with hub.lock:
                hub.requests.append(
                    Request(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
            return body

        def do_GET(self):
            self._record()
            path = self.path.split("?", 1)[0]
            if path == "/api/whoami-v2":
                return self._send(
                    200,
                    {
                        "type": "user",
                        "name": USER,
                        "fullname": "Test User",
                        "orgs": [],
                        "auth": {"accessToken": {"displayName": "test", "role": "write"}},
                    },
                )
            match = re.fullmatch(r"/api/models/(.+?)(?:/revision/[^/]+)?", path)
            if match and match.group(1) in hub.repos:
                repo_id = match.group(1)
                repo = hub.repos[repo_id]
                return self._send(
                    200,
                    {
                        "id": repo_id,
                        "modelId": repo_id,
                        "sha": repo["sha"],
                        "private": repo["private"],
                        "siblings": [{"rfilename": p} for p in sorted(repo["files"])],
                    },
                )
            match = re.fullmatch(r"/(.+?)/resolve/([^/]+)/(.+)", path)
            if (
                match
                and match.group(1) in hub.repos
                and match.group(3) in hub.files(match.group(1))
            ):
                return self._send(200, raw=hub.files(match.group(1))[match.group(3)])
            return self._send(404, {"error": f"fake hub: no route for GET {path}"})

        def do_HEAD(self):
            self._record()
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            body = self._record()
            path = self.path.split("?", 1)[0]
            if path == "/api/repos/create":
                data = json.loads(body)
                repo_id = f"{data.get('organization') or USER}/{data['name']}"
                url = f"{hub.url}/{repo_id}"
                with hub.lock:
                    if repo_id in hub.repos:
                        return self._send(
                            409, {"error": "You already created this model repo", "url": url}
                        )
                    hub.repos[repo_id] = {
                        "files": {},
                        "private": data.get("visibility") == "private" or bool(data.get("private")),
                        "sha": "0" * 40,
                        "commits": [],
                    }
                return self._send(200, {"url": url, "name": repo_id})
            if path == "/api/validate-yaml":
                return self._send(200, {"errors": [], "warnings": []})
            match = re.fullmatch(r"/api/models/(.+)/preupload/([^/]+)", path)
            if match:
                if match.group(1) not in hub.repos:
                    return self._send(404, {"error": "Repository not found"})
                files = json.loads(body)["files"]
                return self._send(
                    200,
                    {
                        "files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                            for f in files
                        ]
                    },
                )
            match = re.fullmatch(r"/api/models/(.+)/commit/([^/]+)", path)
            if match:
                return self._commit(match.group(1), body)
            return self._send(404, {"error": f"fake hub: no route for POST {path}"})

        def _commit(self, repo_id: str, body: bytes):
            with hub.lock:
                hub.commit_attempts += 1
                if hub.fail_commits > 0:
                    hub.fail_commits -= 1
                    return self._send(hub.fail_status, {"error": "injected failure"})
                if repo_id not in hub.repos:
                    return self._send(404, {"error": "Repository not found"})
                repo = hub.repos[repo_id]
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                if not lines or lines[0].get("key") != "header":
                    return self._send(
                        400, {"error": "commit payload must start with a header line"}
                    )
                for line in lines[1:]:
                    if line["key"] != "file":
                        return self._send(
                            400, {"error": f"fake hub: unsupported operation {line['key']}"}
                        )
                    value = line["value"]
                    if value.get("encoding") != "base64":
                        return self._send(400, {"error": "fake hub: expected base64 content"})
                    repo["files"][value["path"]] = base64.b64decode(value["content"])
                repo["sha"] = hashlib.sha1(body).hexdigest()
                repo["commits"].append(lines[0]["value"].get("summary"))
                sha = repo["sha"]
            return self._send(
                200,
                {
                    "commitUrl": f"{hub.url}/{repo_id}/commit/{sha}",
                    "commitOid": sha,
                    "success": True,
                },
            )

    return Handler


@contextlib.contextmanager
def fake_hub(fail_commits: int = 0, fail_status: int = 500):
    """Run a fake Hub on a free port of 127.0.0.1 for the duration of the block."""
    hub = FakeHub(fail_commits=fail_commits, fail_status=fail_status)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def point_hub_at(hub: FakeHub, monkeypatch, token: str) -> None:
    """Aim huggingface_hub at the fake Hub: online, with a dummy token.

    huggingface_hub reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` once, at import, into
    `constants`, so the constants are patched as well as the environment.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        hub.url + "/{repo_id}/resolve/{revision}/{filename}",
    )
