"""Text augmentation: label-preserving rewrites of one text column, seeded per row.

Word level: `synonym` (WordNet, part-of-speech aware), `deletion`, `swap`, `insertion`
(WordNet synonyms of the sentence's own words at random places). Character level:
`spelling`, `keyboard`, `ocr`. Model based: `contextual` (a masked language model fills
masked or inserted words) and `backtranslation` (a pair of seq2seq translation models).

Everything is written here on nltk, transformers and nlpaug's data files rather than
nlpaug's augmenters: insertion raises NotImplementedError there, deletion restores the
second word when it deletes the first two, swap and the character noise are too slow (its
per-token change log), its synonym tagger cannot be downloaded offline and the two
model-based ones break under transformers 5.

Several augmentations are applied one after the other to every row. Each row's randomness
comes from its own seed only, so results do not depend on batch boundaries or `num_proc`.
"""

from __future__ import annotations

import json
import os
import random
import re
from typing import Any

from tl_hf.augment.base import check_param
from tl_hf.augment.text_models import backtranslate, contextual_fill
from tl_hf.augment.words import (
    FIRST_WORDS_RE,
    STOPWORDS,
    TOKEN_RE,
    WORD_RE,
    aug_count,
    match_case,
)
from tl_hf.errors import UserError

# Parameters shared by the word-level augmenters: `p` is the fraction of the words that
# change, at least `min` and at most `max` per sentence (nlpaug's aug_p/aug_min/aug_max).
_WORDS = {"p": 0.1, "min": 1, "max": 10}
AUGMENTATIONS: dict[str, dict[str, Any]] = {
    "synonym": dict(_WORDS),
    "deletion": dict(_WORDS),
    "swap": dict(_WORDS),
    "insertion": dict(_WORDS),
    "spelling": dict(_WORDS),
    # Character noise: `p`/`min`/`max` choose the words, `char_p`/`char_max` the characters
    # changed in each chosen word.
    "keyboard": {**_WORDS, "char_p": 0.1, "char_max": 2},
    "ocr": {**_WORDS, "char_p": 0.1, "char_max": 2},
    "contextual": {
        "model": "google-bert/bert-base-uncased",  # any masked LM: Hub id or local folder
        "action": "substitute",  # substitute | insert
        **_WORDS,
        "top_k": 10,  # sample the new word among the model's top_k
        "batch_size": 32,
        "device": "cpu",
    },
    "backtranslation": {
        "forward": "Helsinki-NLP/opus-mt-en-de",  # source -> pivot language
        "backward": "Helsinki-NLP/opus-mt-de-en",  # pivot -> source language
        "batch_size": 16,
        "num_beams": 1,
        "temperature": 0.8,  # > 0: seeded sampling; 0: deterministic beam/greedy search
        "top_k": 50,
        "max_length": 256,
        "device": "cpu",
    },
}
# WordNet synonyms (EDA's replacement, Wei & Zou 2019): offline and fast. Not EDA's random
# deletion or swap: deleting "not" or moving it flips a sentiment label, and both lowered test
# accuracy on every real set measured (docs/defaults.md); ask for them with --augment.
DEFAULT_AUGMENT = ["synonym"]
# What the playbook's augmentation step compares (`tl_hf.lab.augment_step`): the offline EDA
# operations that keep a label (a model-based one needs a checkpoint the user names).
PLAYBOOK_POLICIES = ("synonym", "insertion")

# ---------------------------------------------------------------------------- WordNet ops
_SYN_CACHE: dict[tuple[str, str | None], tuple[str, ...]] = {}
_PTB_TO_WORDNET = {"N": "n", "V": "v", "J": "a", "R": "r"}


