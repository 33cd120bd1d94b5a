"""Audio modality: what differs for audio in each step of the flow (columns, file checks,
decoding to mono at the extractor's rate, cropping, the feature extractor, collation,
SpecAugment and mixup, the embedded default), declared once in `MODALITY` (see
`tl_hf.modality.Modality`). Media code shared with images is in `tl_hf.modalities.media`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tl_hf.modalities.base import Modality, register_modality

EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif")
AUDIO_CANDIDATES = (
    "audio",
    "speech",
    "sound",
    "clip",
    "audio_path",
    "audio_file",
    "file",
    "path",
    "filepath",
)
DURATION_SAMPLE = 256  # training clips whose length is read for the window rule
WINDOW_QUANTILE = 0.95  # the window keeps this share of the training clips whole


@dataclass
class AudioArguments:
    """The audio modality's own flags."""

    max_duration_seconds: float | None = field(
        default=None,
        metadata={
            "range": "(0, inf)",
            "help": "Audio: crop (random in training, centred in evaluation) and pad to this length.",
        },
    )


def default_model() -> str:
    from tl_hf.embedded.audio import whisper_tiny_en_folder

    return whisper_tiny_en_folder()


def load_default_dataset(data_args):
    """Ten spoken words synthesized with espeak-ng and flite; test voices held out."""
    from tl_hf.embedded.audio import synthesize_spoken_words

    return synthesize_spoken_words()


def load_folder(path: str, data_args):
    """One subfolder of audio files per class (or train/validation/test folders of those)."""
    from datasets import Audio

    from tl_hf.modalities.media import media_folder

    return media_folder(path, EXTENSIONS, Audio(), "audio", "audio")


def find_input_columns(columns: list[str], features, label: str, data_args) -> dict[str, str]:
    """{"audio": column}: the one named, else the only Audio column, else a usual name."""
    from datasets import Audio

    from tl_hf.modalities.media import find_media_column

    return {
        "audio": find_media_column(
            columns, features, label, data_args.audio_column, Audio, AUDIO_CANDIDATES, "audio"
        )
    }


# Peak amplitude below which a clip counts as silence (16-bit audio's smallest step is 3e-5).
SILENCE = 1e-5


def _readable(value) -> str | None:
    """None when the file decodes to at least one sample, else what is wrong."""
    import io

    import soundfile as sf

    try:
        if value.get("bytes"):
            source = io.BytesIO(value["bytes"])
        elif value.get("path") and value["path"].lower().endswith(
            (".wav", ".flac", ".ogg", ".aiff", ".aif")
        ):
            source = value["path"]
        else:  # formats libsndfile does not read (mp3, m4a...): let torchcodec try
            from torchcodec.decoders import AudioDecoder

            samples = AudioDecoder(value["path"]).get_all_samples()
            if samples.data.shape[-1] == 0:
                return "zero-length clip"
            return None if samples.data.abs().max() > SILENCE else "silent clip (all samples 0)"
        info = sf.info(source)
        if info.samplerate <= 0:
            return f"sample rate {info.samplerate} in its header"
        if info.frames <= 0:
            return "zero-length clip"
        if hasattr(source, "seek"):
            source.seek(0)
        wave, _ = sf.read(source, dtype="float32", always_2d=True)
        return None if abs(wave).max() > SILENCE else "silent clip (all samples 0)"
    except Exception as err:  # soundfile/torchcodec raise many types for bad files
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}"


def validate_inputs(dsd, data_args):
    """Audio paths and in-memory arrays become an Audio feature; every clip must decode and
    hold samples (see --skip_bad_files). Other rates and stereo are converted, not rejected."""
    from datasets import Audio

    from tl_hf.modalities.media import validate_media

    return validate_media(dsd, data_args, "audio", Audio(), _readable, "audio")


def _is_whisper(config) -> bool:
    return getattr(config, "model_type", None) == "whisper"


