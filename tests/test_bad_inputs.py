"""Every bad input a user can make ends in one line naming the problem and the fix, exit
status 2, no traceback, before any model is loaded where the case allows, and nothing
half-written. The cases run in-process through the recipes' `main()` (a handful also as real
processes for the exit status); `docs/errors.md` is generated from them:

    TL_HF_WRITE_ERRORS_DOC=1 pytest tests/test_bad_inputs.py

and `test_errors_doc_is_current` fails when the table and the messages drift apart.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_tiny_bert, make_tiny_mpnet, sentiment_rows, write_csv
from test_recipe_audio import make_audio_folder, tiny_wav2vec2  # noqa: F401 - a fixture
from test_recipe_image import make_image_folder, make_tiny_resnet

from tl_hf.cli.recipe import main

DOC = Path(REPO) / "docs" / "errors.md"


@dataclass
class World:
    """Everything the cases point at, made once: tiny models, data files, folders."""

    root: Path
    bert: str
    resnet: str
    wav2vec2: str

    def file(self, name: str, data: str | bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return str(path)

    def csv(self, name: str, rows: list[dict]) -> str:
        return write_csv(self.root / name, rows)


def _rows(n=40, label="sentiment", text="sentence"):
    return [{text: r["sentence"], label: r["sentiment"]} for r in sentiment_rows(n)]


def _lines(header: str, body) -> str:
    return header + "\n" + "".join(line + "\n" for line in body)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_wav2vec2):  # noqa: F811
    root = tmp_path_factory.mktemp("bad")
    w = World(root, make_tiny_bert(root / "tiny-bert"), make_tiny_resnet(root / "tiny-resnet"), "")
    w.wav2vec2 = tiny_wav2vec2
    w.good = w.csv("good.csv", _rows())
    return w


# -- the cases: (id, what is wrong, how to make the command, a fragment of the message)
def text(w: World, *extra: str, model: str | None = None) -> tuple[str, list[str]]:
    return "text", ["--model_name_or_path", model or w.bert, *extra]


def text_file(w, name, data, *extra):
    return text(w, "--train_file", w.file(name, data), *extra)


def fake_checkpoint(w, name, truncate=False, tokenizer=True):
    """A copy of the tiny BERT, its weights cut short or its tokenizer left out."""
    import shutil

    folder = w.root / name
    if not folder.exists():
        shutil.copytree(w.bert, folder)
        weights = folder / "model.safetensors"
        if truncate:
            weights.write_bytes(weights.read_bytes()[:-100])
        if not tokenizer:
            for f in folder.iterdir():
                if "token" in f.name or f.name == "vocab.txt":
                    f.unlink()
    return str(folder)


def tl_hf_folder(folder):
    """`folder` as a run made it: with the manifest of what tl-hf writes there."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".tl_hf_manifest.json").write_text('{"other": [], "claimed": []}')


def finished_folder(w):
    folder = w.root / "finished"
    tl_hf_folder(folder)
    (folder / "all_results.json").write_text("{}")
    return str(folder)


def unfinished_folder(w):
    folder = w.root / "unfinished" / "checkpoint-3"
    tl_hf_folder(folder.parent)
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder.parent)


def folder_with(w, name, files: dict[str, str]) -> str:
    """A folder holding the user's own `files` {name: text}."""
    folder = w.root / name
    folder.mkdir(exist_ok=True)
    for rel, text in files.items():
        (folder / rel).write_text(text)
    return str(folder)


def busy_folder(w):
    """A folder whose lock another run holds (here: this process, through its own open of the
    lock file, which a second flock cannot share)."""
    from tl_hf.output.ownership import FolderLock

    folder = w.root / "busy"
    folder.mkdir(exist_ok=True)
    if not hasattr(w, "busy_lock"):
        w.busy_lock = FolderLock.acquire(str(folder), log=print)
    return str(folder)


