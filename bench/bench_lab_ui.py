"""What the lab's page (`tl-hf ui`) costs and how fast it follows a study, in headless Chromium:

1. latency from a logged metric to the page: a synthetic running trial is written the way a
   real one is (the monitor's `training_history.json` + live sidecar, `trial.report` to the
   study, once per "epoch"); the page, with the trial ticked, stamps each new dot of its curve;
   latency = page stamp - write time (one clock), median and max over the run;
2. a study of 300 trials x 30 evaluations (synthetic records in a real SQLite study): the
   `/api/state` answer (cold and cached), the page's first full table, a re-sort, and ticking 10
   trials until their curves are drawn;
3. idle CPU of the server (`tl-hf ui` as its own process) and of one open page (Chromium's
   whole process tree), over `--idle_s` seconds while nothing trains.

    PYTHONPATH=. python bench/bench_lab_ui.py [--evals 20] [--idle_s 30]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, HERE)
from _common import table  # noqa: E402
from chromium import Browser  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, timeout: float, every: float = 0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError


def make_study(lab_dir: str, trials: int, evals: int, running: bool = False):
    """A lab study with `trials` finished trials of `evals` evaluations (and their history
    files), plus one RUNNING trial when asked; returns (study, running trial or None)."""
    import random

    import optuna
    from optuna.trial import TrialState

    from tl_hf.lab.grid import TrialSpec
    from tl_hf.lab.study import open_study
    from tl_hf.report.history import atomic_write

    os.makedirs(lab_dir, exist_ok=True)
    study = open_study(
        f"sqlite:///{lab_dir}/lab.db", os.path.basename(lab_dir), "maximize", "none", 30
    )
    rng = random.Random(0)
    strategies = ("frozen", "full", "llrd")
    for n in range(trials):
        spec = TrialSpec(strategies[n % 3], 10 ** -(2 + n % 4), None, None, "none", 42 + n // 12)
        curve = {
            e: min(1.0, 0.5 + 0.5 * (1 - 0.9**e) + rng.gauss(0, 0.01)) for e in range(1, evals + 1)
        }
        attrs = {**spec.attrs(), "best_epoch": max(curve, key=curve.get), "stopped_epoch": evals,
                 "train_time_s": rng.uniform(10, 100), "trainable_params": 10_000 + n}  # fmt: skip
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                value=curve[evals],
                intermediate_values=curve,
                user_attrs=attrs,
                distributions={},
                params={},
            )  # fmt: skip
        )
        folder = os.path.join(lab_dir, "trials", f"trial_{n:04d}")
        os.makedirs(folder, exist_ok=True)
        history = {"train": [{"step": e * 10, "epoch": e, "loss": 1 / e} for e in curve],
                   "eval": [{"step": e * 10, "epoch": e, "eval_loss": 1 / e, "eval_accuracy": v} for e, v in curve.items()],
                   "learning_rates": [], "best_epoch": attrs["best_epoch"], "finished": True,
                   "num_train_epochs": evals}  # fmt: skip
        atomic_write(os.path.join(folder, "training_history.json"), json.dumps(history).encode())
    trial = None
    if running:
        spec = TrialSpec("full", 1e-4, None, None, "none", 1)
        study.enqueue_trial({}, user_attrs=spec.attrs())
        from tl_hf.lab.study import pop_trial

        trial = pop_trial(study)
    return study, trial


def latency(evals: int, every_s: float) -> list[float]:
    """Seconds from a written evaluation to its dot on the page, one per evaluation."""
    from tl_hf.lab.ui import start_in_thread
    from tl_hf.report.history import atomic_write
    from tl_hf.report.live import write_live

    lab_dir = tempfile.mkdtemp(prefix="tlhf-ui-latency-")
    study, trial = make_study(lab_dir, 3, 5, running=True)
    folder = os.path.join(lab_dir, "trials", f"trial_{trial.number:04d}")
    os.makedirs(folder, exist_ok=True)
    port = _port()
    running = start_in_thread(lab_dir, port=port, keep=0)
    history = {"train": [], "eval": [], "learning_rates": [], "num_train_epochs": evals}
    written = []
    try:
        with Browser(width=1280, height=900) as page:
            page.open(f"http://127.0.0.1:{port}/", settle=0.5)
            _wait(
                lambda: page.eval(f"!!document.querySelector('input[data-n=\"{trial.number}\"]')"),
                10,
            )
            page.eval(f"document.querySelector('input[data-n=\"{trial.number}\"]').click()")
            key = json.dumps(f"metric:#{trial.number} accuracy")
            page.eval(
                "window.seen=[];let last=0;setInterval(()=>{const n=document.querySelectorAll("
                f"'#charts g[data-k=' + JSON.stringify({key}) + '] circle').length;"
                "if(n>last){for(let i=last;i<n;i++)window.seen.push(Date.now()/1000);last=n}},5)"
            )
            for epoch in range(1, evals + 1):
                time.sleep(every_s)
                value = 0.5 + epoch / (2 * evals)
                written.append(time.time())  # the evaluation is logged from here on
                history["train"].append({"step": epoch * 10, "epoch": epoch, "loss": 1 / epoch})
                history["eval"].append({"step": epoch * 10, "epoch": epoch, "eval_accuracy": value})
                atomic_write(
                    os.path.join(folder, "training_history.json"), json.dumps(history).encode()
                )
                write_live(folder, {**history, "epoch": epoch, "eta_s": 1.0}, "bench", False)
                trial.report(value, epoch)  # what ReportToOptuna does after each evaluation
            _wait(lambda: len(page.eval("window.seen")) >= evals, 10)
            seen = page.eval("window.seen")
    finally:
        running.stop()
    return [s - w for s, w in zip(seen, written)]


def render(trials: int, evals: int) -> dict[str, float]:
    """The 300-trial study: API answer times and the page's render times (seconds)."""
    from tl_hf.lab.ui import start_in_thread

    lab_dir = tempfile.mkdtemp(prefix="tlhf-ui-render-")
    started = time.perf_counter()
    make_study(lab_dir, trials, evals)
    out = {"write the synthetic study": time.perf_counter() - started}
    port = _port()
    t = time.perf_counter()
    running = start_in_thread(lab_dir, port=port, keep=0)
    out["server start (opens and reads the study once)"] = time.perf_counter() - t
    url = f"http://127.0.0.1:{port}"
    try:
        t = time.perf_counter()
        body = urllib.request.urlopen(f"{url}/api/state").read()
        out["/api/state, first page request"] = time.perf_counter() - t
        out["/api/state size (MB)"] = len(body) / 2**20
        version = json.loads(body)["version"]
        t = time.perf_counter()
        urllib.request.urlopen(f"{url}/api/state?v={version}").read()
        out["/api/state, unchanged (version check)"] = time.perf_counter() - t
        with Browser(width=1280, height=1000) as page:
            t = time.perf_counter()
            page.send("Page.navigate", url=url + "/")
            rows = f"document.querySelectorAll('#trials-table tbody tr').length==={trials}"
            _wait(lambda: page.eval(rows), 30, every=0.005)
            out["page: open until all rows shown"] = time.perf_counter() - t
            out["page: re-sort the table (in page)"] = page.eval(
                "(()=>{const t=performance.now();document.querySelector('th[data-k=objective_value]').click();"
                "return (performance.now()-t)/1000})()"
            )
            t = time.perf_counter()
            page.eval(
                '[...Array(10).keys()].forEach(i=>document.querySelector(`input[data-n="${i*7}"]`).click())'
            )
            _wait(
                lambda: page.eval(
                    "document.querySelectorAll('#charts g[data-k^=\"metric:\"]').length===10"
                ),
                30,
                every=0.005,
            )
            out["page: tick 10 trials until their curves are drawn"] = time.perf_counter() - t
    finally:
        running.stop()
    return out