def build_processor(model_path: str, args, config=None):
    """The feature extractor; Whisper's input window shrinks to `--max_duration_seconds`
    (rounded up to whole seconds) instead of its fixed 30 s, see `adapt_model`."""
    from transformers import AutoFeatureExtractor

    kwargs = {}
    if _is_whisper(config) and args.data.max_duration_seconds:
        kwargs["chunk_length"] = max(1, math.ceil(args.data.max_duration_seconds))
    return AutoFeatureExtractor.from_pretrained(
        model_path,
        revision=args.model.model_revision,
        cache_dir=args.model.cache_dir,
        trust_remote_code=args.model.trust_remote_code,
        **kwargs,
    )


def clip_seconds(train, rate: int) -> list[float]:
    """The lengths in seconds of up to DURATION_SAMPLE training clips: from the file header
    where the clip is a file or bytes, else from the decoded samples (a bare array counts at
    `rate`, the extractor's, as preprocessing reads it)."""
    import io

    import soundfile as sf
    from datasets import Audio

    from tl_hf.augment.audio import load_waveform
    from tl_hf.modalities.media import sampled_undecoded

    seconds = []
    for value in sampled_undecoded(train, "audio", Audio, DURATION_SAMPLE):
        if isinstance(value, dict) and value.get("array") is None:
            source = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
            try:
                info = sf.info(source)
                seconds.append(info.frames / info.samplerate)
                continue
            except (RuntimeError, TypeError):  # LibsndfileError is a RuntimeError
                pass  # a format soundfile cannot read the header of: decode it
        wave, clip_rate, _ = load_waveform(value, rate)
        seconds.append(len(wave) / clip_rate)
    return seconds


def rules_from_data(train, processor, data_args, config) -> list:
    """`--max_duration_seconds` when not given, for Whisper (whose encoder otherwise reads a
    fixed 30 s window, however short the clips): the length that keeps WINDOW_QUANTILE of the
    training clips whole, rounded up to whole seconds (longer ones are cropped)."""
    import numpy as np

    from tl_hf.modalities.base import DataRule

    full = getattr(processor, "chunk_length", None)
    if data_args.max_duration_seconds or not _is_whisper(config) or not full or not len(train):
        return []
    seconds = float(np.quantile(clip_seconds(train, processor.sampling_rate), WINDOW_QUANTILE))
    window = max(1, math.ceil(seconds))
    if window >= full:
        return []
    reason = (
        f"{WINDOW_QUANTILE:.0%} of the training clips last {seconds:.1f} s or less; Whisper's "
        f"{full} s window shrinks to {window} s ({full / window:.0f}x less encoder work), "
        "longer clips are cropped (docs/defaults.md, audio window)"
    )
    return [DataRule("max_duration_seconds", float(window), reason)]


def adapt_model(model, processor) -> None:
    """Whisper: keep the first `chunk_length * 50` encoder positions so the encoder accepts
    the shorter window (its positions are fixed sinusoids, so the first ones are unchanged):
    1 s clips cost 1/30 of the compute of the 30 s window."""
    import torch

    if not _is_whisper(model.config):
        return
    positions = processor.nb_max_frames // 2  # conv2 has stride 2: two frames per position
    encoder = model.encoder
    if positions >= encoder.embed_positions.num_embeddings:
        return
    old = encoder.embed_positions
    encoder.embed_positions = torch.nn.Embedding(positions, old.embedding_dim)
    encoder.embed_positions.weight.data.copy_(old.weight.data[:positions])
    encoder.embed_positions.weight.requires_grad_(False)
    encoder.max_source_positions = model.config.max_source_positions = positions


class Preprocess:
    """Batched: decode -> mono at the extractor's rate -> crop/pad to `max_duration_seconds`
    (a random window in training, the centre in evaluation) -> features."""

    def __init__(
        self, processor, max_duration_seconds: float | None, train_split: bool, seed: int = 0
    ):
        import numpy as np

        self.processor = processor
        self.rate = processor.sampling_rate
        self.max_samples = int(max_duration_seconds * self.rate) if max_duration_seconds else None
        self.train_split = train_split
        self.rng = np.random.default_rng(seed)

    def _crop(self, wave):
        if self.max_samples is None or len(wave) <= self.max_samples:
            return wave
        extra = len(wave) - self.max_samples
        start = int(self.rng.integers(0, extra + 1)) if self.train_split else extra // 2
        return wave[start : start + self.max_samples]

    def __call__(self, batch):
        import librosa

        from tl_hf.augment.audio import load_waveform

        waves = []
        for value in batch["audio"]:
            wave, rate, _ = load_waveform(value, self.rate)
            if rate != self.rate:
                wave = librosa.resample(wave, orig_sr=rate, target_sr=self.rate)
            waves.append(self._crop(wave))
        kwargs = {}
        if self.max_samples is not None and "input_values" in self.processor.model_input_names:
            kwargs = {"padding": "max_length", "max_length": self.max_samples, "truncation": True}
        out = dict(self.processor(waves, sampling_rate=self.rate, return_tensors="np", **kwargs))
        if "input_features" in out:
            out.pop("attention_mask", None)  # Whisper's encoder takes the full window
        out["labels"] = batch["label"]
        return out


