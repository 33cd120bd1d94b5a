"""Offline WordNet and part-of-speech tagging for the text augmenters.

nltk reads WordNet from an NLTK data folder (`corpora/wordnet`) that it normally downloads.
Offline, the same WordNet 3.0 database ships in Debian's `wordnet-base` (plus
`wordnet-sense-index` for `index.sense`) under `/usr/share/wordnet`; only nltk's
`lexnames` file is missing, and it is a fixed table. `ensure_wordnet()` assembles that
folder once under the toolkit's cache and puts it on `nltk.data.path`. When nltk already
finds WordNet (a user who ran `nltk.download("wordnet")`), that copy is used as is.

Tagging: `nltk.pos_tag` needs `averaged_perceptron_tagger_eng`, which cannot be downloaded
here; when nltk finds it, it is used, otherwise textblob's bundled English tagger (a
lexicon-and-rules tagger from the pattern library, Penn Treebank tags) takes its place.

    python -m tl_hf.augment.wordnet   # assemble it now (what scripts/setup.sh calls)
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

DEBIAN_WORDNET = Path("/usr/share/wordnet")
# The database files nltk's WordNetCorpusReader opens (index.sense is optional in nltk
# but wanted for sense keys; it comes from wordnet-sense-index).
WORDNET_FILES = (
    *(f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")),
    *(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv")),
    "index.sense",
)
# WordNet 3.0's lexicographer files: number, name, syntactic category (nltk's `lexnames`).
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_MARKER = re.compile(r"\([^()]*\)$")
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def cache_dir() -> Path:
    """The toolkit's cache folder: `$TL_HF_CACHE`, else `~/.cache/tl_hf`."""
    return Path(os.environ.get("TL_HF_CACHE") or Path.home() / ".cache" / "tl_hf")


def nltk_data_dir() -> Path:
    """The NLTK data folder the toolkit assembles and adds to `nltk.data.path`."""
    return cache_dir() / "nltk_data"


def lexnames_text() -> str:
    """The content of nltk's `lexnames` file for WordNet 3.0."""
    return "".join(
        f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def _nltk_finds(resource: str) -> bool:
    import nltk

    try:
        nltk.data.find(resource)
        return True
    except LookupError:
        return False


def _add_to_nltk_path(folder: Path) -> None:
    import nltk

    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))


def build_wordnet_folder(target: Path, source: Path = DEBIAN_WORDNET) -> None:
    """Write `target/corpora/wordnet` from the Debian WordNet files, atomically: the files
    go to a temporary folder beside it that is renamed into place, so a concurrent or
    interrupted build never leaves a half-written corpus that nltk would read."""
    from tl_hf.errors import UserError

    missing = [name for name in WORDNET_FILES if not (source / name).is_file()]
    if missing:
        raise UserError(
            f"WordNet is not available: {source} lacks {', '.join(missing)}. Install the Debian "
            "packages (apt-get install wordnet-base wordnet-sense-index) or, with internet, "
            "run python -c \"import nltk; nltk.download('wordnet')\""
        )
    corpora = target / "corpora"
    corpora.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=corpora))
    try:
        for name in WORDNET_FILES:
            shutil.copyfile(source / name, tmp / name)
        (tmp / "lexnames").write_text(lexnames_text())
        try:
            os.rename(tmp, corpora / "wordnet")
        except OSError:
            if not (corpora / "wordnet" / "lexnames").is_file():  # not another process's win
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_READY: dict[tuple[str | None, str | None], tuple[str, str]] = {}


def ensure_wordnet() -> str:
    """Make `nltk.corpus.wordnet` work offline and return the folder it is read from.

    Uses WordNet wherever nltk already finds it; otherwise assembles it once from Debian's
    files under `nltk_data_dir()`. Cheap after the first call in a process (the answer is
    kept per cache folder: `nltk.data.find` stats dozens of paths, which cost more than the
    WordNet lookups themselves when the augmenters called it per word).
    """
    import nltk

    # Keyed by what decides `nltk_data_dir()`, without building the Path (also costly).
    key = (os.environ.get("TL_HF_CACHE"), os.environ.get("HOME"))
    if key in _READY and _READY[key][0] in nltk.data.path:
        return _READY[key][1]
    folder = nltk_data_dir()
    _add_to_nltk_path(folder)  # appended: a user's own nltk data keeps priority
    if not _nltk_finds("corpora/wordnet"):
        build_wordnet_folder(folder)
    found = nltk.data.find("corpora/wordnet")
    _READY[key] = (str(folder), str(getattr(found, "path", found)))
    return _READY[key][1]


