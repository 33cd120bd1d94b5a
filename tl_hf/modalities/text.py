"""Text modality: what differs for text in each step of the flow (columns, validation,
tokenisation, collation, the embedded default), declared once in `MODALITY`, the
reference implementation of `tl_hf.modality.Modality`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tl_hf.console import say
from tl_hf.errors import UserError
from tl_hf.modalities.base import Modality, register_modality

# What a saved tokenizer leaves in a folder (one of them at least).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)
TEXT_CANDIDATES = ("text", "sentence", "content", "document", "review", "tweet", "body", "question")
PAIR_CANDIDATES = (
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("question1", "question2"),
    ("text", "text_pair"),
)


@dataclass
class TextArguments:
    """The text modality's own flags."""

    max_seq_length: int = field(
        default=128,
        metadata={"range": "[1, inf)", "help": "Text: tokens per example after truncation."},
    )


def default_model() -> str:
    from tl_hf.embedded.text import minilm_path

    return minilm_path()


def load_default_dataset(data_args):
    """BBC News, 100/50/100 articles per class for train/validation/test."""
    from tl_hf.embedded.text import load_bbc_news

    return load_bbc_news()


def load_folder(path: str, data_args):
    """A folder with one subfolder of .txt files per class (the subfolder names the class)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    names = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    texts, labels = [], []
    for label, name in enumerate(names):
        for fname in sorted(os.listdir(os.path.join(path, name))):
            if fname.endswith(".txt"):
                with open(os.path.join(path, name, fname), encoding="utf-8", errors="replace") as f:
                    texts.append(f.read().strip())
                labels.append(label)
    if not texts:
        raise UserError(
            f"{path} holds no class subfolders with .txt files: give a folder with one "
            "subfolder of .txt files per class, a data file, or a Hub id"
        )
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    return DatasetDict(train=Dataset.from_dict({"text": texts, "label": labels}, features=features))


def _is_string(feature) -> bool:
    return getattr(feature, "dtype", None) in ("string", "large_string")


def find_input_columns(columns: list[str], features, label: str, data_args) -> dict[str, str]:
    """{"text": column} or {"text": first, "text_pair": second}, found when unambiguous."""

    def check(name):
        if name not in columns:
            raise UserError(f"text column {name!r} not found; columns are: {', '.join(columns)}")
        return name

    if data_args.text_column:
        found = {"text": check(data_args.text_column)}
        if data_args.text_pair_column:
            found["text_pair"] = check(data_args.text_pair_column)
        return found
    if data_args.text_pair_column:
        raise UserError("--text_pair_column needs --text_column too")
    for first, second in PAIR_CANDIDATES:
        if first in columns and second in columns:
            return {"text": first, "text_pair": second}
    strings = [c for c in columns if c != label and _is_string(features[c])]
    for name in TEXT_CANDIDATES:
        if name in strings:
            return {"text": name}
    if len(strings) == 1:
        return {"text": strings[0]}
    raise UserError(
        f"cannot tell which column holds the text ({'candidates: ' + ', '.join(strings) if strings else 'no string column'}"
        f"; columns are: {', '.join(columns)}): pass --text_column"
    )


def validate_inputs(dsd, data_args):
    """Empty or missing texts, or a column of numbers, are an error naming how many and where."""
    for split, ds in dsd.items():
        for column in [c for c in ("text", "text_pair") if c in ds.column_names]:
            if not _is_string(ds.features[column]):
                flag = "--text_column" if column == "text" else "--text_pair_column"
                raise UserError(
                    f"the {column} column holds {getattr(ds.features[column], 'dtype', 'non-text')} "
                    f"values, not text: pass the column that holds the text with {flag}"
                )
            bad = [i for i, t in enumerate(ds[column]) if t is None or not str(t).strip()]
            if bad:
                raise UserError(
                    f"{len(bad)} empty or missing texts in the {split} split, column {column!r} "
                    f"(rows {', '.join(map(str, bad[:5]))}{' ...' if len(bad) > 5 else ''}): "
                    "drop or fill them"
                )
    return dsd


def build_processor(model_path: str, args, config=None):
    from transformers import AutoTokenizer

    model_args = args.model
    if os.path.isdir(model_path) and not any(
        os.path.exists(os.path.join(model_path, name)) for name in TOKENIZER_FILES
    ):
        raise UserError(
            f"no tokenizer in {model_path} (none of {', '.join(TOKENIZER_FILES[:3])}...): save "
            "the checkpoint's tokenizer there too (tokenizer.save_pretrained)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model_path,
            revision=model_args.model_revision,
            cache_dir=model_args.cache_dir,
            trust_remote_code=model_args.trust_remote_code,
        )
    except (OSError, ValueError, TypeError) as err:
        raise UserError(
            f"no usable tokenizer in {model_path} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}): save the checkpoint's tokenizer "
            "there too (tokenizer.save_pretrained)"
        ) from err
    if tokenizer is None or isinstance(tokenizer, bool):
        raise UserError(f"no tokenizer in {model_path}: save one there (tokenizer.save_pretrained)")
    # the position embeddings bound the length; a longer --max_seq_length is clamped, with a note
    limit = min(
        tokenizer.model_max_length or 10**6,
        getattr(config, "max_position_embeddings", None) or 10**6,
    )
    tokenizer.model_max_length = limit
    if args.data.max_seq_length > limit:
        say(
            f"note: --max_seq_length {args.data.max_seq_length} is above the model's "
            f"limit of {limit} tokens: texts are truncated to {limit}"
        )
    return tokenizer


def make_preprocess(tokenizer, data_args, train_split: bool = False):
    """A batched function: texts -> token ids (truncated; padding happens per batch)."""
    max_length = min(
        data_args.max_seq_length, getattr(tokenizer, "model_max_length", 10**6) or 10**6
    )

    def preprocess(batch):
        pair = batch.get("text_pair")
        encoded = tokenizer(batch["text"], pair, truncation=True, max_length=max_length)
        encoded["labels"] = batch["label"]
        return dict(encoded)

    return preprocess


def preprocess(dsd, tokenizer, data_args, num_proc=None, skip=()):
    """Tokenise every split but `skip` through `datasets.map` (cached by fingerprint): the
    modality's preprocess step, which `Modality` builds from `make_preprocess`."""
    return MODALITY.preprocess(dsd, tokenizer, data_args, num_proc, skip)


