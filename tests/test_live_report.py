"""The live report.html: written from the first step, redrawn while a real Trainer runs
(seen in headless Chromium between two screenshots), frozen into the final report with the
best-epoch and early-stop markers; and the folder served on 127.0.0.1 (--monitor_port)."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request

import pytest
from chromium import Browser, find_chromium

from tests.run_folder import synthetic_history, tiny_text_model

# Best at epoch 2, then two evaluations without improvement: patience 2 stops after epoch 4.
SCORES = [0.2, 0.6, 0.5, 0.4, 0.9, 0.95]


def test_live_payload_counts_patience_and_thins_steps():
    from tl_hf.report.live import MAX_POINTS, live_payload

    history = synthetic_history(
        [0.9, 0.6, 0.52, 0.55, 0.6], [1.0, 0.6, 0.45, 0.35, 0.3], patience=3
    )
    assert live_payload(history)["patience_left"] == 1  # best at epoch 3, two evaluations since
    history["train"] = [{"step": i, "epoch": i / 100, "loss": 1.0} for i in range(10 * MAX_POINTS)]
    payload = live_payload(history, step=7)
    assert (
        len(payload["train"]) <= MAX_POINTS + 1
        and payload["train"][-1]["step"] == 10 * MAX_POINTS - 1
    )
    assert payload["step"] == 7 and "after_training" not in payload


def test_live_page_is_self_contained_and_final_marker_reloads(tmp_path):
    from tl_hf.report.live import LIVE_DATA_FILE, live_payload, mark_final, write_live

    history = synthetic_history([0.9, 0.6], [1.0, 0.6])
    history["note"] = "</script><!--"  # must not end the inline script
    write_live(tmp_path, live_payload(history), "run <1>", page_too=True)
    page = (tmp_path / "report.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"(src|href)=\"https?:", page) and "fetch(" not in page
    assert "</script><!--" not in page and "run &lt;1&gt;" in page
    data = (tmp_path / LIVE_DATA_FILE).read_text()
    assert data.startswith("tlhfLiveUpdate(") and '"best_epoch":2' in data
    mark_final(tmp_path)
    assert (tmp_path / LIVE_DATA_FILE).read_text() == 'tlhfLiveUpdate({"final":true});\n'


def test_monitor_port_serves_the_folder_on_loopback(tmp_path):
    from tl_hf.errors import UserError
    from tl_hf.report.live import serve_output_dir

    (tmp_path / "report.html").write_text("<p>live</p>")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve_output_dir(tmp_path, port)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/report.html", timeout=5) as reply:
            assert reply.read() == b"<p>live</p>"
            assert reply.headers["Cache-Control"] == "no-store"
        with pytest.raises(UserError, match="--monitor_port"):
            serve_output_dir(tmp_path, port)  # taken
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(find_chromium() is None, reason="needs Debian chromium (scripts/setup.sh)")
def test_page_updates_during_a_run_and_freezes_into_the_report(tmp_path, monkeypatch):
    import torch
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

    import tl_hf.report.live as live
    from tl_hf.report import MonitorCallback, write_report_html

    monkeypatch.setattr(live, "REFRESH_SECONDS", 0.2)  # the page polls every 0.2 s
    model, tokenizer = tiny_text_model()
    texts = ["the movie was good", "the plot was awful", "okay movie", "great plot"] * 2
    data = Dataset.from_dict({"text": texts, "label": [i % 3 for i in range(len(texts))]})
    data = data.map(
        lambda b: tokenizer(b["text"], padding="max_length", max_length=8), batched=True
    )
    data = data.remove_columns("text")
    calls = []

    def compute_metrics(_):
        calls.append(1)
        return {"score": SCORES[len(calls) - 1]}

    page = tmp_path / "report.html"
    seen = {}

    def look(browser, name):
        time.sleep(0.6)  # a few polls: the page has read the sidecar just written
        browser.screenshot(tmp_path / f"{name}.png")
        return {
            "png": (tmp_path / f"{name}.png").read_bytes(),
            "head": browser.eval("document.querySelector('.tlhf-head').innerText"),
            "dots": browser.eval("document.querySelectorAll('[data-panel=val] circle').length"),
        }

    class Watcher(TrainerCallback):  # runs after MonitorCallback: sees what it just wrote
        def __init__(self, browser):
            self.browser = browser

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                seen["page_before_first_step"] = page.is_file()

        def on_evaluate(self, args, state, control, **kwargs):
            if len(calls) == 1:
                self.browser.open(page.as_uri())
                seen["epoch1"] = look(self.browser, "epoch1")
            elif len(calls) == 3:
                seen["epoch3"] = look(self.browser, "epoch3")

    args = TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=len(SCORES),
        per_device_train_batch_size=4,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_steps=1,
        load_best_model_at_end=True,
        metric_for_best_model="score",
        save_total_limit=1,
        report_to="none",
        use_cpu=True,
    )
    with Browser(width=1100, height=900) as browser:
        monitor = MonitorCallback(early_stopping_patience=2, title="live test")
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=data,
            eval_dataset=data,
            compute_metrics=compute_metrics,
            callbacks=[EarlyStoppingCallback(2), monitor, Watcher(browser)],
        )
        torch.manual_seed(0)
        trainer.train()
        first, third = seen["epoch1"], seen["epoch3"]
        assert seen["page_before_first_step"]
        assert "running" in first["head"] and "epoch 1 / 6" in first["head"]
        assert "epoch 3 / 6" in third["head"] and "patience left 1 / 2" in third["head"]
        assert "best epoch 2" in third["head"]
        assert first["png"] != third["png"]
        # one point per validation metric and epoch: 1 evaluation, then 3
        assert (first["dots"], third["dots"]) == (1, 3)
        # the final report replaces the page; the open page reloads into it by itself
        write_report_html(tmp_path)
        deadline = time.time() + 10
        while time.time() < deadline and not browser.eval("!!document.querySelector('h1')"):
            time.sleep(0.1)
        time.sleep(0.3)
        h1 = browser.eval("document.querySelector('h1') && document.querySelector('h1').innerText")
        assert h1 and h1.startswith("tl-hf report")
        head = browser.eval("document.querySelector('.tlhf-head').innerText")
        markers = browser.eval(
            "[...document.querySelectorAll('[data-panel=loss] .marker')].map(m => m.dataset.kind + ':' + m.textContent)"
        )
        browser.screenshot(tmp_path / "final.png")
    assert "early-stopped" in head and "best epoch 2" in head
    assert markers == ["best:best epoch 2", "stop:early stop"]
    assert '"live":null' in page.read_text()  # the final page polls nothing
    history = json.loads((tmp_path / "training_history.json").read_text())
    assert history["early_stopped"] and history["best_epoch"] == 2
    assert monitor.live_writes > len(history["eval"])  # logging steps too, not only evaluations


def zoom(browser) -> tuple[float, float]:
    hint = browser.eval("document.querySelector('.hint').innerText")
    low, high = re.search(r"zoom: epoch ([\d.]+)–([\d.]+)", hint).groups()
    return float(low), float(high)


@pytest.mark.skipif(find_chromium() is None, reason="needs Debian chromium (scripts/setup.sh)")
def test_hover_toggle_and_zoom_survive_a_live_update(tmp_path, monkeypatch):
    import tl_hf.report.live as live

    monkeypatch.setattr(live, "REFRESH_SECONDS", 0.2)
    history = synthetic_history([0.9, 0.6, 0.52], [1.0, 0.6, 0.45], patience=2)
    history.update(finished=False, num_train_epochs=6)
    live.write_live(tmp_path, live.live_payload(history), "interaction", page_too=True)
    with Browser(width=1000, height=900) as browser:
        browser.open((tmp_path / "report.html").as_uri())
        box = browser.eval(
            "(() => { const r = document.querySelector('[data-panel=loss] svg').getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })()"
        )
        left, top, width, height = box
        # the plot area starts 58 px in and ends 14 px before the right edge; x is 0..6 epochs
        x_of = lambda epoch: left + 58 + epoch / 6 * (width - 72)  # noqa: E731
        y = top + height / 2
        head = browser.eval("document.querySelector('.tlhf-head').innerText")
        assert "epoch 3 / 6" in head and "patience left 2 / 2" in head
        # hover: a tooltip with the epoch and the values there
        browser.mouse("mouseMoved", x_of(2), y)
        tip = browser.eval("document.querySelector('.tlhf-tip').innerText")
        assert tip.startswith("epoch 2") and "validation loss: 0.6" in tip
        # toggle: a legend click hides the train loss curve
        lines = "document.querySelectorAll('[data-panel=loss] polyline').length"
        assert browser.eval(lines) == 2
        browser.eval("document.querySelector('[data-panel=loss] .legend span').click()")
        assert browser.eval(lines) == 1
        # zoom: drag from epoch 1 to epoch 3
        browser.mouse("mousePressed", x_of(1), y, button="left", clicks=1)
        browser.mouse("mouseMoved", x_of(3), y, button="left")
        browser.mouse("mouseReleased", x_of(3), y, button="left", clicks=1)
        assert zoom(browser) == pytest.approx((1, 3), abs=0.02)
        # the run goes on: new data arrives, the reader's zoom and hidden series stay
        history["eval"].append({**history["eval"][-1], "epoch": 4.0, "step": 40})
        live.write_live(
            tmp_path, live.live_payload(history, step=40, epoch=4.0), "x", page_too=False
        )
        time.sleep(0.8)
        head = browser.eval("document.querySelector('.tlhf-head').innerText")
        assert (
            "epoch 4 / 6" in head and "step 40" in head and "patience left 1 / 2" in head
        )  # counting down
        assert zoom(browser) == pytest.approx((1, 3), abs=0.02)
        assert browser.eval(lines) == 1