def image_folder(w, name, extra=None):
    """A good two-class image folder plus `extra` files {relative path: bytes or PIL image}."""
    folder = w.root / name
    if not folder.exists():
        make_image_folder(folder, per_class=6)
        for rel, content in (extra or {}).items():
            (folder / rel).parent.mkdir(exist_ok=True)
            if isinstance(content, bytes):
                (folder / rel).write_bytes(content)
            else:
                content.save(folder / rel)
    return "image", ["--model_name_or_path", w.resnet, "--dataset_name", str(folder)]


def image_tree(w, name, layout):
    """A folder holding exactly `layout` {relative path: bytes}."""
    folder = w.root / name
    for rel, content in layout.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        if content is not None:
            (folder / rel).write_bytes(content)
    folder.mkdir(exist_ok=True)
    return "image", ["--model_name_or_path", w.resnet, "--dataset_name", str(folder)]


def png(size=(24, 24)):
    from PIL import Image

    return Image.fromarray(np.full((size[1], size[0], 3), 120, dtype=np.uint8))


def png_bytes(size=(24, 24)):
    import io

    buffer = io.BytesIO()
    png(size).save(buffer, format="PNG")
    return buffer.getvalue()


def audio_folder(w, name, write_extra):
    folder = w.root / name
    if not folder.exists():
        make_audio_folder(folder, per_class=6)
        write_extra(folder)
    return "audio", [
        "--model_name_or_path",
        w.wav2vec2,
        "--dataset_name",
        str(folder),
        "--max_duration_seconds",
        "0.5",
    ]


def silent(folder):
    import soundfile as sf

    sf.write(folder / "low" / "silence.wav", np.zeros(8000, dtype=np.float32), 16000)


def wav_with_rate_zero(folder):
    import soundfile as sf

    sf.write(folder / "high" / "rate0.wav", np.full(800, 0.3, dtype=np.float32), 16000)
    data = bytearray((folder / "high" / "rate0.wav").read_bytes())
    data[24:28] = (0).to_bytes(4, "little")  # the fmt chunk's sample rate
    data[28:32] = (0).to_bytes(4, "little")  # and its byte rate
    (folder / "high" / "rate0.wav").write_bytes(bytes(data))


def tiny_mpnet(w: World) -> str:
    """A tiny MPNet declaring mean pooling: its relative position scores cannot express the
    mean-pooling block."""
    path = w.root / "tiny-mpnet"
    if not (path / "config.json").is_file():
        vocab = json.loads(Path(w.bert, "config.json").read_text())["vocab_size"]
        make_tiny_mpnet(path, vocab, tokenizer_from=w.bert)
    return str(path)


