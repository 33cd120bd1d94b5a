"""Speed paths keep the run's meaning: the cached head's tight loop trains, evaluates, stops
early, checkpoints and resumes as the Trainer's loop does; `--profile` accounts for the run's
time; the monitor does not redraw a picture that did not change."""

import json
import os
import shutil
from types import SimpleNamespace

import pytest
from conftest import sentiment_rows, write_csv

import tl_hf


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("speed") / "train.csv", sentiment_rows(90))


def _frozen(tiny_bert, csv_file, out, **kwargs):
    settings = dict(
        model_name_or_path=tiny_bert,
        dataset_name=csv_file,
        output_dir=str(out),
        strategy="frozen",
        learning_rate=5e-2,
        num_train_epochs=6,
        per_device_train_batch_size=8,
        early_stopping_patience=2,
        validation_split_percentage=20,
        test_split_percentage=20,
        logging_steps=2,
        seed=3,
        use_cpu=True,
    )
    return tl_hf.train_text_classifier(**{**settings, **kwargs})


def _evals(out):
    return json.loads((out / "training_history.json").read_text())["eval"]


def test_head_loop_trains_as_the_trainer_loop_does(tiny_bert, csv_file, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import Trainer

    trainer_loop = _frozen(tiny_bert, csv_file, tmp_path / "trainer", fast_head=False)

    def no_loader(self):
        raise AssertionError("the tight loop must not build a training DataLoader")

    monkeypatch.setattr(Trainer, "get_train_dataloader", no_loader)
    fast = _frozen(tiny_bert, csv_file, tmp_path / "fast")
    a, b = trainer_loop.metrics, fast.metrics
    assert a["cached_features"] is b["cached_features"] is True
    # the same batches in the same order, the same dropout masks, the same schedule: the same
    # evaluations every epoch, the same early stop, the same restored best model
    evals_a, evals_b = _evals(tmp_path / "trainer"), _evals(tmp_path / "fast")
    assert [e["step"] for e in evals_b] == [e["step"] for e in evals_a]
    assert [e["eval_loss"] for e in evals_b] == pytest.approx(
        [e["eval_loss"] for e in evals_a], rel=1e-6
    )
    for key in ("best_epoch", "stopped_epoch", "early_stopped", "test_accuracy"):
        assert b[key] == a[key], key
    for key in ("train_loss", "eval_loss", "test_loss"):
        assert b[key] == pytest.approx(a[key], rel=1e-6), key
    assert os.path.basename(b["best_checkpoint"]) == os.path.basename(a["best_checkpoint"])
    weights_a = load_file(str(tmp_path / "trainer" / "model.safetensors"))
    weights_b = load_file(str(tmp_path / "fast" / "model.safetensors"))
    assert weights_a.keys() == weights_b.keys()
    assert all((weights_a[k] - weights_b[k]).abs().max() < 1e-6 for k in weights_a)
    # the monitor's history: one evaluation per epoch, the loss logged every 2 steps
    history = json.loads((tmp_path / "fast" / "training_history.json").read_text())
    assert [e["epoch"] for e in history["eval"]] == list(range(1, len(evals_b) + 1))
    assert [r["step"] for r in history["train"]][:3] == [2, 4, 6]
    assert b["train_samples_per_second"] > 0


def test_head_loop_resumes_to_the_same_result(tiny_bert, csv_file, tmp_path):
    whole = _frozen(
        tiny_bert, csv_file, tmp_path / "whole", early_stopping_patience=0, save_total_limit=None
    )
    ckpts = sorted(
        (d for d in os.listdir(tmp_path / "whole") if d.startswith("checkpoint-")),
        key=lambda d: int(d.split("-")[1]),
    )
    assert len(ckpts) == 6
    # a run killed after epoch 3: its folder holds the first three checkpoints only
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in ckpts[:3]:
        shutil.copytree(tmp_path / "whole" / name, killed / name)
    state = json.loads((killed / ckpts[2] / "trainer_state.json").read_text())
    for entry in state["log_history"]:  # paths in the copied state point at the copy
        entry.pop("best_model_checkpoint", None)
    if state.get("best_model_checkpoint"):
        state["best_model_checkpoint"] = str(
            killed / os.path.basename(state["best_model_checkpoint"])
        )
    (killed / ckpts[2] / "trainer_state.json").write_text(json.dumps(state))
    resumed = _frozen(
        tiny_bert,
        csv_file,
        killed,
        early_stopping_patience=0,
        save_total_limit=None,
        resume_from_checkpoint=str(killed / ckpts[2]),
    )
    for key in ("eval_loss", "test_loss", "test_accuracy"):
        assert resumed.metrics[key] == pytest.approx(whole.metrics[key], rel=1e-5), key


def test_profile_writes_where_the_time_went(tiny_bert, csv_file, tmp_path, capsys):
    _frozen(tiny_bert, csv_file, tmp_path / "p", num_train_epochs=2, profile=True)
    timings = json.loads((tmp_path / "p" / "timings.json").read_text())
    for phase in ("data: load, augment, preprocess", "model load", "feature cache", "train"):
        assert timings[phase] > 0, phase
    assert timings["evaluation during training"] <= timings["train"]
    top = [
        v
        for k, v in timings.items()
        if k not in ("run_wall", "startup_before_run", "evaluation during training")
        and k not in ("checkpoints", "curves and history files")
    ]
    assert sum(top) <= timings["run_wall"] + 1e-3
    assert "where the time went (--profile)" in capsys.readouterr().out
    # without the flag nothing is written
    _frozen(tiny_bert, csv_file, tmp_path / "q", num_train_epochs=1, early_stopping_patience=0)
    assert not (tmp_path / "q" / "timings.json").exists()


def test_monitor_does_not_redraw_an_unchanged_picture(tmp_path):
    from tl_hf.report import MonitorCallback

    monitor = MonitorCallback(tmp_path)
    args = SimpleNamespace(metric_for_best_model="eval_loss", greater_is_better=None)
    args.num_train_epochs = 2
    state = SimpleNamespace(global_step=0, epoch=0, is_world_process_zero=True, max_steps=4)
    monitor.on_train_begin(args, state, None)
    for epoch, loss in ((1, 0.9), (2, 0.7)):
        state.global_step, state.epoch = 2 * epoch, float(epoch)
        monitor.on_log(args, state, None, logs={"loss": loss + 0.1})
        monitor.on_evaluate(args, state, None, metrics={"eval_loss": loss})
    assert monitor.plot_writes == 2  # one drawing per evaluation
    monitor.on_train_end(args, state, None)  # ran to the end: the picture is the same
    assert monitor.plot_writes == 2
    assert json.loads((tmp_path / "training_history.json").read_text())["finished"] is True
    state.global_step = 3  # stopped before max_steps: the stop marker changes the picture
    monitor.on_train_end(args, state, None)
    assert monitor.plot_writes == 3


def test_numpy_metrics_match_the_shipped_modules_and_sklearn():
    import evaluate
    import numpy as np
    from metrics import metric_path
    from sklearn.metrics import precision_recall_fscore_support
    from transformers import EvalPrediction

    from tl_hf.training.metrics import compute_metrics, per_class_report

    rng = np.random.default_rng(0)
    f1_module = evaluate.load(metric_path("f1"))
    for classes in (2, 5, 7):
        labels = rng.integers(0, classes - 1, 60)  # the last class never occurs in labels
        logits = rng.normal(size=(60, classes))
        m = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
        predictions = logits.argmax(-1)
        expected = f1_module.compute(predictions=predictions, references=labels)["f1"]
        assert m["f1"] == pytest.approx(expected, abs=1e-12)
        assert m["accuracy"] == pytest.approx(float((predictions == labels).mean()))
        names = [f"c{i}" for i in range(classes)]
        report = per_class_report(predictions, labels, names)
        p, r, f, s = precision_recall_fscore_support(
            labels, predictions, labels=list(range(classes)), zero_division=0
        )
        for i, name in enumerate(names):
            row = report[name]
            assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p[i], r[i], f[i]))
            assert row["support"] == s[i]


