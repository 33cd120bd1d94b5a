"""The lab's page (`tl-hf ui`) in a real headless Chromium on a tiny-BERT lab: controls queue a
trial that a worker (`tl-hf lab --worker`, started by the page's server) trains while its curve
grows on the page; a running trial stops; a bad value is refused in the page with the command
line's message and queues nothing; two pages see the same new trial; a restarted server shows
the same trials; with --host every route needs the token."""

import json
import os
import time
import urllib.error
import urllib.request

import pytest
from chromium import Browser, find_chromium
from conftest import REPO, free_port, sentiment_rows, write_csv

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="Debian chromium is not installed")


def _wait(check, timeout: float, what: str, every: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _body(raw: bytes):
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return raw.decode()


def _get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, _body(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, _body(err.read())


def _post(url: str, body: dict, headers: dict | None = None):
    hdrs = {"Content-Type": "application/json", "X-TLHF": "1", **(headers or {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=hdrs)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture(scope="module")
def lab_dir(tiny_bert, tmp_path_factory):
    """A lab study with its arguments recorded and no trial yet (`open_session`): the page
    queues every trial. 300 training rows, no early stopping: an epoch lasts long enough to
    watch a curve grow."""
    from tl_hf.config import build_args_with
    from tl_hf.lab import LabArguments, open_session

    root = tmp_path_factory.mktemp("labui")
    data = write_csv(root / "train.csv", sentiment_rows(500))
    base, (lab,) = build_args_with(
        "text",
        None,
        extra=(LabArguments,),
        model_name_or_path=tiny_bert,
        train_file=data,
        output_dir=str(root / "lab"),
        strategies=["frozen"],
        learning_rates=["3e-3"],
        seeds=1,
        num_train_epochs=6,
        per_device_train_batch_size=8,
        validation_split_percentage=25,
        test_split_percentage=20,
        early_stopping_patience=0,
        use_cpu=True,
    )
    open_session(base, lab)
    return str(root / "lab")


@pytest.fixture(scope="module")
def server(lab_dir):
    """The page's server in this process; its workers are subprocesses running this tree."""
    from tl_hf.lab.ui import start_in_thread

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = REPO
    port = free_port()
    running = start_in_thread(lab_dir, port=port, keep=1)
    yield running, f"http://127.0.0.1:{port}"
    running.stop()
    os.environ.pop("PYTHONPATH") if old is None else os.environ.update(PYTHONPATH=old)


@pytest.fixture(scope="module")
def browser():
    with Browser(width=1280, height=1000) as b:
        yield b


def _click(browser, selector: str, fraction: float = 0.5) -> None:
    """A real mouse click at `fraction` of the element's width (a slider jumps there)."""
    rect = browser.eval(
        f"(r=>[r.left,r.top,r.width,r.height])(document.querySelector({json.dumps(selector)})"
        ".getBoundingClientRect())"
    )
    x, y = rect[0] + rect[2] * fraction, rect[1] + rect[3] / 2
    browser.mouse("mouseMoved", x, y)
    browser.mouse("mousePressed", x, y, button="left", clicks=1)
    browser.mouse("mouseReleased", x, y, button="left", clicks=1)


def _rows(browser) -> dict:
    """number -> state of the trials table on the page."""
    rows = browser.eval(
        "[...document.querySelectorAll('#trials-table tbody tr')].map(r=>[+r.dataset.n,r.dataset.state])"
    )
    return dict(rows or [])


def _metric_points(browser, number: int) -> int:
    """Dots of trial `number`'s validation accuracy curve drawn on the page."""
    key = json.dumps(f"metric:#{number} accuracy")
    return browser.eval(
        f"document.querySelectorAll('#charts g[data-k=' + JSON.stringify({key}) + '] circle').length"
    )


def _study_trials(base_url: str) -> list[dict]:
    return _get(f"{base_url}/api/state")[1]["trials"]


def test_run_from_the_page_and_watch_it_finish(server, browser):
    _, url = server
    browser.open(url + "/", settle=1.0)
    _wait(
        lambda: browser.eval("document.getElementById('q-strategy').options.length"), 20, "the form"
    )
    assert browser.eval("document.getElementById('q-layers').max") == "2"  # the tiny BERT's blocks
    _click(browser, "#q-layers", 0.5)  # the slider: 0..2, the middle is 1
    _click(browser, "#q-lr", 0.75)  # log10 scale from -7 to -1: about 3e-3
    layers = int(browser.eval("document.getElementById('q-layers').value"))
    rate = float(browser.eval("document.getElementById('q-lr-v').value"))
    assert layers == 1 and 1e-3 < rate < 1e-2
    _click(browser, "#q-run")
    text = _wait(lambda: browser.eval("document.getElementById('q-msg').textContent"), 20, "queued")
    assert text.startswith("queued 1 trial"), text
    number = int(text.rsplit("#", 1)[1])
    _wait(lambda: number in _rows(browser), 15, "the new trial in the table")
    seen = set()
    deadline = time.time() + 180  # generous: CI machines are shared
    while time.time() < deadline and _rows(browser).get(number) != "complete":
        seen.add(_metric_points(browser, number))
        time.sleep(0.1)
    assert _rows(browser).get(number) == "complete"
    time.sleep(0.8)
    seen.add(_metric_points(browser, number))
    assert max(seen) == 6, seen  # one dot per epoch in the end ...
    assert len({s for s in seen if 0 < s < 6}) >= 1, seen  # ... and fewer while it trained
    trial = next(t for t in _study_trials(url) if t["number"] == number)
    assert trial["trainable_layers"] == 1 and trial["learning_rate"] == pytest.approx(
        rate, rel=1e-3
    )
    assert trial["state"] == "complete" and trial["trainable_params"] > 66  # a block trains


def test_stop_a_running_trial(server, browser):
    _, url = server
    status, answer = _post(
        f"{url}/api/queue",
        {"strategy": "frozen", "learning_rate": "1e-3", "trainable_layers": 2, "seeds": 1,
         "num_train_epochs": 200, "augment_set": "none"},
    )  # fmt: skip
    assert status == 200, answer
    number = answer["trials"][0]
    _wait(lambda: _rows(browser).get(number) == "running", 60, "the trial running")
    browser.eval(f"document.querySelector('#trials-table input[data-n=\"{number}\"]').click()")
    _wait(lambda: _metric_points(browser, number) >= 1, 30, "its first evaluation")
    browser.eval(f"document.querySelector('[data-stop=\"{number}\"]').click()")
    _wait(lambda: _rows(browser).get(number) == "stopped", 30, "the trial stopped")
    trial = next(t for t in _study_trials(url) if t["number"] == number)
    assert 1 <= trial["pruned_at_epoch"] < 200 and trial["objective_value"] is not None
    assert "stopping" in browser.eval("document.getElementById('q-msg').textContent")


def test_a_killed_workers_trial_runs_again(server, browser):
    import signal

    running, url = server
    body = {"strategy": "frozen", "learning_rate": "2e-3", "trainable_layers": 2, "seeds": 1,
            "num_train_epochs": 150, "augment_set": "none"}  # fmt: skip
    status, answer = _post(f"{url}/api/queue", body)
    assert status == 200, answer
    number = answer["trials"][0]
    _wait(lambda: _rows(browser).get(number) == "running", 60, "the trial running")
    (worker,) = [p for p in running.workers.procs if p.poll() is None]
    os.kill(worker.pid, signal.SIGKILL)
    again = _wait(  # the page's server closes it and queues it again, as a worker would
        lambda: [
            n for n, s in _rows(browser).items() if n > number and s in ("waiting", "running")
        ],
        120,  # a loaded 2-core machine: the server's two looks, a worker's start
        "the trial queued again",
    )
    assert number not in _rows(browser)  # the interrupted record is closed, its key lives on
    rows = {t["number"]: t for t in _study_trials(url)}
    assert rows[again[0]]["config"] == rows_config(body)
    assert _post(f"{url}/api/trials/{again[0]}/stop", {})[0] == 200  # not to train it again
    _wait(lambda: _rows(browser).get(again[0]) in ("stopped", "failed"), 60, "the rerun stopped")


def rows_config(body: dict) -> str:
    return f"frozen lr={float(body['learning_rate']):.3g} layers=2 epochs=150 aug=none"


def test_bad_value_is_refused_in_the_page_and_nothing_queued(server, browser):
    _, url = server
    before = len(_study_trials(url))
    browser.eval(
        "(e=>{e.value='-1';e.dispatchEvent(new Event('change'))})(document.getElementById('q-lr-v'))"
    )
    _click(browser, "#q-run")
    _wait(
        lambda: browser.eval("document.getElementById('q-msg').className") == "error", 10, "error"
    )
    assert browser.eval("document.getElementById('q-msg').textContent") == (
        "--learning_rates must be positive"  # the command line's own message
    )
    status, answer = _post(
        f"{url}/api/queue",
        {"strategy": "frozen", "learning_rate": "1e-3", "trainable_layers": 5, "seeds": 1,
         "num_train_epochs": 2, "augment_set": "none"},
    )  # fmt: skip
    assert status == 400 and answer["detail"] == (
        "--trainable_layers 5 exceeds the 2 blocks of BertForSequenceClassification"
    )
    status, answer = _post(
        f"{url}/api/queue",
        {"strategy": "frozen", "learning_rate": "1e-3", "trainable_layers": 0, "seeds": 1,
         "num_train_epochs": 2, "augment_set": "nonsense"},
    )  # fmt: skip
    assert status == 400 and answer["detail"].startswith("unknown augmentation 'nonsense'")
    assert len(_study_trials(url)) == before


def test_two_pages_see_the_same_new_trial(server, browser):
    _, url = server
    with Browser(width=1000, height=800) as other:
        other.open(url + "/", settle=0.5)
        _wait(lambda: _rows(other), 30, "the second page's table")
        status, answer = _post(
            f"{url}/api/queue",
            {"strategy": "full", "learning_rate": "1e-4", "trainable_layers": 0, "seeds": 1,
             "num_train_epochs": 1, "augment_set": "none"},
        )  # fmt: skip
        assert status == 200, answer
        number = answer["trials"][0]
        _wait(lambda: number in _rows(other), 10, "the trial on the second page")
        _wait(lambda: number in _rows(browser), 10, "the trial on the first page")


def test_mark_a_winner_shows_its_command(server, browser):
    _, url = server
    browser.open(url + "/", settle=0.5)
    _wait(
        lambda: browser.eval("!!document.querySelector('#summary button[data-win]')"), 10, "ranks"
    )
    config = browser.eval("document.querySelector('#summary button[data-win]').dataset.win")
    browser.eval("document.querySelector('#summary button[data-win]').click()")
    command = _wait(
        lambda: browser.eval("(e=>e&&e.textContent)(document.getElementById('winner-command'))"),
        10,
        "the winner's command",
    )
    assert command.startswith("python recipes/text_classify.py ") and "--strategy " in command
    assert _get(f"{url}/api/state")[1]["marked_winner"]["config"] == config


def test_playbook_trail_and_probe_show_when_present(server, lab_dir, browser):
    _, url = server
    trail = [{"step": "1. frozen baseline", "ran": True, "why": "always first"}]
    probe = {"depths": [0, 1, 2], "accuracy": [0.5, 0.7, 0.9], "num_blocks": 2}
    with open(os.path.join(lab_dir, "playbook.json"), "w") as f:
        json.dump({"trail": trail, "probe": probe, "winner": None}, f)
    try:
        browser.open(url + "/", settle=0.5)
        text = _wait(
            lambda: browser.eval(
                "document.getElementById('playbook-card').hidden?'':document.getElementById('playbook').innerText"
            ),
            10,
            "the trail",
        )
        assert "1. frozen baseline (ran): always first" in text
        assert browser.eval("document.querySelectorAll('#q-probe polyline').length") == 1
    finally:
        os.remove(os.path.join(lab_dir, "playbook.json"))


def test_static_routes_and_guards(server):
    _, url = server
    assert _get(f"{url}/static/app.js")[0] == 200
    assert _get(f"{url}/static/..%2F..%2Fstate.py")[0] == 404
    assert _get(f"{url}/api/curves?trials=../../etc,1x")[1] == {}  # numbers only name files
    version = _get(f"{url}/api/state")[1]["version"]
    assert _get(f"{url}/api/state?v={version}")[1]["same"] is True
    request = urllib.request.Request(f"{url}/api/workers", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:  # no JSON header: no cross-site form
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert _get(f"{url}/api/state", {"Host": "evil.example:80"})[0] == 421  # DNS rebinding


def test_restarted_server_shows_the_same_trials(server, lab_dir, browser):
    from tl_hf.lab.ui import start_in_thread

    running, url = server
    _wait(lambda: all(t["state"] not in ("running", "waiting") for t in _study_trials(url)), 240,
          "the queue to drain")  # fmt: skip
    before = {t["number"]: t["state"] for t in _study_trials(url)}
    running.stop()
    port = free_port()
    again = start_in_thread(lab_dir, port=port, keep=0)
    try:
        browser.open(f"http://127.0.0.1:{port}/", settle=0.5)
        assert _wait(lambda: _rows(browser), 30, "the table") == before
    finally:
        again.stop()


def test_host_needs_the_token(lab_dir, capsys):
    from tl_hf.lab.ui import start_in_thread

    port = free_port()
    running = start_in_thread(lab_dir, port=port, host="127.0.0.1", keep=0)
    try:
        printed = capsys.readouterr().out
        token = printed.split("?token=", 1)[1].split()[0]
        url = f"http://127.0.0.1:{port}"
        for path in ("/", "/api/state", "/api/form", "/static/app.js"):
            assert _get(url + path)[0] == 401, path
        assert _get(f"{url}/api/state?token=wrong")[0] == 401
        assert _post(f"{url}/api/workers", {})[0] == 401
        assert _get(f"{url}/api/state", {"X-TLHF-Token": token})[0] == 200
        with Browser(width=900, height=600) as page:
            page.open(f"{url}/", settle=0.3)
            assert "a token is required" in page.eval("document.body.innerText")
            page.open(f"{url}/?token={token}", settle=0.5)
            assert _wait(lambda: _rows(page), 30, "the table with the token")
    finally:
        running.stop()


def test_ui_on_a_folder_without_a_lab_is_one_line_and_writes_nothing(tmp_path, capsys):
    from tl_hf.cli.main import main

    assert main(["ui", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no lab study" in err[0]
    assert list(tmp_path.iterdir()) == []  # no empty lab.db left behind
    assert main(["lab", "--worker", "--output_dir", str(tmp_path / "none")]) == 2
    assert "start the lab first" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_a_write_during_a_read_is_not_hidden_by_the_cache(tmp_path):
    """The stamp is taken before the study is read: a trial closed while the page reads
    shows at the next look (the stale cache once hid a cancelled trial for good)."""
    import threading

    from tl_hf.lab.ui.state import LabView

    db = tmp_path / "lab.db"
    db.write_text("v1")
    view = LabView.__new__(LabView)
    view.storage, view.lab_dir = f"sqlite:///{db}", str(tmp_path)
    view.lock, view._cache, view._running = threading.Lock(), None, []
    states = iter(["waiting", "failed"])

    def read():
        data = {"trials": [{"number": 1, "state": next(states)}]}
        db.write_text("v2 -- the page's stop lands while the study is read")
        return data

    view._read = read
    assert view.snapshot()["trials"][0]["state"] == "waiting"
    assert view.snapshot()["trials"][0]["state"] == "failed"