CASES = [
    # data files
    (
        "malformed-csv",
        "CSV with an unbalanced quote",
        lambda w: text_file(
            w,
            "quote.csv",
            _lines("sentence,sentiment", ['"good film,pos'] + [f"bad {i},neg" for i in range(9)]),
        ),
        "is not valid CSV near line",
    ),
    (
        "non-utf8",
        "CSV saved as Latin-1",
        lambda w: text_file(
            w,
            "latin1.csv",
            b"sentence,sentiment\n" + b"".join(b"caf\xe9 %d,pos\n" % i for i in range(9)),
        ),
        "is not UTF-8 text (byte 0xe9 on line 2)",
    ),
    ("empty-file", "0-byte CSV", lambda w: text_file(w, "empty.csv", ""), "is empty"),
    (
        "header-only",
        "CSV with a header and no rows",
        lambda w: text_file(w, "header.csv", "sentence,sentiment\n"),
        "has a header but no data rows",
    ),
    (
        "missing-labels",
        "empty label cells (None/NaN)",
        lambda w: text_file(
            w,
            "nolabel.csv",
            _lines("sentence,sentiment", [f"good {i},{'pos' if i % 3 else ''}" for i in range(12)]),
        ),
        "4 training rows have no label: drop or fill them",
    ),
    (
        "float-labels",
        "labels 0.5 / 1.5",
        lambda w: text_file(
            w,
            "float.csv",
            _lines("sentence,sentiment", [f"good {i},{i % 2 + 0.5}" for i in range(12)]),
        ),
        "labels must be strings or integers; found float values",
    ),
    (
        "one-class-after-filtering",
        "--max_train_samples 1 leaves one class",
        lambda w: text(w, "--train_file", w.good, "--max_train_samples", "1"),
        "the training split holds a single class",
    ),
    (
        "text-column-numbers",
        "--text_column names a column of numbers",
        lambda w: text_file(
            w,
            "numbers.csv",
            _lines("sentence,sentiment", [f"{i},{'ab'[i % 2]}" for i in range(40)]),
            "--text_column",
            "sentence",
        ),
        "the text column holds int64 values, not text",
    ),
    (
        "no-text-column",
        "only numeric columns besides the label",
        lambda w: text_file(  # its own file: xdist may run this case on another worker
            w, "numbers-only.csv", _lines("n,sentiment", [f"{i},{'ab'[i % 2]}" for i in range(40)])
        ),
        "cannot tell which column holds the text (no string column",
    ),
    (
        "duplicated-columns",
        "two columns named sentence",
        lambda w: text_file(
            w,
            "dup.csv",
            _lines("sentence,sentence,sentiment", [f"good {i},x,{'ab'[i % 2]}" for i in range(12)]),
        ),
        "has duplicated column names (sentence)",
    ),
    (
        "broken-jsonl",
        "JSON lines file with a cut line",
        lambda w: text_file(
            w,
            "broken.jsonl",
            "".join(json.dumps(r) + "\n" for r in _rows(6)) + '{"sentence": "bad\n',
        ),
        "line 7 of the train file",
    ),
    (
        "unknown-extension",
        "a .txt data file",
        lambda w: text_file(w, "data.txt", "hello\n"),
        "use a .csv, .tsv, .json, .jsonl or .parquet file",
    ),
    (
        "missing-file",
        "--train_file that does not exist",
        lambda w: text(w, "--train_file", str(w.root / "nope.csv")),
        "does not exist: check the path",
    ),
    (
        "validation-without-train",
        "--validation_file alone",
        lambda w: text(w, "--validation_file", w.good),
        "need a --train_file too",
    ),
    (
        "mixed-formats",
        "CSV train, JSON lines validation",
        lambda w: text(w, "--train_file", w.good, "--validation_file", w.file("v.jsonl", "{}\n")),
        "data files of different formats",
    ),
    (
        "text-column-missing",
        "--text_column body (absent)",
        lambda w: text(w, "--train_file", w.good, "--text_column", "body"),
        "text column 'body' not found; columns are: sentence, sentiment",
    ),
    (
        "label-column-missing",
        "--label_column stars (absent)",
        lambda w: text(w, "--train_file", w.good, "--label_column", "stars"),
        "label column 'stars' not found",
    ),
    (
        "label-column-unknown",
        "no column named like a label",
        lambda w: text(w, "--train_file", w.csv("nolabelcol.csv", _rows(label="zz"))),
        "cannot tell which column holds the labels",
    ),
    (
        "empty-texts",
        "a row with an empty text",
        lambda w: text(
            w,
            "--train_file",
            w.csv(
                "emptytext.csv",
                [{**r, "sentence": "" if i == 2 else r["sentence"]} for i, r in enumerate(_rows())],
            ),
        ),
        "1 empty or missing texts in the train split",
    ),
    (
        "unseen-validation-labels",
        "validation label absent from training",
        lambda w: text(
            w,
            "--train_file",
            w.good,
            "--validation_file",
            w.csv("unseen.csv", [{"sentence": "x", "sentiment": "maybe"}]),
        ),
        "validation labels unseen in training: maybe",
    ),
    (
        "single-class",
        "every row has the same label",
        lambda w: text(
            w,
            "--train_file",
            w.csv("single.csv", [{"sentence": f"s{i}", "sentiment": "pos"} for i in range(10)]),
        ),
        "the training data has a single class (pos)",
    ),
    (
        "too-small-to-split",
        "4 rows in 4 classes",
        lambda w: text(
            w,
            "--train_file",
            w.csv("tiny.csv", [{"sentence": f"s{i}", "sentiment": "abcd"[i]} for i in range(4)]),
        ),
        "dataset too small to carve a stratified validation split",
    ),
    (
        "no-validation",
        "--validation_split_percentage 0 and no validation file",
        lambda w: text(w, "--train_file", w.good, "--validation_split_percentage", "0"),
        "no validation split",
    ),
    # configuration and flags
    (
        "yaml-syntax",
        "--config with a YAML syntax error",
        lambda w: text(w, "--config", w.file("bad.yaml", "learning_rate: 1e-3\nstrategy: [full\n")),
        "is not valid YAML (line 3, column 1",
    ),
    (
        "config-unknown-key",
        "--config with a misspelt key",
        lambda w: text(w, "--config", w.file("typo.yaml", "learning_rte: 1e-3\n")),
        "unknown argument(s) in the config file: 'learning_rte' (did you mean 'learning_rate'?)",
    ),
    (
        "config-other-recipe",
        "an image run's config given to the text recipe",
        lambda w: text(w, "--config", w.file("image.yaml", "modality: image\n")),
        "the config file is for the image recipe, not the text one",
    ),
    (
        "unknown-flag",
        "--learning_rte",
        lambda w: text(w, "--train_file", w.good, "--learning_rte", "1e-3"),
        "unknown argument(s) in the command line: 'learning_rte'",
    ),
    (
        "unknown-strategy",
        "--strategy partial",
        lambda w: text(w, "--strategy", "partial"),
        "invalid choice: 'partial'",
    ),
    (
        "llrd-decay",
        "--llrd_decay 1.2",
        lambda w: text(w, "--llrd_decay", "1.2"),
        "--llrd_decay must be in (0, 1]",
    ),
    (
        "trainable-layers-full",
        "--trainable_layers with --strategy full",
        lambda w: text(w, "--strategy", "full", "--trainable_layers", "2"),
        "--trainable_layers only applies to --strategy frozen",
    ),
    (
        "random-init-frozen",
        "--random_init with --strategy frozen",
        lambda w: text(w, "--strategy", "frozen", "--random_init"),
        "--random_init with --strategy frozen",
    ),
    (
        "resume-and-overwrite",
        "--resume with --overwrite_output_dir",
        lambda w: text(w, "--resume", "--overwrite_output_dir"),
        "pass one of them",
    ),
    (
        "resume-twice",
        "--resume with --resume_from_checkpoint",
        lambda w: text(w, "--resume", "--resume_from_checkpoint", str(w.root)),
        "--resume picks the latest complete checkpoint itself",
    ),
    (
        "early-stopping-no-eval",
        "--eval_strategy no with early stopping",
        lambda w: text(w, "--eval_strategy", "no", "--save_strategy", "no"),
        "early stopping needs evaluations",
    ),
    (
        "save-eval-mismatch",
        "--save_strategy steps, --eval_strategy epoch",
        lambda w: text(w, "--save_strategy", "steps"),
        "--load_best_model_at_end requires the save and eval strategy to match",
    ),
    (
        "split-percentage",
        "--validation_split_percentage 100",
        lambda w: text(w, "--validation_split_percentage", "100"),
        "--validation_split_percentage must be in [0, 100)",
    ),
    (
        "max-train-samples-0",
        "--max_train_samples 0",
        lambda w: text(w, "--max_train_samples", "0"),
        "--max_train_samples must be >= 1, got 0",
    ),
    (
        "negative-learning-rate",
        "--learning_rate -1",
        lambda w: text(w, "--train_file", w.good, "--learning_rate", "-1"),
        "--learning_rate must be > 0, got -1.0",
    ),
    (
        "batch-size-0",
        "--per_device_train_batch_size 0",
        lambda w: text(w, "--train_file", w.good, "--per_device_train_batch_size", "0"),
        "--per_device_train_batch_size must be >= 1, got 0",
    ),
    (
        "epochs-0",
        "--num_train_epochs 0 (no --max_steps)",
        lambda w: text(w, "--train_file", w.good, "--num_train_epochs", "0"),
        "--num_train_epochs must be > 0, got 0.0",
    ),
    (
        "warmup-negative",
        "--warmup_steps -5",
        lambda w: text(w, "--train_file", w.good, "--warmup_steps", "-5"),
        "--warmup_steps must be >= 0, got -5.0",
    ),
    (
        "weight-decay-negative",
        "--weight_decay -0.1",
        lambda w: text(w, "--train_file", w.good, "--weight_decay", "-0.1"),
        "--weight_decay must be >= 0, got -0.1",
    ),
    (
        "max-seq-length-0",
        "--max_seq_length 0",
        lambda w: text(w, "--train_file", w.good, "--max_seq_length", "0"),
        "--max_seq_length must be >= 1, got 0",
    ),
    (
        "lora-rank-0",
        "--strategy lora --lora_r 0",
        lambda w: text(w, "--train_file", w.good, "--strategy", "lora", "--lora_r", "0"),
        "--lora_r must be >= 1, got 0",
    ),
    (
        "augment-magnitude",
        "--augment synonym:p=1.5 (a probability above 1)",
        lambda w: text(w, "--train_file", w.good, "--augment", "synonym:p=1.5"),
        "augmentation synonym:p=1.5 is out of range: p must be in [0, 1]",
    ),
    (
        "augment-range-reversed",
        "--augment with a LOW/HIGH range written HIGH/LOW",
        lambda w: ("image", [*image_folder(w, "crops")[1], "--augment", "crop:scale=0.9/0.5"]),
        "augmentation crop:scale=0.9/0.5: write the range LOW/HIGH",
    ),
    (
        "unknown-augmentation",
        "--augment hflip to the text recipe",
        lambda w: text(w, "--train_file", w.good, "--augment", "hflip"),
        "unknown augmentation 'hflip'",
    ),
    (
        "tta-on-text",
        "--tta 4 to the text recipe",
        lambda w: text(w, "--train_file", w.good, "--tta", "4"),
        "--tta 4: test-time views are for image runs, not text; drop --tta",
    ),
    (
        "tta-too-many-views",
        "--tta 8 without hflip in --augment (6 views exist)",
        lambda w: ("image", [*image_folder(w, "crops")[1], "--tta", "8"]),
        "--tta 8: there are 6 views (the image, its centre and four corner crops) (12 when",
    ),
    (
        "tta-out-of-range",
        "--tta 13",
        lambda w: ("image", [*image_folder(w, "crops")[1], "--tta", "13"]),
        "--tta must be in [0, 12], got 13",
    ),
    # checkpoints
    (
        "model-missing",
        "--model_name_or_path that does not exist",
        lambda w: text(w, model=str(w.root / "no-model")),
        "is not a folder: give a local checkpoint folder or a Hub id",
    ),
    (
        "ladder-other-modality",
        "a model-ladder name of another modality",
        lambda w: text(w, "--train_file", w.good, model="whisper_base"),
        "is a model-ladder checkpoint for audio, not text: use the audio recipe",
    ),
    (
        "pooling-mean-refused",
        "--pooling mean on a family that cannot express it (MPNet)",
        lambda w: text(w, "--train_file", w.good, "--pooling", "mean", model=tiny_mpnet(w)),
        "--pooling mean: the mpnet family has no BERT-style blocks",
    ),
    (
        "not-a-checkpoint",
        "a folder without config.json",
        lambda w: text(w, model=os.path.dirname(w.file("notes/readme.txt", "notes"))),
        "is not a checkpoint folder (no config.json)",
    ),
    (
        "truncated-weights",
        "model.safetensors cut short",
        lambda w: text(
            w, "--train_file", w.good, model=fake_checkpoint(w, "truncated", truncate=True)
        ),
        "is truncated or damaged",
    ),
    (
        "wrong-modality",
        "an image checkpoint given to the text recipe",
        lambda w: text(w, "--train_file", w.good, model=w.resnet),
        "is a resnet checkpoint, which AutoModelForSequenceClassification cannot load: give a text checkpoint, or use the image recipe",
    ),
    (
        "tokenizer-missing",
        "a checkpoint folder without tokenizer files",
        lambda w: text(
            w, "--train_file", w.good, model=fake_checkpoint(w, "notokenizer", tokenizer=False)
        ),
        "no tokenizer in",
    ),
    (
        "remote-code",
        "a checkpoint that ships its own code",
        lambda w: text(
            w,
            model=os.path.dirname(
                w.file(
                    "remote/config.json",
                    json.dumps({"model_type": "x-arch", "auto_map": {"AutoConfig": "c.XConfig"}}),
                )
            ),
        ),
        "pass --trust_remote_code",
    ),
    (
        "hub-model-offline",
        "a Hub model id with HF_HUB_OFFLINE=1",
        lambda w: text(w, model="someorg/some-model"),
        "go online (HF_HUB_OFFLINE=1 blocks downloads)",
    ),
    (
        "hub-dataset-offline",
        "a Hub dataset id with HF_HUB_OFFLINE=1",
        lambda w: text(w, "--dataset_name", "someorg/some-data"),
        "cannot load dataset 'someorg/some-data' from the Hub",
    ),
    # output folder, caches
    (
        "finished-output",
        "--output_dir holding a finished run",
        lambda w: text(w, "--output_dir", finished_folder(w)),
        "already holds a finished run: choose another folder or pass --overwrite_output_dir",
    ),
    (
        "unfinished-output",
        "--output_dir holding a killed run",
        lambda w: text(w, "--output_dir", unfinished_folder(w)),
        "holds an unfinished run (no complete checkpoint yet): pass --resume",
    ),
    (
        "resume-finished",
        "--resume on a finished run",
        lambda w: text(w, "--output_dir", finished_folder(w), "--resume"),
        "there is nothing to resume",
    ),
    (
        "output-holds-user-files",
        "--output_dir holding the user's data and notes",
        lambda w: text(
            w,
            "--train_file",
            w.good,
            "--output_dir",
            folder_with(w, "mine", {"train.csv": "x,y\n", "notes.txt": "mine"}),
        ),
        "holds files tl-hf did not write (notes.txt, train.csv): choose an empty folder, or "
        "pass --allow_other_files",
    ),
    (
        "output-user-file-clash",
        "--allow_other_files, but the user's README.md is where the card goes",
        lambda w: text(
            w,
            "--train_file",
            w.good,
            "--allow_other_files",
            "--output_dir",
            folder_with(w, "clash", {"README.md": "my notes"}),
        ),
        "holds your README.md, which tl-hf writes too",
    ),
    (
        "output-in-use",
        "--output_dir another run is writing",
        lambda w: text(w, "--train_file", w.good, "--output_dir", busy_folder(w)),
        "is in use by another tl-hf run (pid",
    ),
    (
        "incomplete-checkpoint",
        "--resume_from_checkpoint of a half-saved checkpoint",
        lambda w: text(w, "--resume_from_checkpoint", unfinished_folder(w) + "/checkpoint-3"),
        "cannot be resumed (it has no readable trainer_state.json)",
    ),
    (
        "read-only-output",
        "--output_dir on a read-only filesystem (/sys)",
        lambda w: text(w, "--output_dir", "/sys/tl_hf_out"),
        "cannot write to --output_dir /sys/tl_hf_out",
    ),
    (
        "output-under-file",
        "--output_dir inside a file",
        lambda w: text(w, "--output_dir", w.good + "/out"),
        "is a file): choose a writable folder",
    ),
    (
        "unwritable-cache",
        "--cache_dir on a read-only filesystem",
        lambda w: text(w, "--train_file", w.good, "--cache_dir", "/sys/tl_hf_cache"),
        "cannot write /sys/tl_hf_cache",
    ),
    # images
    (
        "no-images",
        "class folders holding no image files",
        lambda w: image_tree(w, "noimages", {"a/readme.md": b"x", "b/notes.txt": b"y"}),
        "holds no class subfolders with image files",
    ),
    (
        "one-image-class",
        "a class folder with a single image",
        lambda w: image_folder(w, "oneimage", {"solo/0.png": png()}),
        "classes with a single row: solo",
    ),
    (
        "zero-byte-image",
        "a 0-byte .png",
        lambda w: image_folder(w, "zeroimage", {"left/empty.png": b""}),
        "empty.png: UnidentifiedImageError",
    ),
    (
        "tiny-image",
        "a 1x1 image",
        lambda w: image_folder(w, "pixel", {"right/pixel.png": png((1, 1))}),
        "pixel.png: 1x1 pixels, too small to classify",
    ),
    (
        "one-class-folder",
        "an image folder with one class",
        lambda w: image_tree(w, "oneclass", {"cats/0.png": png_bytes(), "cats/1.png": png_bytes()}),
        "has a single class subfolder (cats)",
    ),
    # audio
    (
        "silent-audio",
        "a clip of silence only",
        lambda w: audio_folder(w, "silent", silent),
        "silence.wav: silent clip (all samples 0)",
    ),
    (
        "text-as-audio",
        "a .wav file that is text",
        lambda w: audio_folder(
            w, "textwav", lambda f: (f / "low" / "notes.wav").write_text("not audio")
        ),
        "notes.wav: LibsndfileError",
    ),
    (
        "sample-rate-0",
        "a WAV header with sample rate 0",
        lambda w: audio_folder(w, "rate0", wav_with_rate_zero),
        "rate0.wav:",
    ),
]
MESSAGES: dict[str, tuple[str, str, str]] = {}  # id -> (what, command, message)