def test_monitor_draws_within_its_time_budget(tmp_path, monkeypatch):
    import tl_hf.report.monitor as monitor_module
    from tl_hf.report import MonitorCallback

    clock = [100.0]
    monkeypatch.setattr(monitor_module.time, "perf_counter", lambda: clock[0])
    drawn = []

    def draw(history, path):  # a drawing that takes 0.5 s
        clock[0] += 0.5
        drawn.append(len(history["eval"]))
        return {}

    monkeypatch.setattr(monitor_module, "write_training_curves", draw)
    monitor = MonitorCallback(tmp_path, draw_budget=0.1)
    args = SimpleNamespace(metric_for_best_model="eval_loss", greater_is_better=None)
    args.num_train_epochs = 3
    state = SimpleNamespace(global_step=0, epoch=0, is_world_process_zero=True, max_steps=30)
    monitor.on_train_begin(args, state, None)
    for epoch, seconds in ((1, 1.0), (2, 10.0), (3, 1.0)):
        clock[0] += seconds  # the epoch's training time
        state.global_step, state.epoch = 10 * epoch, float(epoch)
        monitor.on_evaluate(args, state, None, metrics={"eval_loss": 1.0 / epoch})
    # epoch 1 came 1 s after the start: a 0.5 s drawing would exceed 10%; epoch 2 came 11 s
    # after it; epoch 3 only 1 s after the drawing of epoch 2
    assert drawn == [2]
    assert len(json.loads((tmp_path / "training_history.json").read_text())["eval"]) == 3
    state.global_step = 30
    monitor.on_train_end(args, state, None)  # the end always shows the whole run
    assert drawn == [2, 3]