_DATA_FILES = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
_OPEN: dict[tuple[int, str], Any] = {}
_SYNSETS: dict[tuple[str, int], tuple[str, tuple[str, ...]]] = {}


def synset_lemmas(pos: str, offset: int) -> tuple[str, tuple[str, ...]]:
    """The part of speech (`n`, `v`, `a`, `s`, `r`) and lemma names of the synset at
    `offset` in WordNet's data file for `pos`, read straight from the file and memoised.

    The same fields nltk's `Synset.pos()` and `lemma_names()` give, at a fraction of the
    cost: nltk also parses every pointer, verb frame and the gloss of each synset it loads,
    which dominated the synonym augmenters' time on a cold cache.
    """
    key = (pos, offset)
    if key not in _SYNSETS:
        from nltk.corpus import wordnet

        name = _DATA_FILES[pos]
        # One handle per process: forked `datasets.map` workers must not share a file
        # position with their parent.
        handle = _OPEN.get((os.getpid(), name))
        if handle is None:
            handle = open(str(wordnet.abspath(f"data.{name}")), "rb")  # noqa: SIM115
            _OPEN[(os.getpid(), name)] = handle
        handle.seek(offset)
        fields = handle.readline().decode("utf-8").split("|", 1)[0].split()
        # offset lex_filenum ss_type w_cnt (hex) [word lex_id]...; adjectives may carry a
        # syntactic marker such as "(p)" after the word, which nltk strips too.
        count = int(fields[3], 16)
        names = tuple(_MARKER.sub("", w) for w in fields[4 : 4 + 2 * count : 2])
        _SYNSETS[key] = (fields[2], names)
    return _SYNSETS[key]


def has_nltk_tagger() -> bool:
    """Whether nltk's own English tagger is installed (then `nltk.pos_tag` works)."""
    return _nltk_finds("taggers/averaged_perceptron_tagger_eng/")


def pos_tag(tokens: list[str]) -> list[tuple[str, str]]:
    """Penn Treebank tags for `tokens`: nltk's tagger when installed, else textblob's
    bundled English tagger (no download)."""
    if has_nltk_tagger_cached():
        import nltk

        return nltk.pos_tag(tokens)
    return _textblob_tag(tokens)


_HAS_TAGGER: bool | None = None


def has_nltk_tagger_cached() -> bool:
    global _HAS_TAGGER
    if _HAS_TAGGER is None:
        _HAS_TAGGER = has_nltk_tagger()
    return _HAS_TAGGER


def _textblob_tag(tokens: list[str]) -> list[tuple[str, str]]:
    from textblob.en import parser

    if not tokens:
        return []
    # The parser's tagging step on the tokens as they are (lexicon, morphology and context
    # rules): `textblob.en.tag` runs the same step but first joins, re-splits and formats
    # the sentence as a tagged string, which took most of its time.
    tagged = parser.find_tags(list(tokens))
    if len(tagged) != len(tokens):  # never seen; keep tags aligned with the tokens
        return [(t, parser.find_tags([t])[0][1] if t.strip() else "NN") for t in tokens]
    return [(word, tag_) for (_, tag_), word in zip(tagged, tokens, strict=False)]


def main(argv: list[str] | None = None) -> int:
    """Assemble WordNet now and print where it is, plus which tagger will be used."""
    path = ensure_wordnet()
    from nltk.corpus import wordnet

    print(f"WordNet: {path} ({len(wordnet.synsets('good'))} synsets for 'good')")
    print(
        "tagger: "
        + ("nltk averaged_perceptron_tagger_eng" if has_nltk_tagger() else "textblob (bundled)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
