"""Text augmentation on transformers models, written on transformers directly (nlpaug's
versions break under transformers 5): `contextual`, a masked language model fills masked or
inserted words (label-consistent when its probe agrees, see `tl_hf.augment.text`), and
`backtranslation`, a pair of seq2seq translation models (source -> pivot -> source). Each row's
randomness comes from its own seed."""

from __future__ import annotations

import random
from typing import Any

from tl_hf.augment.words import TOKEN_RE, WORD_RE, aug_count, match_case
from tl_hf.errors import UserError

# ---------------------------------------------------------------------------- model ops
_MODELS: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def _load(kind: str, path: str, device: str):
    """Load a tokenizer and model once per process (keyed by path), so the augmenter only
    carries the path and stays cheap to pickle into `datasets.map` workers."""
    key = (kind, path, device)
    if key not in _MODELS:
        from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

        cls = AutoModelForMaskedLM if kind == "mlm" else AutoModelForSeq2SeqLM
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = cls.from_pretrained(path).to(device).eval()
        except (OSError, ValueError) as err:
            what = "a masked language model" if kind == "mlm" else "a seq2seq translation model"
            raise UserError(
                f"cannot load {what} from {path!r} ({type(err).__name__}: {str(err).splitlines()[0]}): "
                "give a local folder or a Hub id reachable from here"
            ) from err
        _MODELS[key] = (tokenizer, model)
    return _MODELS[key]


_WHOLE_WORDS: dict[str, Any] = {}


def _whole_word_ids(path: str, tokenizer) -> Any:
    """A boolean mask over the vocabulary: tokens that are whole alphabetic words (no
    word-piece continuations, no special tokens), the only ones worth writing back."""
    if path not in _WHOLE_WORDS:
        import torch

        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        # BPE/sentencepiece vocabularies mark word starts; WordPiece marks continuations.
        starts = ("Ġ", "▁")
        marked = any(t.startswith(starts) for t in vocab if t)
        special = set(tokenizer.all_special_ids)
        ok = []
        for i, tok in enumerate(vocab):
            good = bool(tok) and i not in special and not tok.startswith("##")
            if good and marked:
                good = tok.startswith(starts)
            if good:
                good = tokenizer.convert_tokens_to_string([tok]).strip().isalpha()
            ok.append(good)
        _WHOLE_WORDS[path] = torch.tensor(ok)
    return _WHOLE_WORDS[path]


def contextual_fill(texts: list[str], seeds: list[int], params: dict[str, Any]) -> list[str]:
    """`contextual`: words masked, then filled (substituted or inserted) by a masked language
    model, one seed per row."""
    if params["action"] not in ("substitute", "insert"):
        raise UserError(
            f"contextual: action must be substitute or insert, got {params['action']!r}"
        )
    tokenizer, model = _load("mlm", params["model"], params["device"])
    if tokenizer.mask_token is None:
        raise UserError(
            f"contextual: {params['model']!r} has no mask token: give a masked language model"
        )
    allowed = _whole_word_ids(params["model"], tokenizer)
    insert = params["action"] == "insert"
    # per row: tokens, the places to fill, the masked text
    plans = [
        _mask_plan(text, seed, tokenizer.mask_token, insert, params)
        for text, seed in zip(texts, seeds, strict=False)
    ]
    out = list(texts)
    bs = max(1, int(params["batch_size"]))
    for start in range(0, len(texts), bs):
        rows = range(start, min(start + bs, len(texts)))
        todo = [r for r in rows if plans[r][1]]
        if todo:
            _fill_batch(texts, seeds, plans, todo, out, tokenizer, model, allowed, params)
    return out


def _mask_plan(
    text: str, seed: int, mask_token: str, insert: bool, params: dict[str, Any]
) -> tuple[list[str], list[int], str]:
    """Where a row's masks go (drawn from its seed): the masked tokens, the places to fill,
    the masked text."""
    rng = random.Random(seed)
    tokens = TOKEN_RE.findall(text)
    words = [i for i, t in enumerate(tokens) if WORD_RE.fullmatch(t.strip(".,;:!?\"'()"))]
    n = aug_count(len(words), params["p"], params["min"], params["max"])
    if insert:
        places = sorted(rng.sample(range(len(tokens) + 1), k=min(n, len(tokens) + 1)))
        masked = list(tokens)
        for shift, place in enumerate(places):
            masked.insert(place + shift, mask_token)
        places = [place + shift for shift, place in enumerate(places)]
    else:
        places = sorted(rng.sample(words, k=n))
        masked = [mask_token if i in places else t for i, t in enumerate(tokens)]
    return masked, places, " ".join(masked)


