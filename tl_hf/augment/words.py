"""What the word-level text augmenters share: the function words they never touch, how words
are found in a text, how many change (nlpaug's rule), and keeping a word's case."""

from __future__ import annotations

import math
import re

# Function words are never replaced, inserted from or chosen as synonyms (EDA's practice):
# changing them rarely yields a paraphrase.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)
WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]*")
TOKEN_RE = re.compile(r"\S+")
# The first `WORD_RE` inside each whitespace-separated token: `WORD_RE.search(token)` per token.
FIRST_WORDS_RE = re.compile(r"(?<!\S)[^A-Za-z\s]*([A-Za-z][A-Za-z'-]*)")


def aug_count(n_words: int, p: float, lo: int, hi: int) -> int:
    """How many words to change: ceil(p * n) clamped to [lo, hi] (nlpaug's rule), never
    more than there are."""
    if n_words == 0:
        return 0
    cnt = math.ceil(p * n_words)
    if lo and cnt < lo:
        cnt = lo
    if hi and cnt > hi:
        cnt = hi
    return min(cnt, n_words)


def match_case(original: str, new: str) -> str:
    if original.isupper() and len(original) > 1:
        return new.upper()
    if original[:1].isupper():
        return new[:1].upper() + new[1:]
    return new
