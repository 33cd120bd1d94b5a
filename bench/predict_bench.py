"""After-training figures (issue 29), small enough for a few minutes on a 2-core CPU:

1. `tl-hf predict` rows/s against a plain `transformers.pipeline()` loop over the same inputs
   (same batch size, same truncation), model loading excluded from both, for the text, image
   and audio defaults (text: a run trained here on the embedded BBC News; image and audio: the
   embedded EfficientNet-Lite0 / Whisper tiny.en with a new 10-class head, saved as a run saves
   them: throughput does not depend on the head's weights).
2. Expected calibration error before/after temperature scaling on the text run's validation
   and test splits (calibration.json).
3. ONNX (onnxruntime) vs PyTorch latency per example at batch size 1 on CPU, per default.
4. Peak RSS of a `tl-hf predict` process on 1k and 10k short texts (`--memory_rows`).
5. `tl-hf serve` on the text run: requests/s and p99 latency at 8 concurrent clients.

    OMP_NUM_THREADS=1 python bench/predict_bench.py [--rows 256] [--clips 32] [--trials 3]

Throughput is the best of `--trials` alternated passes of each arm (the machine is shared).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench._common import scratch_dir  # noqa: E402

BATCH = 32


def train_text_run(folder: str) -> str:
    from tl_hf.cli.recipe import main

    out = os.path.join(folder, "text_run")
    argv = ["--output_dir", out, "--strategy", "frozen", "--num_train_epochs", "4"]
    argv += ["--max_train_samples", "400", "--max_eval_samples", "200"]
    argv += ["--max_test_samples", "250", "--use_cpu", "--report_to", "none"]
    assert main("text", argv) == 0
    return out


def media_run(folder: str, modality_name: str, num_labels: int = 10) -> str:
    """A run folder of the embedded checkpoint with a new head, built by the modality's own
    processor and model adaptation at the embedded run's settings (what a run saves)."""
    from types import SimpleNamespace

    import transformers
    import yaml

    from tl_hf.modalities.base import get_modality

    modality = get_modality(modality_name)
    path = modality.default_model()
    settings = {"modality": modality_name, **modality.embedded_run_defaults}
    args = SimpleNamespace(
        model=SimpleNamespace(model_revision=None, cache_dir=None, trust_remote_code=False),
        data=SimpleNamespace(
            image_size=settings.get("image_size"),
            max_duration_seconds=settings.get("max_duration_seconds"),
        ),
    )
    config = transformers.AutoConfig.from_pretrained(path)
    processor = modality.build_processor(path, args, config)
    names = [f"class_{i}" for i in range(num_labels)]
    config.num_labels = num_labels  # as tl_hf.model.checkpoint gives a checkpoint new labels
    config.id2label, config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    if hasattr(config, "label_names"):
        config.label_names = names
    auto = getattr(transformers, modality.auto_model)
    model = auto.from_pretrained(path, config=config, ignore_mismatched_sizes=True)
    modality.adapt_model(model, processor)
    out = os.path.join(folder, f"{modality_name}_run")
    model.save_pretrained(out)
    processor.save_pretrained(out)
    with open(os.path.join(out, "run_config.yaml"), "w") as f:
        yaml.safe_dump(settings, f)
    with open(os.path.join(out, "all_results.json"), "w") as f:
        f.write("{}")
    return out


def text_inputs(folder: str, rows: int) -> tuple[str, list[str]]:
    from tl_hf.embedded.text import load_bbc_news

    texts = load_bbc_news()["test"]["text"][:rows]
    path = os.path.join(folder, "texts.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    return path, texts


def image_inputs(folder: str, rows: int) -> tuple[str, list[str]]:
    import numpy as np
    from PIL import Image

    root = os.path.join(folder, "images")
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(rows):
        path = os.path.join(root, f"{i:04d}.png")
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return root, paths


def audio_inputs(folder: str, clips: int) -> tuple[str, list[str]]:
    import numpy as np
    import soundfile as sf

    root = os.path.join(folder, "clips")
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(clips):
        seconds = 0.6 + 0.8 * rng.random()
        t = np.arange(int(16000 * seconds)) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.02 * rng.standard_normal(len(t))
        path = os.path.join(root, f"{i:03d}.wav")
        sf.write(path, wave.astype("float32"), 16000)
        paths.append(path)
    return root, paths


def time_tl_hf(run_dir: str, source_path: str) -> tuple[float, int]:
    """Seconds for `tl-hf predict`'s work after loading: read, score, write the CSV."""
    from tl_hf.infer.inputs import open_input
    from tl_hf.infer.loaded import load_run
    from tl_hf.infer.predict import prediction_rows, score_input

    run = load_run(run_dir, "cpu")
    start = time.perf_counter()
    source = open_input(source_path, run.modality, run.settings)
    count = 0
    with open(os.devnull, "w", newline="") as f:
        writer = csv.writer(f)
        for scored in score_input(run, source, BATCH, False):
            for cells in prediction_rows(run, scored, 1):
                writer.writerow(cells)
                count += 1
    return time.perf_counter() - start, count


def time_pipeline(run_dir: str, task: str, inputs: list) -> tuple[float, int]:
    """Seconds for a plain pipeline() loop over the same inputs (batch size BATCH)."""
    from transformers import pipeline

    kwargs = {"truncation": True, "max_length": 128} if task == "text-classification" else {}
    classify = pipeline(task, model=run_dir, device="cpu")
    start = time.perf_counter()
    results = []
    for i in range(0, len(inputs), BATCH):
        results += classify(inputs[i : i + BATCH], batch_size=BATCH, **kwargs)
    return time.perf_counter() - start, len(results)


def onnx_latency(run_dir: str, repeats: int) -> dict:
    """Per-example latency (batch 1) of PyTorch and onnxruntime on the export's inputs."""
    import numpy as np
    import onnxruntime
    import torch

    from tl_hf.cli.main import main as cli
    from tl_hf.infer.export import example_inputs
    from tl_hf.infer.loaded import load_run

    assert cli(["export", run_dir, "--onnx"]) == 0
    run = load_run(run_dir, "cpu")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        os.path.join(run_dir, "onnx", "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    first = example_inputs(run)[0]
    single = {k: v[:1] for k, v in first.items()}
    tensors = run.encode(single)
    names = {i.name for i in session.get_inputs()}
    feeds = {k: v.numpy() for k, v in tensors.items() if k in names}

    def timed(fn):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times)) * 1000

    with torch.inference_mode():
        torch_ms = timed(lambda: run.model(**tensors))
    onnx_ms = timed(lambda: session.run(None, feeds))
    return {"pytorch_ms": torch_ms, "onnx_ms": onnx_ms, "speedup": torch_ms / onnx_ms}