def _fill_batch(texts, seeds, plans, todo, out, tokenizer, model, allowed, params) -> None:
    """Run the masked LM once over the masked texts of the rows `todo` and write each row's
    filled text to `out`."""
    import torch

    enc = tokenizer(
        [plans[r][2] for r in todo], return_tensors="pt", padding=True, truncation=True
    ).to(params["device"])
    with torch.no_grad():
        logits = model(**enc).logits.float().cpu()
    is_mask = (enc["input_ids"] == tokenizer.mask_token_id).cpu()
    insert = params["action"] == "insert"
    for j, r in enumerate(todo):
        masked, places, _ = plans[r]
        generator = torch.Generator().manual_seed(seeds[r] ^ 0x5DEECE66)
        filled = list(masked)
        words = TOKEN_RE.findall(texts[r])
        # Truncation may have cut some masks: those places keep their word (or vanish).
        for place, position in zip(places, is_mask[j].nonzero().flatten().tolist(), strict=False):
            old_word = None if insert else words[place]
            word = _draw_word(logits[j, position], old_word, tokenizer, allowed, params, generator)
            if word is not None:
                filled[place] = word if insert else _swap_core(words[place], word)
        if insert:  # masks the model did not fill (cut by truncation) go away
            filled = [t for t in filled if t != tokenizer.mask_token]
        else:  # ... or keep their original word
            filled = [words[i] if t == tokenizer.mask_token else t for i, t in enumerate(filled)]
        out[r] = " ".join(filled)


def _draw_word(scores, old_word, tokenizer, allowed, params, generator) -> str | None:
    """A whole word drawn from the model's top-k at one mask (None when no word is finite);
    `old_word`: the word a substitute replaces (None for an insertion)."""
    import torch

    scores = scores.masked_fill(~allowed, float("-inf"))
    if old_word is not None:  # a substitute must differ from the word it replaces
        old = tokenizer(old_word, add_special_tokens=False)["input_ids"]
        if len(old) == 1:
            scores[old[0]] = float("-inf")
    top = torch.topk(scores, k=min(int(params["top_k"]), int(allowed.sum())))
    probs = torch.softmax(top.values, dim=0)
    if not torch.isfinite(probs).all():
        return None
    choice = top.indices[torch.multinomial(probs, 1, generator=generator)].item()
    return tokenizer.convert_tokens_to_string(tokenizer.convert_ids_to_tokens([choice])).strip()


def _swap_core(original: str, word: str) -> str:
    """Put `word` in place of the word inside `original`, keeping its punctuation and case."""
    core = WORD_RE.search(original)
    if core is None:
        return word
    return original[: core.start()] + match_case(core.group(0), word) + original[core.end() :]


class _GumbelSampler:
    """A logits processor that turns greedy/beam search into sampling with per-row
    generators: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T), and
    each row's noise comes from its own seed, so a row translates the same way whatever
    batch it lands in."""

    def __init__(self, seeds: list[int], temperature: float, top_k: int, num_beams: int):
        import torch

        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_k = top_k
        self.num_beams = num_beams

    def __call__(self, input_ids, scores):
        import torch

        scores = scores.float() / self.temperature
        if self.top_k and self.top_k < scores.shape[-1]:
            kth = torch.topk(scores, self.top_k, dim=-1).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        uniform = torch.stack(
            [
                torch.rand(scores.shape[-1], generator=self.generators[row // self.num_beams])
                for row in range(scores.shape[0])
            ]
        ).to(scores.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-10, 1 - 1e-10)))
        return scores + gumbel


def _translate(texts: list[str], seeds: list[int], path: str, params: dict[str, Any]) -> list[str]:
    import torch
    from transformers import LogitsProcessorList

    tokenizer, model = _load("seq2seq", path, params["device"])
    out = []
    bs = max(1, int(params["batch_size"]))
    beams = max(1, int(params["num_beams"]))
    for start in range(0, len(texts), bs):
        chunk = texts[start : start + bs]
        enc = tokenizer(
            chunk,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=int(params["max_length"]),
        ).to(params["device"])
        processors = LogitsProcessorList()
        if params["temperature"] > 0:
            processors.append(
                _GumbelSampler(
                    seeds[start : start + bs], params["temperature"], int(params["top_k"]), beams
                )
            )
        with torch.no_grad():
            generated = model.generate(
                **enc,
                do_sample=False,
                num_beams=beams,
                max_length=int(params["max_length"]),
                logits_processor=processors,
            )
        out.extend(t.strip() for t in tokenizer.batch_decode(generated, skip_special_tokens=True))
    return out


def backtranslate(texts: list[str], seeds: list[int], params: dict[str, Any]) -> list[str]:
    pivot = _translate(texts, seeds, params["forward"], params)
    return _translate(pivot, [s ^ 0x2545F491 for s in seeds], params["backward"], params)


# ---------------------------------------------------------------------------- the callable