def test_bf16_weights_cast_the_backbone_once_and_keep_the_head_float32(
    tiny_bert, csv_file, tmp_path
):
    import torch

    result = tl_hf.train_text_classifier(
        model_name_or_path=tiny_bert,
        dataset_name=csv_file,
        output_dir=str(tmp_path / "b"),
        strategy="full",
        max_steps=2,
        per_device_train_batch_size=8,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        early_stopping_patience=0,
        bf16=True,
        bf16_weights=True,
        eval_batch_scale=4,
        use_cpu=True,
    )
    dtypes = {n: p.dtype for n, p in result.model.named_parameters()}
    assert dtypes["classifier.weight"] == torch.float32
    assert dtypes["bert.encoder.layer.0.attention.self.query.weight"] == torch.bfloat16
    # recorded as given: run_config.yaml reproduces the run, the scale applies once more
    assert result.args.training.per_device_eval_batch_size == 32
    assert result.args.speed.eval_batch_scale == 4
    assert result.metrics["train_loss"] == result.metrics["train_loss"]  # trained, not NaN


def test_speed_flags_are_checked_before_training():
    from tl_hf.config import build_args
    from tl_hf.errors import UserError

    with pytest.raises(UserError, match="--bf16_weights needs --bf16"):
        build_args("text", bf16_weights=True, use_cpu=True)
    with pytest.raises(UserError, match="--eval_batch_scale must be >= 1"):
        build_args("text", eval_batch_scale=0, use_cpu=True)


def _full(tiny_bert, csv_file, out, **kwargs):
    """Full fine-tuning, 4 epochs, every checkpoint kept: the Trainer's own loop and saves."""
    return _frozen(
        tiny_bert,
        csv_file,
        out,
        **{"strategy": "full", "learning_rate": 1e-3, "num_train_epochs": 4, **kwargs},
    )


