"""Past one machine, measured on one host (root): network namespaces stand in for machines.

    sudo HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python bench/bench_multi.py [--part ddp|lab|db|all]

- ddp: two namespaces x 1 process (gloo DDP over a veth pair, real TCP) against 1 process, the
  same global batch (2 x 8 vs 1 x 16, sequence 64), a tiny BERT (2 x 32 hidden) and a
  MiniLM-size one (6 x 384, 22.7M parameters, random weights): samples/s of each and their
  ratio, and the share of a DDP step spent in the gradient all-reduce: (synchronised step -
  step under `no_sync`) / synchronised step, per rank, the mean of the measured steps.
- lab: one fixed grid (12 tiny-BERT trials) on a throwaway PostgreSQL with 1, 2 and 3 workers
  (processes on the host): trials per minute, from the first worker's start to the last exit.
- db: the storage's own cost per trial, without training: enqueue, claim, 8 user attributes,
  a heartbeat, 3 intermediate values and `tell`, 40 trials, SQLite (a local file) against
  PostgreSQL (127.0.0.1): milliseconds per trial.
On a shared 2-core machine the absolute figures are noisy; the script prints what it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
SIZES = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    "minilm": dict(
        hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    ),
}
GLOBAL_BATCH, SEQ, STEPS, WARMUP = 16, 64, 8, 2


def _model(size: str):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, max_position_embeddings=128, num_labels=5, **SIZES[size])
    return BertForSequenceClassification(config)


def _batch(n: int, rank: int):
    import torch

    g = torch.Generator().manual_seed(rank)
    ids = torch.randint(0, 30522, (n, SEQ), generator=g)
    return {"input_ids": ids, "labels": torch.randint(0, 5, (n,), generator=g)}


def _timed_steps(model, optimizer, batch, steps: int, no_sync: bool = False) -> list[float]:
    import contextlib

    times = []
    for _ in range(steps):
        context = model.no_sync() if no_sync else contextlib.nullcontext()
        start = time.perf_counter()
        with context:
            loss = model(**batch).loss
            loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return times


def worker(size: str, rank: int, world: int, address: str, port: int) -> None:
    """One DDP rank (world 2) or the single process (world 1); prints a RESULT line."""
    import torch

    torch.set_num_threads(1)
    model = _model(size)
    batch = _batch(GLOBAL_BATCH // world, rank)
    result = {"size": size, "rank": rank, "world": world}
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group(
            "gloo", init_method=f"tcp://{address}:{port}", rank=rank, world_size=world
        )
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    _timed_steps(model, optimizer, batch, WARMUP)
    synced = _timed_steps(model, optimizer, batch, STEPS)
    result["step_s"] = statistics.mean(synced)
    result["samples_per_s"] = GLOBAL_BATCH / result["step_s"]
    if world > 1:
        local = _timed_steps(model, optimizer, batch, STEPS, no_sync=True)
        result["no_sync_step_s"] = statistics.mean(local)
        result["allreduce_share"] = max(0.0, 1 - result["no_sync_step_s"] / result["step_s"])
        dist.barrier()
        dist.destroy_process_group()
    print("RESULT " + json.dumps(result), flush=True)


def _result(text: str) -> dict:
    lines = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"a run printed no result:\n{text[-3000:]}")
    return json.loads(lines[-1][7:])


def part_ddp() -> list[dict]:
    from netns import Namespaces

    rows = []
    for size in SIZES:
        one = subprocess.run(
            [sys.executable, __file__, "--worker", size, "0", "1", "-", "0"],
            capture_output=True, text=True, env={**os.environ, **ENV}, timeout=900,
        )  # fmt: skip
        single = _result(one.stdout + one.stderr)
        spaces = Namespaces()
        try:
            a, b = spaces.add("b0"), spaces.add("b1")
            addr, _, if_a, if_b = spaces.link(a, b)
            procs = []
            for rank, (ns, ifname) in enumerate(((a, if_a), (b, if_b))):
                env = {**os.environ, **ENV, "GLOO_SOCKET_IFNAME": ifname}
                cmd = [sys.executable, __file__, "--worker", size, str(rank), "2", addr, "29611"]
                procs.append(
                    spaces.spawn(
                        ns,
                        cmd,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        env=env,
                    )  # fmt: skip
                )
            ranks = [_result(p.communicate(timeout=900)[0]) for p in procs]
        finally:
            spaces.close()
        two_rate = GLOBAL_BATCH / max(r["step_s"] for r in ranks)
        row = {
            "size": size,
            "one_samples_per_s": round(single["samples_per_s"], 1),
            "two_samples_per_s": round(two_rate, 1),
            "ratio": round(two_rate / single["samples_per_s"], 2),
            "allreduce_share": round(statistics.mean(r["allreduce_share"] for r in ranks), 3),
        }
        rows.append(row)
        print(f"[ddp] {json.dumps(row)}", flush=True)
    return rows


def _lab_grid_command(model: str, data: str, out: str, storage: str) -> list[str]:
    return [
        sys.executable, os.path.join(REPO, "recipes", "lab.py"), "--model_name_or_path", model,
        "--train_file", data, "--output_dir", out, "--storage", storage, "--study_name", "bench",
        "--strategies", "full", "llrd", "--learning_rates", "3e-3", "1e-3", "3e-4",
        "--seeds", "2", "--num_train_epochs", "2", "--per_device_train_batch_size", "8",
        "--use_cpu", "--prune", "false", "--heartbeat_seconds", "5",
    ]  # fmt: skip


def part_lab() -> list[dict]:
    from conftest import make_tiny_bert, sentiment_rows, write_csv
    from pg_server import PgServer

    work = tempfile.mkdtemp(prefix="tl_hf_bench_multi_")
    model = make_tiny_bert(os.path.join(work, "bert"))
    data = write_csv(os.path.join(work, "train.csv"), sentiment_rows(120))
    rows = []
    for workers in (1, 2, 3):
        server = PgServer()
        try:
            start = time.time()
            procs = [
                subprocess.Popen(
                    _lab_grid_command(
                        model, data, os.path.join(work, f"w{workers}_{i}"), server.url()
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={**os.environ, **ENV},
                )  # fmt: skip
                for i in range(workers)
            ]
            codes = [p.wait(timeout=1800) for p in procs]
            wall = time.time() - start
        finally:
            server.stop()
        row = {"workers": workers, "trials": 12, "wall_s": round(wall, 1),
               "trials_per_min": round(12 / wall * 60, 1), "exit": codes}  # fmt: skip
        rows.append(row)
        print(f"[lab] {json.dumps(row)}", flush=True)
    return rows


def _db_cost(url: str, n: int = 40) -> float:
    import optuna
    from optuna.trial import TrialState

    import tl_hf.lab.study as st

    study = st.open_study(url, "bench_db", "maximize", "none", 30.0)
    specs = [{"key": f"k{i}", "config": "c", "seed": i} for i in range(n)]
    start = time.perf_counter()
    st.enqueue_missing(study, specs)
    for _ in range(n):
        trial = st.pop_trial(study)
        for k in range(8):
            trial.set_user_attr(f"a{k}", k)
        if hasattr(study._storage, "record_heartbeat"):
            study._storage.record_heartbeat(trial._trial_id)
        for epoch in range(3):
            trial.report(0.5 + epoch / 10, epoch)
        study.tell(trial, 0.7, state=TrialState.COMPLETE)
    del optuna
    return (time.perf_counter() - start) / n * 1000


def part_db() -> dict:
    from pg_server import PgServer

    work = tempfile.mkdtemp(prefix="tl_hf_bench_db_")
    sqlite_ms = _db_cost(f"sqlite:///{os.path.join(work, 'lab.db')}")
    server = PgServer()
    try:
        pg_ms = _db_cost(server.url())
    finally:
        server.stop()
    row = {"sqlite_ms_per_trial": round(sqlite_ms, 1), "postgresql_ms_per_trial": round(pg_ms, 1)}
    print(f"[db] {json.dumps(row)}", flush=True)
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        size, rank, world, address, port = sys.argv[2:7]
        return worker(size, int(rank), int(world), address, int(port))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("ddp", "lab", "db", "all"), default="all")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    out = {}
    for part, run in (("db", part_db), ("ddp", part_ddp), ("lab", part_lab)):
        if args.part in (part, "all"):
            out[part] = run()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=2)


if __name__ == "__main__":
    main()