def _shown(w: World, modality: str, argv: list[str]) -> str:
    """The command as the docs show it: paths relative to the cases' folder."""
    command = shlex.join([f"recipes/{modality}_classify.py", *argv])
    return command.replace(w.wav2vec2, "tiny-wav2vec2").replace(str(w.root) + "/", "")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2(case, world, capsys, monkeypatch):
    check_case(case, world, capsys, monkeypatch)


def check_case(case, world, capsys, monkeypatch) -> None:
    """Run one case in this process and record its message in MESSAGES."""
    import transformers

    case_id, what, make, expected = case
    modality, argv = make(world)
    if "--output_dir" not in argv:
        argv = [*argv, "--output_dir", str(world.root / f"out-{case_id}")]
    out = argv[argv.index("--output_dir") + 1]
    before = sorted(os.listdir(out)) if os.path.isdir(out) else None
    loaded = []  # "before any model is loaded": no from_pretrained of a model class
    original = transformers.PreTrainedModel.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        loaded.append(cls.__name__)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(recording))
    code = main(modality, ["--num_train_epochs", "1", "--use_cpu", *argv])  # the case's win
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    assert loaded == [], f"a model was loaded before the error: {loaded}"
    after = sorted(os.listdir(out)) if os.path.isdir(out) else None
    assert after == before, "a failed run must leave the output folder as it was"
    message = lines[0][len("error: ") :].replace(world.wav2vec2, "tiny-wav2vec2")
    MESSAGES[case_id] = (what, _shown(world, modality, argv), message)


