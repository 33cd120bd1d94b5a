"""Text augmentation: each augmenter does what its name says, seeded per row, through
`datasets.map` with caching and `num_proc`; the model-based ones run on tiny local models."""

from __future__ import annotations

import collections
import difflib
import math

import pytest

from tl_hf.augment import apply_augment_copies, parse_augment_specs
from tl_hf.errors import UserError

SENTENCES = [
    "The company said profits rose sharply in the third quarter beating forecasts by analysts",
    "Famous actors gathered in London for the glamorous film awards ceremony last night",
    "The government announced new plans to reduce taxes for small businesses next year",
    "The striker scored twice as the team won the important match on Saturday",
    "Engineers built a faster computer chip that uses much less power than before",
    "Good music makes a happy crowd dance",
]
LABELS = [0, 1, 2, 3, 4, 1]


@pytest.fixture(scope="module", autouse=True)
def _wordnet_cache(tmp_path_factory):
    """WordNet assembled into a fresh cache folder, as a new user's first run does."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TL_HF_CACHE", str(tmp_path_factory.mktemp("tl_hf_cache")))
    yield
    mp.undo()


def augmenter(*items: str, column: str = "text"):
    from tl_hf.augment import text

    return text.build_augmenter(parse_augment_specs(list(items), text.AUGMENTATIONS, []), column)


def run(fn, texts, seeds=None):
    seeds = seeds if seeds is not None else list(range(len(texts)))
    out = fn({"text": list(texts), "label": list(range(len(texts)))}, seeds)
    assert out["label"] == list(range(len(texts)))  # labels untouched
    return out["text"]


def test_wordnet_assembled_offline():
    from nltk.corpus import wordnet

    from tl_hf.augment.wordnet import ensure_wordnet, main

    path = ensure_wordnet()
    assert main([]) == 0
    assert len(wordnet.synsets("good")) == 27
    if "tl_hf_cache" in path:  # built by us (not a user's downloaded copy): lexnames generated
        with open(f"{path}/lexnames") as f:
            assert "noun.Tops" in f.read()


def test_deletion_removes_the_requested_fraction():
    fn = augmenter("deletion:p=0.3,max=100")
    for sentence, new in zip(SENTENCES, run(fn, SENTENCES), strict=False):
        n = len(sentence.split())
        assert len(new.split()) == n - math.ceil(0.3 * n)
        # what is left is the original words in order (first one may be re-capitalised)
        rest = iter(w.lower() for w in sentence.split())
        assert all(any(w.lower() == r for r in rest) for w in new.split())


def test_swap_keeps_the_multiset_of_words():
    fn = augmenter("swap:p=0.3")
    outs = run(fn, SENTENCES)
    assert outs != SENTENCES
    for sentence, new in zip(SENTENCES, outs, strict=False):
        bag = collections.Counter(w.lower() for w in sentence.split())
        assert collections.Counter(w.lower() for w in new.split()) == bag


def _is_insertion_of(new: list[str], old: list[str], phrases: set[tuple[str, ...]]) -> bool:
    """Whether `new` is `old` in order with whole `phrases` inserted between its words."""
    from functools import cache

    @cache
    def fits(i: int, j: int) -> bool:
        if i == len(new):
            return j == len(old)
        if j < len(old) and new[i] == old[j] and fits(i + 1, j + 1):
            return True
        return any(tuple(new[i : i + len(p)]) == p and fits(i + len(p), j) for p in phrases)

    return fits(0, 0)


def test_insertion_adds_wordnet_synonyms_of_the_sentence():
    from tl_hf.augment.text import wordnet_synonyms

    fn = augmenter("insertion:p=0.2")
    for sentence, new in zip(SENTENCES, run(fn, SENTENCES), strict=False):
        old = sentence.split()
        phrases = {tuple(s.split()) for w in old for s in wordnet_synonyms(w)}
        assert len(new.split()) > len(old)
        assert _is_insertion_of(new.split(), old, phrases), new
        assert not _is_insertion_of(new.split(), old, set()), "nothing was inserted"


def test_synonym_substitutes_a_synonym_of_the_same_part_of_speech():
    from tl_hf.augment.text import _PTB_TO_WORDNET, wordnet_synonyms
    from tl_hf.augment.wordnet import pos_tag

    sentence = "Good music makes a happy crowd dance"
    tags = dict(pos_tag(sentence.split()))
    fn = augmenter("synonym:p=0.15,min=1,max=1")  # exactly one replacement
    changed = 0
    for seed in range(8):
        new = run(fn, [sentence], [seed])[0]
        if new == sentence:
            continue
        diff = [(a, b) for a, b in zip(sentence.split(), new.split(), strict=False) if a != b] or [
            (None, None)
        ]
        old_word = diff[0][0]
        # the replacement may be several words ("felicitous" vs "well chosen"): find it
        prefix = sentence.split()[: sentence.split().index(old_word)]
        suffix = sentence.split()[sentence.split().index(old_word) + 1 :]
        middle = new.split()[len(prefix) : len(new.split()) - len(suffix)]
        replacement = " ".join(middle)
        pos = _PTB_TO_WORDNET[tags[old_word][0]]
        assert replacement.lower() in {s.lower() for s in wordnet_synonyms(old_word, pos)}
        changed += 1
    assert changed >= 6


def test_character_noise_changes_characters_not_words_or_labels():
    from tl_hf.augment import text

    for name in ("spelling", "keyboard", "ocr"):
        fn = augmenter(f"{name}:p=0.3")
        outs = run(fn, SENTENCES)
        assert sum(o != s for o, s in zip(outs, SENTENCES, strict=False)) >= len(SENTENCES) - 1, (
            name
        )
        for sentence, new in zip(SENTENCES, outs, strict=False):
            # a few characters changed: most of the text is still there, in place
            assert difflib.SequenceMatcher(None, sentence, new).ratio() > 0.75, (name, new)
            if name != "spelling":  # spelling swaps whole words for common misspellings
                # one character for another, each a keyboard neighbour / OCR look-alike
                assert len(new) == len(sentence), (name, new)
                table = text._table(name)
                pairs = [(a, b) for a, b in zip(sentence, new, strict=False) if a != b]
                assert pairs and all(b in table[a] for a, b in pairs), (name, pairs)
            else:  # each changed word is a listed misspelling of the original word
                table = text._table("spelling")
                for a, b in zip(sentence.split(), new.split(), strict=False):
                    if a != b:
                        assert b in table.get(a, ()) or b.lower() in table[a.lower()], (a, b)


def test_same_seed_same_text_new_seed_new_text():
    fn = augmenter("synonym", "deletion", "swap", "insertion", "spelling", "keyboard", "ocr")
    a = run(fn, SENTENCES, [1, 2, 3, 4, 5, 6])
    assert a == run(fn, SENTENCES, [1, 2, 3, 4, 5, 6])
    assert a != run(fn, SENTENCES, [7, 8, 9, 10, 11, 12])
    # one row's result depends on its own seed only, not on its batch-mates
    assert run(fn, SENTENCES[2:3], [3]) == a[2:3]


def test_never_an_empty_text(monkeypatch):
    from tl_hf.augment import text

    fn = augmenter("deletion:p=1.0,max=100", "swap")
    out = run(fn, ["word", "", "   ", "two words", "Three short words"])
    assert out[:3] == ["word", "", "   "]  # never deletes the last word; blanks pass through
    assert len(out[3].split()) == 1 and len(out[4].split()) == 1
    # a step that produces an empty text is undone for that row
    monkeypatch.setitem(
        text._ROW_OPS, "deletion", lambda t, rng, params: "" if "b" in t else t + "!"
    )
    assert run(augmenter("deletion"), ["a b", "c d"]) == ["a b", "c d!"]


def test_unknown_name_or_key_is_an_error():
    from tl_hf.augment import text

    with pytest.raises(UserError, match="choose from.*synonym"):
        parse_augment_specs(["synonyms"], text.AUGMENTATIONS, [])
    with pytest.raises(UserError, match="valid ones are"):
        parse_augment_specs(["deletion:prob=0.1"], text.AUGMENTATIONS, [])
    with pytest.raises(UserError, match="unknown text augmentation"):
        text.build_augmenter([("hflip", {})], "text")
    with pytest.raises(UserError, match=r"p must be in \[0, 1\]"):
        augmenter("swap:p=2")
    with pytest.raises(UserError, match="substitute or insert"):
        augmenter("contextual:action=replace")
    with pytest.raises(UserError, match="no column 'sentence'"):
        augmenter("swap", column="sentence")({"text": ["a b"]}, [0])


CALLS = collections.Counter()


class Counting:
    """Counts the rows an augmenter really computes (a cache hit computes none)."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, batch, seeds):
        CALLS["rows"] += len(seeds)
        return self.fn(batch, seeds)