def build_collator(tokenizer):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer)


MODALITY = register_modality(
    Modality(
        name="text",
        task="text-classification",
        auto_model="AutoModelForSequenceClassification",
        input_column="text",
        column_flags=("text_column", "text_pair_column"),
        # A new head alone on frozen features wants a far larger step than a full fine-tune:
        # 1e-2 (docs/defaults.md: 1e-3 left it underfit on real sets).
        default_learning_rates={"frozen": 1e-2, "full": 5e-5, "llrd": 1e-4},
        example_input='"This is wonderful!"',
        default_dataset="embedded:bbc_news",
        default_model_hub_id="sentence-transformers/all-MiniLM-L6-v2",
        # sized to finish in minutes on a 2-core CPU; with the user's own data the general defaults apply
        embedded_run_defaults={"num_train_epochs": 4},
        # linear probe (on the checkpoint's declared pooling), then LLRD: above llrd on 3 of
        # 4 real text sets and far above it at 8-16 examples per class (docs/defaults.md)
        default_strategy="lp_ft",
        augment_module="tl_hf.augment.text",
        default_model=default_model,
        load_default_dataset=load_default_dataset,
        load_folder=load_folder,
        find_input_columns=find_input_columns,
        validate_inputs=validate_inputs,
        build_processor=build_processor,
        make_preprocess=make_preprocess,
        flags=TextArguments,
        build_collator=build_collator,
    )
)