def test_async_checkpoints_write_what_the_trainer_writes(tiny_bert, csv_file, tmp_path):
    """Background checkpoint writes (the default) and the Trainer's synchronous ones give the
    same folders, the same files and the same tensors, and the same run."""
    import torch
    from safetensors.torch import load_file

    from tl_hf.output.folder import checkpoint_problem

    kept = {"save_total_limit": 5, "early_stopping_patience": 0}
    sync = _full(tiny_bert, csv_file, tmp_path / "sync", async_checkpoints=False, **kept)
    background = _full(tiny_bert, csv_file, tmp_path / "async", **kept)
    assert background.args.speed.async_checkpoints and not sync.args.speed.async_checkpoints
    names = sorted(p.name for p in (tmp_path / "sync").glob("checkpoint-*"))
    assert len(names) == 4
    assert sorted(p.name for p in (tmp_path / "async").glob("checkpoint-*")) == names
    for name in names:
        a, b = tmp_path / "sync" / name, tmp_path / "async" / name
        assert sorted(os.listdir(b)) == sorted(os.listdir(a)), name
        assert checkpoint_problem(str(b), need_monitor=True) is None
        wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        for file in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            sa = torch.load(a / file, weights_only=False)
            sb = torch.load(b / file, weights_only=False)
            assert repr(sa) == repr(sb) or _same_state(sa, sb), (name, file)
        ta = json.loads((a / "trainer_state.json").read_text())
        tb = json.loads((b / "trainer_state.json").read_text())
        assert ta.keys() == tb.keys()
        for key in ("global_step", "epoch", "best_metric", "best_global_step"):
            assert ta[key] == tb[key], key
        assert os.path.basename(ta["best_model_checkpoint"]) == os.path.basename(
            tb["best_model_checkpoint"]
        )
        assert ta["stateful_callbacks"] == tb["stateful_callbacks"]
    for key in ("eval_loss", "test_loss", "test_accuracy", "best_epoch"):
        assert background.metrics[key] == pytest.approx(sync.metrics[key], rel=1e-6), key


def _same_state(a, b) -> bool:
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_training_goes_on_while_a_checkpoint_is_written(tiny_bert, csv_file, tmp_path, monkeypatch):
    """With a slow disk (the optimizer file takes 0.6 s to write) and epochs longer than that
    (0.1 s steps), the next epoch trains during the write, the loop waits for less than one
    write in all (the synchronous save would wait 4 x 0.6 s), and every checkpoint is whole
    when the run returns."""
    import threading
    import time

    import tl_hf.training.async_checkpoint as async_checkpoint
    from tl_hf.output.folder import checkpoint_problem
    from tl_hf.training.trainer import TLTrainer

    writes, steps = [], []
    write = async_checkpoint.write_training_state

    def slow_write(output_dir, *args):
        start = time.monotonic()
        time.sleep(0.6)
        write(output_dir, *args)
        writes.append((start, time.monotonic(), threading.current_thread().name))

    training_step = TLTrainer.training_step

    def recorded_step(self, *args, **kwargs):
        steps.append(time.monotonic())
        time.sleep(0.1)
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(async_checkpoint, "write_training_state", slow_write)
    monkeypatch.setattr(TLTrainer, "training_step", recorded_step)
    out = tmp_path / "slow"
    _full(tiny_bert, csv_file, out, early_stopping_patience=0, profile=True)
    assert len(writes) == 4 and all(name.startswith("tl-hf checkpoint") for *_, name in writes)
    start, end, _ = writes[0]
    assert any(start < t < end for t in steps)  # epoch 2 trained while checkpoint 1 was written
    waited = json.loads((out / "timings.json").read_text())["checkpoints"]
    assert waited < 0.6  # the snapshots, not the writes
    for folder in out.glob("checkpoint-*"):
        assert checkpoint_problem(str(folder), need_monitor=True) is None


def test_a_failed_background_write_stops_the_run_with_its_reason(
    tiny_bert, csv_file, tmp_path, monkeypatch
):
    import tl_hf.training.async_checkpoint as async_checkpoint

    def full_disk(output_dir, *args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(async_checkpoint, "write_training_state", full_disk)
    with pytest.raises(RuntimeError, match="checkpoint in the background failed.*No space left"):
        _full(tiny_bert, csv_file, tmp_path / "full")