def _saved_dataset(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Value, load_from_disk

    features = Features({"text": Value("string"), "label": ClassLabel(num_classes=5)})
    Dataset.from_dict({"text": SENTENCES, "label": LABELS}, features=features).save_to_disk(
        tmp_path / "d"
    )
    return load_from_disk(str(tmp_path / "d"))  # has cache files, so map results are cached


def test_copies_cache_and_num_proc(tmp_path):
    from tl_hf.augment import text

    ds = _saved_dataset(tmp_path)
    specs = parse_augment_specs(["synonym", "deletion", "keyboard"], text.AUGMENTATIONS, [])
    fn = Counting(text.build_augmenter(specs, "text"))
    CALLS.clear()
    out = apply_augment_copies(ds, fn, specs, copies=3, seed=42, batch_size=4)
    assert len(out) == len(ds) * 4
    assert out["label"] == LABELS * 4
    assert out["text"][: len(ds)] == SENTENCES  # originals kept, first
    assert CALLS["rows"] == 3 * len(ds)
    copies = [out["text"][i * len(ds) : (i + 1) * len(ds)] for i in range(1, 4)]
    assert copies[0] != copies[1] != copies[2]  # each copy draws its own randomness

    CALLS.clear()
    again = apply_augment_copies(ds, fn, specs, copies=3, seed=42, batch_size=4)
    assert CALLS["rows"] == 0, "same seed: every copy must come from the cache"
    assert again["text"] == out["text"]

    other = apply_augment_copies(ds, fn, specs, copies=3, seed=7, batch_size=4)
    assert CALLS["rows"] == 3 * len(ds)
    assert other["text"][len(ds) :] != out["text"][len(ds) :]

    # Two worker processes (a fresh fingerprint: not a cache hit) give the same text.
    fn2 = text.build_augmenter(specs, "text")
    parallel = apply_augment_copies(ds, fn2, specs, copies=1, seed=123, num_proc=2, batch_size=2)
    serial = apply_augment_copies(
        ds.select(range(len(ds))), fn2, specs, copies=1, seed=123, batch_size=5
    )
    assert parallel["text"] == serial["text"]


def test_preview_prints_and_writes(tmp_path, capsys):
    from tl_hf.augment.text import write_preview

    aug = run(augmenter("swap"), SENTENCES[:2])
    paths = write_preview(
        [{"text": s} for s in SENTENCES[:2]], [{"text": a} for a in aug], "text", str(tmp_path)
    )
    printed = capsys.readouterr().out
    assert SENTENCES[0] in printed and aug[0] in printed
    for path in paths:
        with open(path) as f:
            written = f.read()
        assert aug[1] in written and SENTENCES[1] in written


def test_a_preview_of_a_split_sorted_by_class_shows_every_class(tmp_path, capsys):
    """The preview takes each class in turn (a sorted split once showed four rows of its
    first class), and each row is augmented as its first stored copy would be."""
    from datasets import ClassLabel, Dataset, Features, Value

    from tl_hf.augment.base import (
        AugmentSpec,
        apply_augment_copies,
        preview_indices,
        write_augment_preview,
    )
    from tl_hf.modalities.base import get_modality

    assert preview_indices([0, 0, 0, 1, 1, 2], 4) == [0, 3, 5, 1]
    assert preview_indices([0, 0, 0, 1, 1, 2], 9) == [0, 3, 5, 1, 4, 2]
    assert preview_indices(["b", "a"], 1) == [0]
    labels = [0] * 4 + [1] * 4 + [2] * 4  # sorted by class
    features = Features({"text": Value("string"), "label": ClassLabel(names=["x", "y", "z"])})
    texts = [SENTENCES[i % len(SENTENCES)] + f" number {i}" for i in range(12)]
    ds = Dataset.from_dict({"text": texts, "label": labels}, features=features)
    fn, specs = augmenter("swap"), [AugmentSpec("swap", {})]
    write_augment_preview(get_modality("text"), ds, fn, 3, 7, str(tmp_path))
    printed = capsys.readouterr().out
    copies = apply_augment_copies(ds, fn, specs, copies=1, seed=7)
    for row in (0, 4, 8):  # one of each class, augmented exactly as its stored copy
        assert texts[row] in printed and copies["text"][len(ds) + row] in printed
    assert texts[1] not in printed


# ------------------------------------------------------------------ tiny local models
WORDS = [
    "the",
    "a",
    "company",
    "said",
    "profits",
    "rose",
    "fell",
    "sharply",
    "in",
    "third",
    "quarter",
    "beating",
    "forecasts",
    "by",
    "analysts",
    "film",
    "awards",
    "team",
    "won",
    "match",
    "computer",
    "chip",
    "power",
    "good",
    "music",
    "happy",
    "crowd",
    "dance",
]


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_mlm")
    vocab = {
        t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s"])
    }
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_marian_pair(tmp_path_factory):
    """Two tiny MarianMT models sharing a word-level tokenizer (MarianTokenizer would need
    sentencepiece model files, which cannot be made here)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    folders = []
    for direction in ("forward", "backward"):
        folder = tmp_path_factory.mktemp(f"tiny_marian_{direction}")
        torch.manual_seed(len(folders))
        config = MarianConfig(
            vocab_size=len(vocab),
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=64,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
            forced_eos_token_id=1,
        )
        MarianMTModel(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(str(folder))
    return folders


@pytest.mark.parametrize("action", ["substitute", "insert"])
def test_contextual_on_a_tiny_masked_lm(tiny_mlm, action):
    texts = SENTENCES[:4]
    fn = augmenter(f"contextual:model={tiny_mlm},action={action},p=0.3,top_k=5,batch_size=3")
    out = run(fn, texts, [1, 2, 3, 4])
    assert out == run(fn, texts, [1, 2, 3, 4])  # seeded
    assert out != run(fn, texts, [5, 6, 7, 8])
    assert run(fn, texts[1:2], [2]) == out[1:2]  # independent of the batch it is in
    for sentence, new in zip(texts, out, strict=False):
        old_words, new_words = sentence.split(), new.split()
        n = math.ceil(0.3 * len(old_words))
        if action == "insert":
            assert len(new_words) == len(old_words) + n
        else:
            assert len(new_words) == len(old_words)
            assert sum(a != b for a, b in zip(old_words, new_words, strict=False)) == n
        assert set(w.lower() for w in new_words) - set(w.lower() for w in old_words) <= set(WORDS)


def test_backtranslation_on_a_tiny_marian_pair(tiny_marian_pair):
    forward, backward = tiny_marian_pair
    fn = augmenter(
        f"backtranslation:forward={forward},backward={backward},batch_size=2,max_length=12"
    )
    texts = SENTENCES[:3]
    out = run(fn, texts, [1, 2, 3])
    assert out == run(fn, texts, [1, 2, 3])  # seeded sampling
    assert out != run(fn, texts, [4, 5, 6])
    assert run(fn, texts[2:3], [3]) == out[2:3]
    assert all(o.strip() for o in out)
    assert any(
        set(o.split()) <= set(WORDS) and o != t for o, t in zip(out, texts, strict=False)
    )  # really generated
    # beam search without sampling: deterministic whatever the seed
    det = augmenter(
        f"backtranslation:forward={forward},backward={backward},temperature=0,num_beams=2,max_length=12"
    )
    assert run(det, texts, [1, 2, 3]) == run(det, texts, [9, 9, 9])


def test_unloadable_model_is_a_user_error(tmp_path):
    fn = augmenter(f"contextual:model={tmp_path / 'missing'}")
    with pytest.raises(UserError, match="cannot load a masked language model"):
        run(fn, ["some words here"])