def test_max_seq_length_above_the_model_limit_is_clamped_with_a_note(world, tmp_path, capsys):
    code = main(
        "text",
        [
            *text(world, "--train_file", world.good)[1],
            "--max_seq_length",
            "4096",
            "--output_dir",
            str(tmp_path / "o"),
            "--num_train_epochs",
            "1",
            "--use_cpu",
        ],
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "note: --max_seq_length 4096 is above the model's limit of 64 tokens" in out
    config = json.loads((tmp_path / "o" / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 64


def _process(argv: list[str], limit_bytes: int | None = None):
    def limit():
        if limit_bytes:  # a full disk: writes past this size fail with EFBIG
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "text_classify.py"), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
        env={**os.environ, "PYTHONPATH": REPO},
    )


@pytest.mark.parametrize("case_id", ["malformed-csv", "truncated-weights", "read-only-output"])
def test_bad_input_process_exits_2_without_traceback(case_id, world):
    _, _, make, expected = next(c for c in CASES if c[0] == case_id)
    _, argv = make(world)
    if "--output_dir" not in argv:
        argv = [*argv, "--output_dir", str(world.root / f"proc-{case_id}")]
    proc = _process(argv)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and expected in lines[-1]
    assert sum(line.startswith("error: ") for line in lines) == 1


def test_disk_full_while_saving(world, tmp_path):
    """A file-size limit below the checkpoint's size: the first checkpoint cannot be written.
    One line, exit 2, no finished marker, no temporary files, nothing that passes for a
    complete checkpoint."""
    check_disk_full(world, tmp_path)


def check_disk_full(world, tmp_path) -> None:
    from tl_hf.output.folder import latest_complete_checkpoint

    out = tmp_path / "full"
    weights = os.path.getsize(os.path.join(world.bert, "model.safetensors"))
    proc = _process(
        [*text(world, "--train_file", world.good)[1], "--output_dir", str(out)],
        limit_bytes=weights // 2,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    # after the progress bars' last redraw (no newline of their own): one line
    errors = [
        line[line.index("error: ") :] for line in proc.stderr.splitlines() if "error: " in line
    ]
    assert len(errors) == 1, proc.stderr[-2000:]
    last = errors[0]
    assert last.startswith("error: the disk is full (or a file size limit was hit) during ")
    assert not (out / "all_results.json").exists()
    assert latest_complete_checkpoint(str(out)) is None
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    MESSAGES["disk-full"] = (
        "a file-size limit below the checkpoint's size (RLIMIT_FSIZE)",
        "recipes/text_classify.py --train_file good.csv (disk full)",
        last[len("error: ") :].replace(str(out), "OUT"),
    )


def render_doc() -> str:
    lines = [
        "# Errors: every bad input and what tl-hf answers",
        "",
        "Generated by `TL_HF_WRITE_ERRORS_DOC=1 pytest tests/test_bad_inputs.py` from the",
        "cases that test runs (do not edit by hand). Each ends with this one line on stderr",
        "and exit status 2, before any model is loaded where the case allows, leaving the",
        "output folder as it was. Paths are relative to the test's data folder.",
        "",
        f"{len(MESSAGES)} cases.",
        "",
        "| case | input | command | message |",
        "|---|---|---|---|",
    ]
    for case_id, (what, command, message) in MESSAGES.items():
        cells = [case_id, what, f"`{command}`", message]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _normalised(doc: str) -> str:
    import re

    # temporary folders, the lock holder's pid, time and command differ per run
    doc = re.sub(
        r"\(pid \d+ on this machine, started [^ ]+?: [^)]*\)",
        "(pid PID on this machine, started TIME: COMMAND)",
        doc,
    )
    return re.sub(r"/tmp/[^\s`'):;,]+", "TMP", doc)


def test_errors_doc_is_current(world, request, capsys, monkeypatch, tmp_path):
    """Runs last in this module: compares docs/errors.md with the messages just produced. Under
    pytest-xdist the cases are spread over the workers: this one runs those it did not see."""
    filtered = request.config.getoption("keyword") or request.config.getoption("markexpr")
    if filtered and len(MESSAGES) < len(CASES) + 1:
        pytest.skip("only part of the cases ran (-k or -m): cannot check the whole table")
    for case in CASES:
        if case[0] not in MESSAGES:
            with monkeypatch.context() as patch:
                check_case(case, world, capsys, patch)
    if "disk-full" not in MESSAGES:
        check_disk_full(world, tmp_path)
    # the table in the cases' order, whichever worker ran which
    order = [c[0] for c in CASES] + ["disk-full"]
    ordered = {k: MESSAGES[k] for k in order}
    MESSAGES.clear()
    MESSAGES.update(ordered)
    assert len(MESSAGES) >= 40
    doc = _normalised(render_doc().replace(str(world.root) + "/", ""))
    if os.environ.get("TL_HF_WRITE_ERRORS_DOC"):
        DOC.write_text(doc)
    assert DOC.is_file() and DOC.read_text() == doc, (
        "docs/errors.md is out of date: TL_HF_WRITE_ERRORS_DOC=1 pytest tests/test_bad_inputs.py"
    )