MEASURE = """
import resource, sys
from tl_hf.cli.main import main
code = main(sys.argv[1:])
print("PEAK_RSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
sys.exit(code)
"""


def predict_memory(run_dir: str, folder: str, sizes: list[int]) -> dict:
    """Peak RSS of a `tl-hf predict` process on `sizes` rows of short texts (memory flat in
    the input's size: the rows stream in batches)."""
    import subprocess

    from bench._common import ENV

    out = {}
    for n in sizes:
        path = os.path.join(folder, f"short_{n}.csv")
        with open(path, "w") as f:
            f.write(
                "text\n"
                + "".join(f"headline number {i} about markets and sport\n" for i in range(n))
            )
        target = os.path.join(folder, f"short_{n}_predictions.csv")
        command = [sys.executable, "-c", MEASURE, "predict", run_dir, "--input", path]
        command += ["--output", target, "--device", "cpu", "--batch_size", "64"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **ENV})
        assert done.returncode == 0, done.stderr[-2000:]
        peak = float(done.stdout.split("PEAK_RSS_MB")[-1].split()[0])
        out[n] = {"peak_rss_mb": peak, "seconds": time.perf_counter() - start}
    return out


def serve_load(run_dir: str, clients: int, per_client: int, texts: list[str]) -> dict:
    import socket
    import threading
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import uvicorn

    from tl_hf.infer.loaded import load_run
    from tl_hf.infer.serve import build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(load_run(run_dir, "cpu"), 2**20, 0, 64)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def client(c):
        latencies = []
        for i in range(per_client):
            body = json.dumps({"texts": [texts[(c * per_client + i) % len(texts)]]}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict", body, {"content-type": "application/json"}
            )
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=120) as response:
                assert response.status == 200
                response.read()
            latencies.append(time.perf_counter() - start)
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [x for chunk in pool.map(client, range(clients)) for x in chunk]
    elapsed = time.perf_counter() - start
    server.should_exit = True
    thread.join(timeout=10)
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(latencies, 50)) * 1000,
        "p99_ms": float(np.percentile(latencies, 99)) * 1000,
    }


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256, help="texts and images scored")
    parser.add_argument("--clips", type=int, default=32, help="audio clips scored")
    parser.add_argument("--repeats", type=int, default=20, help="latency repeats")
    parser.add_argument("--memory_rows", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--trials", type=int, default=3, help="alternated passes per arm")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument(
        "--memory_only",
        default=None,
        metavar="RUN_DIR",
        help="only the peak-memory arm, on this finished text run (e.g. the text default's)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = scratch_dir("tl_hf_predict_bench_")
    if args.memory_only:
        memory = predict_memory(args.memory_only, folder, args.memory_rows)
        print("memory", json.dumps(memory), flush=True)
        return
    figures: dict = {"threads": 1, "batch_size": BATCH}
    text_run = train_text_run(folder)
    with open(os.path.join(text_run, "calibration.json")) as f:
        figures["calibration_text"] = json.load(f)
    arms = {
        "text": (text_run, "text-classification", text_inputs(folder, args.rows)),
        "image": (
            media_run(folder, "image"),
            "image-classification",
            image_inputs(folder, args.rows),
        ),
        "audio": (
            media_run(folder, "audio"),
            "audio-classification",
            audio_inputs(folder, args.clips),
        ),
    }
    for name, (run_dir, task, (source, inputs)) in arms.items():
        # alternated, best of --trials each: the machine is shared, a single pass is noisy
        plain, ours = [], []
        for _ in range(args.trials):
            plain.append(time_pipeline(run_dir, task, inputs))
            ours.append(time_tl_hf(run_dir, source))
        (plain_s, plain_n), (ours_s, ours_n) = min(plain), min(ours)
        assert plain_n == ours_n == len(inputs)
        figures[f"predict_{name}"] = {
            "rows": ours_n,
            "tl_hf_rows_per_s": ours_n / ours_s,
            "pipeline_rows_per_s": plain_n / plain_s,
            "ratio": plain_s / ours_s,
        }
        figures[f"onnx_{name}"] = onnx_latency(run_dir, args.repeats)
        print(
            name,
            json.dumps(figures[f"predict_{name}"]),
            json.dumps(figures[f"onnx_{name}"]),
            flush=True,
        )
    figures["predict_memory_text"] = predict_memory(text_run, folder, args.memory_rows)
    print("memory", json.dumps(figures["predict_memory_text"]), flush=True)
    figures["serve_text"] = serve_load(text_run, 8, 16, arms["text"][2][1])
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