def make_preprocess(processor, data_args, train_split: bool = False):
    return Preprocess(processor, data_args.max_duration_seconds, train_split)


class Collator:
    """Stacks fixed-size features (Whisper, AST); pads raw waveforms (wav2vec2-style)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows):
        import torch

        # labels are absent when features are extracted for the cache
        labels = (
            {"labels": torch.tensor([int(r["labels"]) for r in rows])}
            if "labels" in rows[0]
            else {}
        )
        key = "input_features" if "input_features" in rows[0] else "input_values"
        first = torch.as_tensor(rows[0][key])
        if first.ndim >= 2 or all(
            len(r[key]) == len(first) for r in rows
        ):  # spectrograms, fixed windows
            return {key: torch.stack([torch.as_tensor(r[key]) for r in rows]), **labels}
        padded = self.processor.pad(
            {"input_values": [r["input_values"] for r in rows]},
            return_tensors="pt",
            return_attention_mask=True,
        )
        return {**padded, **labels}


def build_collator(processor):
    return Collator(processor)


class BatchAugment:
    """SpecAugment on spectrogram features, then mixup, on collated training batches.
    Whisper's `input_features` are [B, mels, T]; AST's `input_values` are [B, T, mels]."""

    def __init__(self, specs, num_labels: int, seed: int):
        from tl_hf.augment.audio import build_batch_mixer, build_feature_masker

        self.maskers = {
            "input_features": build_feature_masker(specs, freq_axis=1, seed=seed),
            "input_values": build_feature_masker(specs, freq_axis=2, seed=seed),
        }
        self.mixer = build_batch_mixer(specs, num_labels, seed)

    def __call__(self, batch):
        for key, masker in self.maskers.items():
            if masker is not None and key in batch and batch[key].ndim == 3:  # spectrograms only
                batch[key] = masker(batch[key])
        return self.mixer(batch) if self.mixer is not None else batch


def build_batch_augment(specs, num_labels: int, seed: int):
    augment = BatchAugment(specs, num_labels, seed)
    return (
        augment
        if augment.mixer is not None or augment.maskers["input_features"] is not None
        else None
    )


def augment_context(processor, args) -> dict:
    return {"sampling_rate": processor.sampling_rate}


MODALITY = register_modality(
    Modality(
        name="audio",
        task="audio-classification",
        auto_model="AutoModelForAudioClassification",
        input_column="audio",
        column_flags=("audio_column",),
        extensions=EXTENSIONS,
        default_learning_rates={"frozen": 1e-2, "full": 5e-5, "llrd": 1e-4},
        example_input='"path/to/clip.wav"',
        default_dataset="embedded:spoken_words_espeak_flite",
        default_model_hub_id="openai/whisper-tiny.en",
        embedded_run_defaults={"max_duration_seconds": 1.0, "num_train_epochs": 3},
        augment_module="tl_hf.augment.audio",
        # Decoding, resampling and random crops happen per batch (with_transform), never stored.
        preprocess_on_access=True,
        default_model=default_model,
        load_default_dataset=load_default_dataset,
        load_folder=load_folder,
        find_input_columns=find_input_columns,
        validate_inputs=validate_inputs,
        build_processor=build_processor,
        make_preprocess=make_preprocess,
        flags=AudioArguments,
        build_collator=build_collator,
        augment_context=augment_context,
        build_batch_augment=build_batch_augment,
        adapt_model=adapt_model,
        rules_from_data=rules_from_data,
    )
)