def wordnet_synonyms(word: str, pos: str | None = None) -> tuple[str, ...]:
    """WordNet synonyms of `word` (lemma names, spaces for underscores, the word itself
    left out), restricted to one part of speech (`n`, `v`, `a`, `r`) when given."""
    key = (word.lower(), pos)
    if key not in _SYN_CACHE:
        from nltk.corpus import wordnet

        from tl_hf.augment.wordnet import ensure_wordnet, synset_lemmas

        ensure_wordnet()
        word = key[0]
        # nltk's `wordnet.synsets(word, pos)` walk (same synsets, same order), reading only
        # the lemma names: building full Synset objects cost ~0.7 ms a word.
        forms = {q: wordnet._morphy(word, q) for q in "nvar"}
        # The word's own base forms ("forecasts" -> "forecast") are not synonyms.
        bases = {word}.union(*forms.values())
        # Adjectives come in two flavours in WordNet: heads (a) and satellites (s).
        wanted = {"a", "s"} if pos == "a" else ({pos} if pos else None)
        index = wordnet._lemma_pos_offset_map
        names: dict[str, None] = {}  # ordered set: the order must be reproducible
        for p in [pos] if pos else "nvar":
            for form in forms[p]:
                for offset in index[form].get(p, []):
                    synset_pos, lemmas = synset_lemmas(p, offset)
                    if wanted and synset_pos not in wanted:
                        continue
                    for lemma in lemmas:
                        name = lemma.replace("_", " ")
                        if name.lower() not in bases and name.lower() not in STOPWORDS:
                            names[name] = None
        _SYN_CACHE[key] = tuple(names)
    return _SYN_CACHE[key]


def _synonym(text: str, rng: random.Random, params: dict[str, Any]) -> str:
    from tl_hf.augment.wordnet import pos_tag

    tokens = TOKEN_RE.findall(text)
    # Tag words without their punctuation so the tagger sees "profits", not "profits,".
    cores = [WORD_RE.search(t) for t in tokens]
    tags = pos_tag([c.group(0) if c else t for c, t in zip(cores, tokens, strict=False)])
    eligible = []  # (token index, word match, WordNet part of speech)
    for i, (core, (_, tag)) in enumerate(zip(cores, tags, strict=False)):
        pos = _PTB_TO_WORDNET.get(tag[:1])
        if core is not None and pos is not None and core.group(0).lower() not in STOPWORDS:
            eligible.append((i, core, pos))
    n = aug_count(sum(1 for c in cores if c), params["p"], params["min"], params["max"])
    # Words in random order, the first n that have synonyms: the same draw as sampling n
    # among the words with synonyms, but WordNet is asked about a few words, not all.
    for i, core, pos in rng.sample(eligible, k=len(eligible)):
        if n == 0:
            break
        synonyms = wordnet_synonyms(core.group(0), pos)
        if synonyms:
            new = match_case(core.group(0), rng.choice(synonyms))
            tokens[i] = tokens[i][: core.start()] + new + tokens[i][core.end() :]
            n -= 1
    return " ".join(tokens)


def _insertion(text: str, rng: random.Random, params: dict[str, Any]) -> str:
    tokens = TOKEN_RE.findall(text)
    words = FIRST_WORDS_RE.findall(text)  # the word inside each token, in one C-level pass
    pool = [w for w in words if w.lower() not in STOPWORDS]
    n = aug_count(len(words), params["p"], params["min"], params["max"])
    for _ in range(n):
        # A uniform draw among the words with synonyms, by rejection: words found to have
        # none leave the pool, so WordNet is asked only about the words drawn. (Draws with
        # `rng.random()`, which is C, not the Python-level randrange/choice.)
        while pool:
            k = int(rng.random() * len(pool))
            synonyms = wordnet_synonyms(pool[k])
            if synonyms:
                break
            pool[k] = pool[-1]
            pool.pop()
        if not pool:
            break
        synonym = synonyms[int(rng.random() * len(synonyms))]
        tokens.insert(int(rng.random() * (len(tokens) + 1)), synonym)
    return " ".join(tokens)


