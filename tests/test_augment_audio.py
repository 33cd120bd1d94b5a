"""Each audio augmentation changes the signal as specified; map/on-the-fly plumbing."""

from __future__ import annotations

import numpy as np
import pytest

from tl_hf.augment import OnTheFly, apply_augment_copies, parse_augment_specs
from tl_hf.augment import audio as aa

SR = 16000


def specs(*items):
    return parse_augment_specs(list(items), aa.AUGMENTATIONS, aa.DEFAULT_AUGMENT)


def sine(freq=440.0, seconds=1.0, amp=0.5):
    t = np.arange(int(SR * seconds)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def run(items, wave, seed=0, others=None):
    fn = aa.build_augmenter(specs(*items), "audio", sampling_rate=SR)
    batch = {
        "audio": [{"array": wave, "sampling_rate": SR}]
        + [{"array": o, "sampling_rate": SR} for o in others or []],
        "label": [3] * (1 + len(others or [])),
    }
    out = fn(batch, [seed + i for i in range(len(batch["audio"]))])
    assert out["label"] == batch["label"]
    return out["audio"][0]["array"]


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_time_stretch_changes_duration_by_the_factor():
    out = run(["time_stretch:rate=1.25/1.25,leave_length_unchanged=false,p=1"], sine())
    assert len(out) == pytest.approx(SR / 1.25, abs=SR * 0.01)
    kept = run(["time_stretch:rate=1.25/1.25,p=1"], sine())
    assert len(kept) == SR


def test_noise_at_requested_snr():
    clean = sine()
    out = run(["noise:snr_db=12/12,p=1"], clean)
    snr = 20 * np.log10(rms(clean) / rms(out - clean))
    assert snr == pytest.approx(12.0, abs=1.0)


def test_gain_changes_rms_by_db():
    clean = sine(amp=0.1)
    out = run(["gain:gain_db=-6/-6,p=1"], clean)
    assert 20 * np.log10(rms(out) / rms(clean)) == pytest.approx(-6.0, abs=0.05)


def test_shift_moves_signal():
    clean = np.zeros(SR, np.float32)
    clean[1000:1100] = 1.0
    out = run(["shift:fraction=0.25/0.25,p=1"], clean)
    assert len(out) == SR
    assert int(np.argmax(np.abs(out))) == pytest.approx(1000 + SR // 4, abs=120)
    assert np.abs(out[: 1000 + SR // 4 - 200]).max() < 1e-6  # zeros where it came from


def test_pitch_shift_changes_dominant_frequency():
    out = run(["pitch_shift:semitones=12/12,p=1"], sine(440.0))
    spectrum = np.abs(np.fft.rfft(out[2000:-2000]))
    peak = np.fft.rfftfreq(len(out) - 4000, 1 / SR)[np.argmax(spectrum)]
    assert peak == pytest.approx(880.0, rel=0.05)


def test_background_noise_and_mix_change_signal_keep_length():
    clean = sine()
    for items, others in (
        (["background_noise:snr_db=5/5,p=1"], None),
        (["mix:snr_db=6/6,p=1"], [sine(1234.0, 0.7)]),
    ):
        out = run(items, clean, others=others)
        assert len(out) == len(clean)
        snr = 20 * np.log10(rms(clean) / rms(out - clean))
        assert snr == pytest.approx(float(items[0].split("=")[1].split("/")[0]), abs=0.5)


def test_missing_background_folder_is_a_user_error(tmp_path):
    from tl_hf.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        aa.build_augmenter(
            specs(f"background_noise:folder={tmp_path / 'nope'}"), "audio", sampling_rate=SR
        )


def test_specaugment_masks_requested_widths():
    import torch

    feats = torch.randn(3, 80, 300) + 5.0
    masker = aa.build_feature_masker(
        specs("specaugment:time_masks=1,time_width=30/30,freq_masks=1,freq_width=8/8")
    )
    out = masker(feats, seeds=[1, 2, 3])
    assert aa.build_augmenter(specs("specaugment"), "audio") is None  # batch-time only
    for b in range(3):
        changed = out[b] != feats[b]
        assert int(changed.all(dim=1).sum()) == 8  # masked mel bins (all frames)
        assert int(changed.all(dim=0).sum()) == 30  # masked frames (all bins)
    assert torch.equal(masker(feats, seeds=[1, 2, 3]), out)


def test_mixup_soft_labels_sum_to_one():
    import torch

    mixer = aa.build_batch_mixer(specs("mixup:alpha=0.4"), num_labels=5)
    batch = {
        "input_features": torch.randn(8, 80, 30),
        "labels": torch.tensor([0, 1, 2, 3, 4, 0, 1, 2]),
    }
    out = mixer(batch, seed=0)
    assert out["labels"].shape == (8, 5)
    assert torch.allclose(out["labels"].sum(-1), torch.ones(8))
    assert not torch.equal(out["input_features"], batch["input_features"])
    assert aa.build_batch_mixer(specs("gain"), 5) is None
    loss = aa.soft_cross_entropy(torch.zeros(8, 5), out["labels"])
    assert float(loss) == pytest.approx(np.log(5), rel=1e-5)


def _dataset(tmp_path, n=6):
    import datasets

    rng = np.random.default_rng(0)
    waves = [
        sine(300 + 100 * i, 0.5) + 0.01 * rng.standard_normal(SR // 2).astype(np.float32)
        for i in range(n)
    ]
    ds = datasets.Dataset.from_dict(
        {"audio": [{"array": w, "sampling_rate": SR} for w in waves], "label": list(range(n))},
        features=datasets.Features(
            {"audio": datasets.Audio(sampling_rate=SR), "label": datasets.ClassLabel(num_classes=n)}
        ),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    return datasets.load_from_disk(str(tmp_path / "ds"))  # on disk: map results get cached


def _arrays(ds):
    return [np.asarray(v["array"]) for v in ds["audio"]]


def test_map_copies_deterministic_cached(tmp_path):
    ds = _dataset(tmp_path)
    sp = specs("gain:p=1", "noise:p=1", "time_stretch:p=1")
    fn = aa.build_augmenter(sp, "audio", sampling_rate=SR)
    out = apply_augment_copies(ds, fn, sp, copies=2, seed=7)
    assert len(out) == 18 and list(out["label"]) == list(ds["label"]) * 3
    first = _arrays(out)
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(first[:6], _arrays(ds), strict=True))
    assert not np.allclose(first[0], first[6], atol=1e-3)
    cache_files = {f["filename"] for piece in [out] for f in piece.cache_files}
    again = apply_augment_copies(ds, fn, sp, copies=2, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, _arrays(again), strict=True))
    assert {f["filename"] for f in again.cache_files} == cache_files  # read back, not recomputed
    other = apply_augment_copies(ds, fn, sp, copies=2, seed=8)
    assert not all(
        np.allclose(a, b, atol=1e-3) for a, b in zip(first[6:], _arrays(other)[6:], strict=True)
    )


def test_on_the_fly_draws_new_audio_each_call(tmp_path):
    ds = _dataset(tmp_path)
    sp = specs("gain:p=1", "noise:p=1")
    transform = OnTheFly(aa.build_augmenter(sp, "audio", sampling_rate=SR), lambda b: b, seed=0)
    ds.set_transform(transform)
    a, b = ds[0]["audio"]["array"], ds[0]["audio"]["array"]
    assert len(a) == len(b) and not np.allclose(a, b)


def test_preview_writes_png_and_wav(tmp_path):
    sp = specs("gain:p=1,gain_db=-6/-6")
    fn = aa.build_augmenter(sp, "audio", sampling_rate=SR)
    rows = [{"audio": {"array": sine(), "sampling_rate": SR}, "label": 0}]
    aug = [{"audio": fn({"audio": [rows[0]["audio"]], "label": [0]}, [0])["audio"][0], "label": 0}]
    paths = aa.write_preview(rows, aug, "audio", str(tmp_path / "preview"))
    assert sorted(p.rsplit(".", 1)[1] for p in paths) == ["png", "wav", "wav"]
    import soundfile as sf

    orig, _ = sf.read(paths[0])
    augmented, _ = sf.read(paths[1])
    assert 20 * np.log10(rms(augmented) / rms(orig)) == pytest.approx(-6.0, abs=0.2)