def _cpu_seconds(pids) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def _tree(root: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += [c for c, p in parents.items() if p == pid]
    return out


def idle_cpu(trials: int, evals: int, seconds: float) -> dict[str, float]:
    """CPU share of one core: the server process and one open page, nothing training."""
    lab_dir = tempfile.mkdtemp(prefix="tlhf-ui-idle-")
    make_study(lab_dir, trials, evals)
    port = _port()
    env = {**os.environ, "PYTHONPATH": REPO}
    server = subprocess.Popen(
        [sys.executable, "-m", "tl_hf", "ui", lab_dir, "--port", str(port), "--workers", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait(lambda: _answers(port), 60, every=0.2)
        with Browser(width=1280, height=1000) as page:
            page.open(f"http://127.0.0.1:{port}/", settle=3.0)  # first load and draw done
            chrome = _tree(page.proc.pid)
            s0, c0, t0 = _cpu_seconds([server.pid]), _cpu_seconds(chrome), time.time()
            time.sleep(seconds)
            s1, c1, t1 = _cpu_seconds([server.pid]), _cpu_seconds(_tree(page.proc.pid)), time.time()
        with Browser(width=1280, height=1000) as blank:  # what Chromium costs on its own
            blank.open("about:blank", settle=3.0)
            b0, u0 = _cpu_seconds(_tree(blank.proc.pid)), time.time()
            time.sleep(seconds)
            b1, u1 = _cpu_seconds(_tree(blank.proc.pid)), time.time()
    finally:
        server.terminate()
        server.wait(10)
    wall = t1 - t0
    return {
        "server (% of a core)": 100 * (s1 - s0) / wall,
        "page, Chromium tree (% of a core)": 100 * (c1 - c0) / wall,
        "about:blank for reference, Chromium tree (% of a core)": 100 * (b1 - b0) / (u1 - u0),
    }


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=2).read()
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", type=int, default=20, help="evaluations of the latency run")
    parser.add_argument("--every_s", type=float, default=1.0, help="seconds between them")
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--trial_evals", type=int, default=30)
    parser.add_argument("--idle_s", type=float, default=30.0)
    args = parser.parse_args()
    lat = latency(args.evals, args.every_s)
    print(table([["median", f"{statistics.median(lat):.3f}"], ["max", f"{max(lat):.3f}"],
                 ["min", f"{min(lat):.3f}"]], ["metric -> page latency", "seconds"]))  # fmt: skip
    times = render(args.trials, args.trial_evals)
    print(
        table(
            [[k, f"{v:.3f}"] for k, v in times.items()],
            [f"{args.trials} trials x {args.trial_evals} evaluations", "seconds"],
        )
    )
    cpu = idle_cpu(args.trials, args.trial_evals, args.idle_s)
    print(
        table([[k, f"{v:.2f}"] for k, v in cpu.items()], [f"idle over {args.idle_s:g} s", "value"])
    )


if __name__ == "__main__":
    main()