def _deletion(text: str, rng: random.Random, params: dict[str, Any]) -> str:
    # Written here rather than nlpaug's RandomWordAug(action="delete"): when that deletes the
    # first two words it puts the second one back (re-capitalised), missing the count.
    tokens = TOKEN_RE.findall(text)
    words = [i for i, t in enumerate(tokens) if any(c.isalnum() for c in t)]
    if len(words) < 2:
        return text
    n = min(aug_count(len(words), params["p"], params["min"], params["max"]), len(words) - 1)
    gone = set(rng.sample(words, k=n))
    kept = [t for i, t in enumerate(tokens) if i not in gone]
    if 0 in gone and tokens[0][:1].isupper() and kept[0][:1].islower():
        kept[0] = kept[0][:1].upper() + kept[0][1:]  # the sentence still starts with a capital
    return " ".join(kept)


def _swap(text: str, rng: random.Random, params: dict[str, Any]) -> str:
    # Written here rather than nlpaug's RandomWordAug(action="swap"): same rule (a chosen
    # word trades places with a neighbour), about 5x faster on news sentences (nlpaug's
    # per-token change log dominates), which the 20,000 sentences/s target needs.
    tokens = TOKEN_RE.findall(text)
    if len(tokens) < 2:
        return text
    for _ in range(aug_count(len(tokens), params["p"], params["min"], params["max"])):
        i = rng.randrange(len(tokens))
        j = i + 1 if i == 0 else i - 1 if i == len(tokens) - 1 else i + rng.choice((-1, 1))
        tokens[i], tokens[j] = tokens[j], tokens[i]
    return " ".join(tokens)


# ---------------------------------------------------------------------- character noise
# Short loops of our own over nlpaug's data files (its keyboard layout, OCR confusion map
# and spelling-mistake dictionary): nlpaug's augmenters spend most of their time in per-token
# change logs and regex detokenisation (~9,000 sentences/s); these reach the 20,000
# sentences/s target. Only the chosen words change; the rest of the text is kept verbatim.
_ALNUM_SPLIT = re.compile(r"([A-Za-z0-9]+)")
_WORD_SPLIT = re.compile(r"([A-Za-z][A-Za-z'-]*)")
_TABLES: dict[str, dict[str, tuple[str, ...]]] = {}
# nlpaug's defaults: keyboard typos only in words of 4+ characters, OCR errors in any word.
_MIN_CHARS = {"keyboard": 4, "ocr": 1}


