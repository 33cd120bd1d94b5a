"""Shared fixtures: offline, one thread, tiny models built from configs, small data files."""

import csv
import fcntl
import os
import pickle
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POSITIVE = ["good", "great", "fine", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "movie", "film", "plot", "was", "is", "very", "a"]


def pytest_collection_modifyitems(config, items):
    """Modules holding slow or multi-process tests run first, each module's order kept:
    pytest-xdist hands modules out in this order (pytest_xdist_make_scheduler below), so the
    long ones start early and the short ones fill the end on both workers."""
    heavy = {
        item.module.__name__
        for item in items
        if item.get_closest_marker("slow") or item.get_closest_marker("distributed")
    }
    items.sort(key=lambda item: item.module.__name__ not in heavy)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n N` without `--dist` hands out whole modules, in collection order (xdist's
    `--dist loadfile --no-loadscope-reorder`), not xdist's default chunks of single tests:
    that default gave the first worker the first quarter of the tests (every slow module:
    they come first), and split other modules between the workers, each then making the
    module's fixtures (a lab, a trained run, a browser) again."""
    if config.getoption("dist") != "load" or any(
        arg.startswith(("--dist", "-d")) for arg in config.invocation_params.args
    ):
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False
    return LoadFileScheduling(config, log)


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it): each test that opens a server
    or launches several processes takes its own, so tests on other xdist workers never meet
    on accelerate's default 29500."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def once_per_session(tmp_path_factory, key: str, make):
    """`make(folder)` run once per test session, its value shared by every test and every
    pytest-xdist worker that asks for `key` (a worker asking while another makes it waits
    for it): the runs several test modules compare against, such as the one-process
    reference of a multi-process launch. `folder` is fresh and stays for the session."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base folders share this parent
    folder, value = root / f"once_{key}", root / f"once_{key}.pickle"
    with open(root / f"once_{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not value.exists():
            if folder.exists():  # a failed attempt's leftovers
                import shutil

                shutil.rmtree(folder)
            folder.mkdir()
            value.write_bytes(pickle.dumps(make(folder)))
        return pickle.loads(value.read_bytes())


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


def make_tiny_bert(path, num_labels=2, layers=2):
    """A tiny BERT classifier + WordPiece tokenizer saved to `path` (random weights)."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(path)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    return str(path)


def make_tiny_mpnet(path, vocab_size=40, tokenizer_from=None):
    """A tiny MPNet classifier that declares mean pooling (`1_Pooling/config.json`), as
    all-mpnet-base-v2 does; `tokenizer_from`: a folder whose tokenizer files are copied."""
    import json
    import shutil
    from pathlib import Path

    from transformers import MPNetConfig, MPNetForSequenceClassification

    path = Path(path)
    config = MPNetConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=66,
    )
    MPNetForSequenceClassification(config).save_pretrained(path)
    for name in os.listdir(tokenizer_from) if tokenizer_from else ():
        if name.startswith("tokenizer") or name.endswith(".txt"):
            shutil.copy(os.path.join(tokenizer_from, name), path / name)
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return str(path)


def sentiment_rows(n, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"sentence": " ".join(words), "sentiment": label})
    return rows


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv", sentiment_rows(80))


def tiny_wav2vec2_config(**overrides):
    """The tiny wav2vec2 the audio tests build (2 layers, 16 hidden; `overrides` win)."""
    from transformers import Wav2Vec2Config

    settings = dict(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=8,
        vocab_size=8,
    )
    return Wav2Vec2Config(**{**settings, **overrides})


def tiny_whisper_config(**overrides):
    """The tiny Whisper the audio tests build (2 encoder layers, 16 wide, 80 mel bins)."""
    from transformers import WhisperConfig

    settings = dict(
        vocab_size=64,
        d_model=16,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_mel_bins=80,
    )
    return WhisperConfig(**{**settings, **overrides})
