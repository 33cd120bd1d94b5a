"""tl-hf serve: a real uvicorn server on 127.0.0.1 in a thread, real HTTP requests (health,
predictions that match the model, oversize, malformed and over-rate requests answered with
4xx and a message, 200 concurrent requests), an image run answering uploaded files."""

import io
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from conftest import free_port
from run_folder import tiny_text_model


def _run_folder(root, modality, model, processor, temperature=2.0):
    model.save_pretrained(root)
    processor.save_pretrained(root)
    (root / "all_results.json").write_text("{}")
    (root / "run_config.yaml").write_text(yaml.safe_dump({"modality": modality}))
    (root / "calibration.json").write_text(json.dumps({"temperature": temperature}))
    return root


class Server:
    def __init__(self, root, **limits):
        import uvicorn

        from tl_hf.infer.loaded import load_run
        from tl_hf.infer.serve import build_app

        self.run = load_run(root, "cpu")
        settings = {"max_request_bytes": 4096, "rate_limit": 0, "max_inputs": 8, **limits}
        app = build_app(self.run, **settings)
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        assert self.server.started

    def request(self, path, body=None, headers=None, method=None):
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            headers={"content-type": "application/json", **(headers or {})},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def text_server(tmp_path_factory):
    model, tokenizer = tiny_text_model()
    root = _run_folder(tmp_path_factory.mktemp("run"), "text", model, tokenizer)
    server = Server(root)
    yield server
    server.stop()


def test_health_and_predictions_match_the_model(text_server):
    import torch

    status, health = text_server.request("/health")
    assert status == 200 and health["labels"] == ["negative", "neutral", "positive"]
    assert health["temperature"] == 2.0
    texts = ["good movie", "the plot was awful", "okay"]
    status, body = text_server.request("/predict", {"texts": texts, "top_k": 3})
    assert status == 200 and len(body["predictions"]) == 3, body
    run = text_server.run
    encoded = run.processor(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = (run.model(**encoded).logits / 2.0).softmax(-1)
    for p, answer in zip(probs, body["predictions"], strict=True):
        assert answer["label"] == health["labels"][int(p.argmax())]
        assert abs(answer["probability"] - float(p.max())) < 1e-5
        assert [t["label"] for t in answer["top"]][0] == answer["label"]
        assert abs(sum(t["probability"] for t in answer["top"]) - 1) < 1e-4
    status, single = text_server.request("/predict", {"text": "good movie"})
    assert status == 200 and single["predictions"][0] == {
        **body["predictions"][0],
        "top": body["predictions"][0]["top"][:1],
    }


def test_bad_requests_get_4xx_with_a_message(text_server):
    cases = [
        (b"{not json", 400, "not JSON"),
        ({"texts": []}, 400, "non-empty list"),
        ({"texts": ["ok", ""]}, 400, "empty or not strings"),
        ({"texts": [1]}, 400, "not strings"),
        (["good"], 400, "JSON object"),
        ({"texts": ["good"], "top_k": 0}, 400, "top_k 0"),
        ({"texts": ["good"] * 9}, 413, "at most 8"),
        ({"texts": ["good " * 1000]}, 413, "over 4096 bytes"),
    ]
    for body, code, message in cases:
        status, answer = text_server.request("/predict", body)
        assert status == code and message in answer["detail"], (body, status, answer)
    status, answer = text_server.request("/nowhere")
    assert status == 404
    status, answer = text_server.request("/predict", method="GET")
    assert status == 405
    # a body sent without a Content-Length (chunked) is counted as it arrives
    chunks = (b'{"texts": ["' + b"good " * 1000 + b'"]}' for _ in range(1))
    request = urllib.request.Request(
        f"http://127.0.0.1:{text_server.port}/predict",
        data=chunks,
        headers={"content-type": "application/json", "transfer-encoding": "chunked"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 413


def test_survives_200_concurrent_requests(text_server):
    texts = ["good movie", "awful plot", "okay", "the movie was great"]

    def one(i):
        return text_server.request("/predict", {"texts": [texts[i % 4]]})

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(one, range(200)))
    assert all(status == 200 for status, _ in answers)
    labels = {}
    for i, (_, body) in enumerate(answers):  # the same text gets the same answer every time
        labels.setdefault(i % 4, set()).add(body["predictions"][0]["probability"])
    assert all(len(v) == 1 for v in labels.values())
    assert text_server.request("/health")[0] == 200


def test_rate_limit_answers_429(tmp_path):
    model, tokenizer = tiny_text_model()
    server = Server(_run_folder(tmp_path, "text", model, tokenizer), rate_limit=3)
    try:
        codes = [server.request("/predict", {"texts": ["good"]})[0] for _ in range(8)]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
        status, body = server.request("/predict", {"texts": ["good"]})
        if status == 429:
            assert "requests per second" in body["detail"]
        time.sleep(1.1)
        assert server.request("/predict", {"texts": ["good"]})[0] == 200
    finally:
        server.stop()


def _multipart(files):
    boundary = "tlhfboundary"
    parts = b""
    for name, data in files:
        parts += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return parts + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_image_run_answers_uploaded_files(tmp_path):
    import numpy as np
    from PIL import Image
    from test_recipe_image import make_tiny_resnet
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    path = make_tiny_resnet(tmp_path / "resnet")
    model = AutoModelForImageClassification.from_pretrained(path, num_labels=2)
    model.config.id2label = {0: "left", 1: "right"}
    root = _run_folder(tmp_path / "run", "image", model, AutoImageProcessor.from_pretrained(path))
    server = Server(root, max_request_bytes=2**20)
    try:
        pngs = []
        for seed in range(2):
            buffer = io.BytesIO()
            array = np.random.default_rng(seed).integers(0, 255, (32, 40, 3), dtype=np.uint8)
            Image.fromarray(array).save(buffer, format="PNG")
            pngs.append((f"{seed}.png", buffer.getvalue()))
        body, kind = _multipart(pngs)
        status, answer = server.request("/predict", body, {"content-type": kind})
        assert status == 200 and len(answer["predictions"]) == 2
        assert {p["label"] for p in answer["predictions"]} <= {"left", "right"}
        body, kind = _multipart([("x.png", b"not an image")])
        status, answer = server.request("/predict", body, {"content-type": kind})
        assert status == 422 and "cannot read the image" in answer["detail"]
        status, answer = server.request("/predict", {"texts": ["a"]})
        assert status == 400 and "multipart/form-data" in answer["detail"]
    finally:
        server.stop()