def _nlpaug_res(*parts: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec("nlpaug")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("character noise needs nlpaug's data files: pip install nlpaug==1.1.11")
    return os.path.join(next(iter(spec.submodule_search_locations)), "res", *parts)


def _table(name: str) -> dict[str, tuple[str, ...]]:
    """nlpaug's table for `name`, built once per process with nlpaug's own rules
    (keyboard: neighbours in both cases, digits left alone; OCR: the map plus its reverse;
    spelling: the dictionary plus its reverse), in a reproducible order."""
    if name not in _TABLES:
        table: dict[str, dict[str, None]] = {}  # ordered sets

        def add(key: str, value: str) -> None:
            if value != key:
                table.setdefault(key, {})[value] = None

        if name == "keyboard":
            with open(_nlpaug_res("char", "keyboard", "en.json"), encoding="utf8") as f:
                layout = json.load(f)
            for key, values in layout.items():
                if key.isdigit():  # a typo in a number can change what the text says
                    continue
                for value in values:
                    value = value.strip()  # en.json lists " t" among u's neighbours
                    if not value or value.isdigit():
                        continue
                    for k in {key, key.upper()}:
                        add(k, value)
                        add(k, value.upper())
            result = {k: tuple(sorted(v)) for k, v in table.items() if v}
        elif name == "ocr":
            with open(_nlpaug_res("char", "ocr", "en.json"), encoding="utf8") as f:
                mapping = json.load(f)
            for key, values in mapping.items():
                for value in values:
                    add(key, value)
            for key, values in mapping.items():
                for value in values:
                    add(value, key)
            result = {k: tuple(v) for k, v in table.items() if v}
        else:
            path = _nlpaug_res("word", "spelling", "spelling_en.txt")
            with open(path, encoding="utf-8") as f:
                for line in f:
                    key, *values = line.split()
                    for value in values:
                        add(key, value)
                        add(value, key)
            result = {k: tuple(v) for k, v in table.items() if v}
        _TABLES[name] = result
    return _TABLES[name]


def _pick(parts: list[str], n: int, rng: random.Random, eligible) -> list[int]:
    """Up to `n` word positions (odd indices of a `re.split` with one capture group), drawn
    uniformly among the eligible words by rejection: only the words drawn are checked.
    (`int(rng.random() * len)` rather than `randrange`/`sample`/`choice` here and below:
    those are Python-level and were a third of the character noise's time.)"""
    pool = list(range(1, len(parts), 2))
    chosen: list[int] = []
    while pool and len(chosen) < n:
        k = int(rng.random() * len(pool))
        i = pool[k]
        pool[k] = pool[-1]
        pool.pop()
        if eligible(parts[i]):
            chosen.append(i)
    return chosen


def _char_noise(name: str, text: str, rng: random.Random, params: dict[str, Any]) -> str:
    table = _table(name)
    shortest = _MIN_CHARS[name]
    parts = _ALNUM_SPLIT.split(text)  # odd indices: the words; even: what lies between
    n = aug_count(len(parts) // 2, params["p"], params["min"], params["max"])
    for i in _pick(parts, n, rng, lambda w: len(w) >= shortest and any(c in table for c in w)):
        chars = list(parts[i])
        places = [j for j, c in enumerate(chars) if c in table]
        for _ in range(
            min(aug_count(len(chars), params["char_p"], 1, params["char_max"]), len(places))
        ):
            k = int(rng.random() * len(places))  # a place not drawn before
            j = places[k]
            places[k] = places[-1]
            places.pop()
            options = table[chars[j]]
            chars[j] = options[int(rng.random() * len(options))]
        parts[i] = "".join(chars)
    return "".join(parts)


def _keyboard(text: str, rng: random.Random, params: dict[str, Any]) -> str:
    return _char_noise("keyboard", text, rng, params)


def _ocr(text: str, rng: random.Random, params: dict[str, Any]) -> str:
    return _char_noise("ocr", text, rng, params)


def _spelling(text: str, rng: random.Random, params: dict[str, Any]) -> str:
    table = _table("spelling")
    parts = _WORD_SPLIT.split(text)
    n = aug_count(len(parts) // 2, params["p"], params["min"], params["max"])
    # A word is looked up as written, else in lower case (then the case is carried over).
    for i in _pick(parts, n, rng, lambda w: w in table or w.lower() in table):
        word = parts[i]
        options = table.get(word) or table[word.lower()]
        new = options[int(rng.random() * len(options))]
        parts[i] = new if word in table else match_case(word, new)
    return "".join(parts)


_ROW_OPS = {
    "synonym": _synonym,
    "insertion": _insertion,
    "deletion": _deletion,
    "swap": _swap,
    "spelling": _spelling,
    "keyboard": _keyboard,
    "ocr": _ocr,
}
_BATCH_OPS = {"contextual": contextual_fill, "backtranslation": backtranslate}


class TextAugmenter:
    """The picklable callable `build_augmenter` returns: it holds only the augmentation
    names and parameters; models and tables are loaded once per process."""

    def __init__(self, specs: list[tuple[str, dict[str, Any]]], column: str):
        self.specs = specs
        self.column = column

    def augment_texts(self, texts: list[str], seeds: list[int]) -> list[str]:
        """Augment a list of texts, one seed per text; never returns an empty text."""
        originals = list(texts)
        current = [t if isinstance(t, str) else "" for t in texts]
        for step, (name, params) in enumerate(self.specs):
            # Each step draws from its own seed, derived from the row's seed and the step.
            step_seeds = [(s * 0x9E3779B1 + (step + 1) * 0x85EBCA77) % 2**32 for s in seeds]
            if name in _BATCH_OPS:
                live = [i for i, t in enumerate(current) if t.strip()]
                results = _BATCH_OPS[name](
                    [current[i] for i in live], [step_seeds[i] for i in live], params
                )
                new = list(current)
                for i, text in zip(live, results, strict=False):
                    new[i] = text
            else:
                op = _ROW_OPS[name]
                new = [
                    op(t, random.Random(s), params) if t.strip() else t
                    for t, s in zip(current, step_seeds, strict=False)
                ]
            # A step that empties a text (deletion of a one-word sentence, a model that
            # produced nothing) is undone for that row.
            current = [
                n if isinstance(n, str) and n.strip() else c
                for n, c in zip(new, current, strict=False)
            ]
        return [c if c.strip() else o for c, o in zip(current, originals, strict=False)]

    def __call__(self, batch: dict[str, list], seeds: list[int]) -> dict[str, list]:
        if self.column not in batch:
            raise UserError(
                f"text augmentation: no column {self.column!r}; columns are {', '.join(batch)}"
            )
        out = dict(batch)
        out[self.column] = self.augment_texts(list(batch[self.column]), list(seeds))
        return out

    def __repr__(self) -> str:
        return f"TextAugmenter({self.specs!r}, column={self.column!r})"


def build_augmenter(specs, column: str, **context: Any) -> TextAugmenter:
    """Build the callable `fn(batch, seeds) -> batch` that augments `column`.

    Args:
        specs: parsed `AugmentSpec`s (or `(name, params)` pairs), applied in order.
        column: the text column; every other column passes through untouched.
        **context: ignored here (other modalities take e.g. a sampling rate).

    Raises:
        UserError: on an unknown augmentation, parameter, or invalid value.
    """
    resolved = []
    for spec in specs:
        name, params = (spec.name, spec.params) if hasattr(spec, "name") else spec
        if name not in AUGMENTATIONS:
            raise UserError(
                f"unknown text augmentation {name!r}: choose from {', '.join(sorted(AUGMENTATIONS))}"
            )
        unknown = sorted(set(params) - set(AUGMENTATIONS[name]))
        if unknown:
            raise UserError(
                f"augmentation {name!r} has no parameter {unknown[0]!r}: valid ones are "
                f"{', '.join(sorted(AUGMENTATIONS[name]))}"
            )
        full = {**AUGMENTATIONS[name], **params}
        for key, value in params.items():  # what parse_augment_specs checks, for direct calls
            check_param(name, key, value)
        if name == "contextual" and full["action"] not in ("substitute", "insert"):
            raise UserError(
                f"contextual: action must be substitute or insert, got {full['action']!r}"
            )
        if name in ("synonym", "insertion"):
            from tl_hf.augment.wordnet import ensure_wordnet

            ensure_wordnet()  # fail now, with the fix, rather than inside a map worker
        resolved.append((name, full))
    return TextAugmenter(resolved, column)


def write_preview(
    originals: list[dict], augmented: list[dict], column: str, output_dir: str
) -> list[str]:
    """Print originals beside their augmented versions and write them to
    `output_dir/augment_preview.txt` (readable) and `augment_preview.jsonl`.

    Returns:
        The paths of the files written.
    """
    os.makedirs(output_dir, exist_ok=True)
    txt = os.path.join(output_dir, "augment_preview.txt")
    jsonl = os.path.join(output_dir, "augment_preview.jsonl")
    from tl_hf.output.atomic import write_text

    lines, records = [], []
    for i, (orig, aug) in enumerate(zip(originals, augmented, strict=False)):
        before = orig[column] if isinstance(orig, dict) else orig
        after = aug[column] if isinstance(aug, dict) else aug
        lines += [f"[{i}] original : {before}", f"[{i}] augmented: {after}", ""]
        records.append(json.dumps({"original": before, "augmented": after}) + "\n")
    write_text(jsonl, "".join(records))
    write_text(txt, "\n".join(lines))
    print("\n".join(lines))
    return [txt, jsonl]
