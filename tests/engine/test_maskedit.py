"""Mask editing: footprints, sum-to-mix, exact undo, local = full re-synthesis, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.audio import Audio
from engine.mask_display import mask_display_image, update_mask_image
from engine.maskedit import (
    BoxEdit,
    Brush,
    ContrastEdit,
    LassoEdit,
    MaskGrid,
    MaskLayers,
    Stroke,
    edit_from_dict,
    edit_to_dict,
    footprint,
)
from engine.session import Session, Track
from engine.spectral import DEFAULT_STFT, istft, stft

SR = 22050


def _case(seconds: float = 6.0, stems: int = 2, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A noise 'mix', random soft masks summing to one, stems = ISTFT(mask · X) (last: the rest)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    mix = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
    x = stft(mix)
    raw = rng.random((stems, DEFAULT_STFT.bins, x.shape[-1])).astype(np.float32) ** 2
    raw /= raw.sum(axis=0, keepdims=True)
    names = ["vocals", "instrumental"] if stems == 2 else ["drums", "bass", "other", "vocals"]
    out, masks = {}, {}
    rest = mix.copy()
    for i, name in enumerate(names):
        masks[name] = raw[i]
        if i < stems - 1:
            out[name] = istft(x * torch.from_numpy(raw[i]), n).numpy()
            rest -= out[name]
        else:
            out[name] = rest
    return mix, out, masks


def _layers(stems: int = 2, seed: int = 0) -> tuple[MaskLayers, np.ndarray, dict[str, np.ndarray]]:
    mix, out, masks = _case(stems=stems, seed=seed)
    original = {k: v.copy() for k, v in out.items()}
    return MaskLayers(mix, out, masks, SR), mix, original


def _snapshot(lay: MaskLayers) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return ({k: v.copy() for k, v in lay.masks.items()}, {k: v.copy() for k, v in lay.stems.items()})


STROKE = Stroke("vocals", "boost", ((1.0, 800.0), (1.6, 1500.0), (2.2, 900.0)),
                Brush(radius_seconds=0.08, radius_hz=200.0, hardness=0.4, strength=0.9))


def test_masks_are_normalised_to_sum_to_one() -> None:
    lay, _, _ = _layers(stems=4)
    total = sum(lay.masks.values())
    assert np.max(np.abs(total - 1.0)) < 1e-5


@pytest.mark.parametrize("edit", [
    STROKE,
    Stroke("vocals", "cut", ((2.0, 3000.0), (2.5, 3000.0)), Brush(0.1, 400.0, 0.3, True, 0.0, 1.0)),
    Stroke("vocals", "boost", ((3.0, 220.0),), Brush(0.1, 40.0, hardness=0.5, harmonics=6)),
    BoxEdit("vocals", "scale", 0.5, 1.5, 100.0, 4000.0, factor=0.3, feather_seconds=0.1, feather_hz=200.0),
    BoxEdit("instrumental", "boost", 4.0, 5.0, 0.0, 2000.0, strength=0.7, feather_seconds=0.05),
    LassoEdit("vocals", "cut", ((1.0, 200.0), (2.5, 300.0), (2.0, 5000.0), (1.2, 3000.0)), strength=0.8,
              feather_seconds=0.05, feather_freq=150.0),
], ids=["brush", "eraser-log", "harmonic", "box-scale", "box-fill", "lasso-clear"])
def test_edit_changes_only_its_footprint(edit: Stroke | BoxEdit | LassoEdit) -> None:
    lay, _, _ = _layers()
    before, _ = _snapshot(lay)
    fp = footprint(edit, lay.grid)
    inside = np.zeros((lay.bins, lay.frames), dtype=bool)
    inside[fp.bin0 : fp.bin1, fp.frame0 : fp.frame1] = fp.w > 0
    assert inside.sum() > 50
    lay.apply(edit)
    for name in lay.names:
        assert np.array_equal(lay.masks[name][~inside], before[name][~inside]), name
        # cells inside really moved (masks are random soft values in (0, 1))
        assert np.mean(lay.masks[name][inside] != before[name][inside]) > 0.95, name
    total = sum(lay.masks.values())
    assert np.max(np.abs(total - 1.0)) < 1e-5


def test_brush_feather_and_strength() -> None:
    grid = MaskGrid(SR, 400)
    hard = footprint(Stroke("v", "boost", ((2.0, 2000.0),), Brush(0.2, 500.0, hardness=1.0)), grid)
    soft = footprint(Stroke("v", "boost", ((2.0, 2000.0),), Brush(0.2, 500.0, hardness=0.0, strength=0.5)), grid)
    assert set(np.unique(hard.w)) <= {0.0, 1.0}
    assert soft.w.max() == pytest.approx(0.5, abs=0.02)
    # feathered weights fall off from the centre
    centre_bin = round(2000.0 / grid.bin_hz) - soft.bin0
    row = soft.w[centre_bin]
    peak = int(np.argmax(row))
    assert np.all(np.diff(row[peak:]) <= 1e-7) and np.all(np.diff(row[: peak + 1]) >= -1e-7)
    # the footprint spans the radius: 0.2 s each side, 500 Hz each side
    assert (hard.frame1 - hard.frame0) * grid.frame_seconds == pytest.approx(0.4, abs=2 * grid.frame_seconds)
    assert (hard.bin1 - hard.bin0) * grid.bin_hz == pytest.approx(1000.0, abs=3 * grid.bin_hz)


def test_log_brush_is_octaves_high_and_harmonic_brush_hits_harmonics() -> None:
    grid = MaskGrid(SR, 400)
    low = footprint(Stroke("v", "boost", ((1.0, 200.0),), Brush(0.1, radius_octaves=0.5, log_frequency=True)), grid)
    high = footprint(Stroke("v", "boost", ((1.0, 3200.0),), Brush(0.1, radius_octaves=0.5, log_frequency=True)), grid)
    assert (high.bin1 - high.bin0) > 10 * (low.bin1 - low.bin0)
    harm = footprint(Stroke("v", "boost", ((1.0, 300.0),), Brush(0.1, 30.0, hardness=1.0, harmonics=4)), grid)
    per_bin = harm.w.max(axis=1)
    freqs = (np.arange(harm.bin0, harm.bin1)) * grid.bin_hz
    for h in (1, 2, 3, 4):
        assert per_bin[np.argmin(np.abs(freqs - 300.0 * h))] == 1.0
    for between in (450.0, 750.0, 1050.0):
        assert per_bin[np.argmin(np.abs(freqs - between))] == 0.0


@pytest.mark.parametrize("stems", [2, 4])
def test_stems_sum_to_mix_after_any_edits_and_undo_is_exact(stems: int) -> None:
    lay, mix, original = _layers(stems=stems, seed=stems)
    names = lay.names
    rng = np.random.default_rng(7)
    records = []
    states = [_snapshot(lay)]
    for i in range(12):
        stem = names[i % len(names)]
        t, f = rng.uniform(0.3, 5.5), rng.uniform(100, 8000)
        kind = i % 6
        if kind == 0:
            edit: Stroke | BoxEdit | ContrastEdit | LassoEdit = Stroke(stem, "boost", ((t, f), (t + 0.4, f * 1.3)), Brush(0.1, 300.0))
        elif kind == 1:
            edit = Stroke(stem, "cut", ((t, f),), Brush(0.2, 0.4, log_frequency=True, harmonics=3))
        elif kind == 2:
            edit = BoxEdit(stem, "move", t, t + 0.8, f, f + 2000, target=names[(i + 1) % len(names)], strength=0.8)
        elif kind == 3:
            edit = BoxEdit(stem, "scale", t, t + 1.0, 0.0, f, factor=1.7, feather_hz=100.0)
        elif kind == 4:
            edit = ContrastEdit(stem, threshold=0.4, contrast=2.5, start_seconds=t, stop_seconds=t + 1.5)
        else:
            edit = LassoEdit(stem, "boost", ((t, f), (t + 0.6, f * 1.5), (t + 0.2, f * 2.0)), strength=0.9,
                             feather_seconds=0.03, feather_freq=0.2, log_frequency=True)
        rec = lay.apply(edit)
        assert rec is not None
        records.append(rec)
        states.append(_snapshot(lay))
        assert lay.sum_error_db() < -100.0
    assert not all(np.array_equal(lay.stems[n], original[n]) for n in names)
    for k in range(len(records) - 1, -1, -1):
        lay.undo(records[k])
        masks, audio = states[k]
        for n in names:
            assert np.array_equal(lay.masks[n], masks[n])
            assert np.array_equal(lay.stems[n], audio[n])
    for n in names:
        assert np.array_equal(lay.stems[n], original[n])
    for k, rec in enumerate(records):
        lay.redo(rec)
        masks, audio = states[k + 1]
        for n in names:
            assert np.array_equal(lay.masks[n], masks[n])
            assert np.array_equal(lay.stems[n], audio[n])


def test_local_resynthesis_equals_full_istft() -> None:
    """Edited cells are mask × mix, the rest the engine's audio: checked with one full ISTFT."""
    mix, out, masks = _case()
    rng = np.random.default_rng(5)  # stems that are not mask-based (like the reference engine's)
    wobble = (0.02 * rng.standard_normal(mix.shape)).astype(np.float32)
    out["vocals"] += wobble
    out["instrumental"] -= wobble
    original = {k: v.copy() for k, v in out.items()}
    lay = MaskLayers(mix, out, masks, SR)
    lay.apply(STROKE)
    lay.apply(BoxEdit("vocals", "cut", 4.0, 4.5, 500.0, 6000.0, feather_seconds=0.05))
    x = stft(mix)
    e = torch.from_numpy(lay.edited.astype(np.float32))
    for n in lay.names:
        s_orig = stft(original[n])
        expected = original[n] + istft(e * (x * torch.from_numpy(lay.masks[n]) - s_orig), mix.shape[1]).numpy()
        err = np.sum((lay.stems[n] - expected) ** 2) / np.sum(expected**2)
        assert 10 * np.log10(err) < -100.0, n


@pytest.mark.parametrize("mask_based", [True, False])
def test_fill_gives_the_mix_and_clear_gives_silence_where_painted(mask_based: bool) -> None:
    mix, out, masks = _case()
    if not mask_based:  # e.g. the reference engine: vocals = filtered acapella, not mask × mix
        out["vocals"] = 0.7 * out["vocals"] + 0.1 * mix
        out["instrumental"] = mix - out["vocals"]
    lay = MaskLayers(mix, out, masks, SR)
    lay.apply(BoxEdit("vocals", "boost", 2.0, 3.0, 0.0, SR / 2))
    lay.apply(BoxEdit("vocals", "cut", 4.0, 5.0, 0.0, SR / 2))
    for a, b, full, empty in ((2.1, 2.9, "vocals", "instrumental"), (4.1, 4.9, "instrumental", "vocals")):
        seg = slice(int(a * SR), int(b * SR))
        err = np.sum((lay.stems[full][:, seg] - mix[:, seg]) ** 2) / np.sum(mix[:, seg] ** 2)
        assert 10 * np.log10(err) < -100.0
        assert np.max(np.abs(lay.stems[empty][:, seg])) < 1e-5
    assert lay.sum_error_db() < -100.0


def test_live_stroke_matches_one_shot_and_cancel_restores() -> None:
    lay_a, _, _ = _layers()
    lay_b, _, _ = _layers()
    live = lay_a.begin_stroke(STROKE.stem, STROKE.action, STROKE.brush)
    for p in STROKE.points:
        live.extend([p])
        live.extend([p])  # painting the same place twice in a stroke does not compound
    rec = live.finish()
    assert rec is not None and rec.edit.points == tuple(p for p in STROKE.points for _ in (0, 1))
    lay_b.apply(STROKE)
    for n in lay_a.names:
        assert np.array_equal(lay_a.masks[n], lay_b.masks[n])
        assert np.array_equal(lay_a.stems[n], lay_b.stems[n])
    before, audio = _snapshot(lay_a)
    live = lay_a.begin_stroke("instrumental", "cut", Brush(0.2, 500.0))
    live.extend([(3.0, 1000.0), (4.0, 2000.0)])
    assert not np.array_equal(lay_a.masks["instrumental"], before["instrumental"])
    live.cancel()
    for n in lay_a.names:
        assert np.array_equal(lay_a.masks[n], before[n])
        assert np.array_equal(lay_a.stems[n], audio[n])


def test_move_transfers_energy_between_stems() -> None:
    lay, _, _ = _layers(stems=4)
    before, _ = _snapshot(lay)
    edit = BoxEdit("drums", "move", 1.0, 2.0, 0.0, 5000.0, target="vocals")
    fp = footprint(edit, lay.grid)
    lay.apply(edit)
    cells = (slice(fp.bin0, fp.bin1), slice(fp.frame0 + 2, fp.frame1 - 2))
    assert np.all(lay.masks["drums"][cells] == 0.0)
    np.testing.assert_allclose(lay.masks["vocals"][cells], before["vocals"][cells] + before["drums"][cells], atol=1e-6)
    assert np.array_equal(lay.masks["bass"], before["bass"])


def test_edits_round_trip_as_data() -> None:
    lasso = LassoEdit("a", "move", ((1.0, 100.0), (2.0, 100.0), (1.5, 900.0)), target="b", log_frequency=True)
    for edit in (STROKE, BoxEdit("a", "move", 1, 2, 3, 4, target="b"), ContrastEdit("a", 0.3, 2.0), lasso):
        assert edit_from_dict(edit_to_dict(edit)) == edit
    with pytest.raises(ValueError):
        edit_from_dict({"kind": "Lasso"})


def test_lasso_footprint_is_the_drawn_region() -> None:
    grid = MaskLayers(*_case()[:2], _case()[2], SR).grid
    # a rectangle drawn as a lasso covers the cells a box does
    rect = LassoEdit("vocals", "boost", ((1.0, 500.0), (2.0, 500.0), (2.0, 3000.0), (1.0, 3000.0)))
    box = BoxEdit("vocals", "boost", 1.0, 2.0, 500.0, 3000.0)
    a, b = footprint(rect, grid), footprint(box, grid)
    assert (a.frame0, a.frame1, a.bin0, a.bin1) == (b.frame0, b.frame1, b.bin0, b.bin1)
    cells = np.zeros_like(a.w, dtype=bool)
    cells[1:-1, 1:-1] = True  # cells on the boundary itself may fall either way
    assert np.array_equal(a.w[cells], b.w[cells])
    # a triangle: inside below the diagonal from (1 s, 0 Hz) to (3 s, 8000 Hz)
    tri = footprint(LassoEdit("vocals", "cut", ((1.0, 0.0), (3.0, 0.0), (3.0, 8000.0)), strength=0.6), grid)
    t = np.arange(tri.frame0, tri.frame1) * grid.frame_seconds
    f = np.arange(tri.bin0, tri.bin1) * grid.bin_hz
    below = f[:, None] < (t[None, :] - 1.0) * 4000.0 - 50.0
    above = f[:, None] > (t[None, :] - 1.0) * 4000.0 + 50.0
    assert np.all(tri.w[below & (t[None, :] < 2.99) & (f[:, None] > 1.0)] == np.float32(0.6))
    assert np.all(tri.w[above] == 0.0)
    # feathered: full strength deep inside, ramping to 0 at the edges, never outside
    soft = footprint(LassoEdit("vocals", "boost", ((1.0, 500.0), (2.0, 500.0), (2.0, 3000.0), (1.0, 3000.0)),
                               feather_seconds=0.2, feather_freq=400.0), grid)
    assert soft.w.max() == 1.0 and 0.0 < soft.w[soft.w > 0].min() < 0.2
    assert np.all(soft.w <= a.w)
    # fewer than three points: nothing
    assert footprint(LassoEdit("vocals", "boost", ((1.0, 500.0), (2.0, 900.0))), grid).empty


def test_bad_edits_are_refused() -> None:
    lay, _, _ = _layers()
    with pytest.raises(ValueError, match="no stem"):
        lay.apply(BoxEdit("drums", "boost", 1, 2, 0, 100))
    with pytest.raises(ValueError, match="target"):
        lay.apply(BoxEdit("vocals", "move", 1, 2, 0, 100, target="vocals"))
    assert lay.apply(BoxEdit("vocals", "boost", 100.0, 101.0, 0, 100)) is None  # outside the track


def test_display_update_matches_full_recompute() -> None:
    lay, _, _ = _layers()
    for log_f in (False, True):
        img = mask_display_image(lay.masks["vocals"], SR, max_columns=97, rows=64, log_frequency=log_f)
        lay.apply(STROKE)
        fp = footprint(STROKE, lay.grid)
        update_mask_image(img, lay.masks["vocals"], fp.frame0, fp.frame1, SR)
        full = mask_display_image(lay.masks["vocals"], SR, max_columns=97, rows=64, log_frequency=log_f)
        np.testing.assert_allclose(img.image, full.image, atol=1e-6)


def test_edited_masks_and_stems_survive_save_and_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    mix, out, masks = _case()
    session = Session("edit")
    session.add_track(Track(name="mix", role="mix", audio=Audio(mix, SR)))
    tracks = {n: session.add_track(Track(name=n, role="stem", audio=Audio(a, SR))) for n, a in out.items()}
    lay = MaskLayers(mix, {n: t.audio.samples for n, t in tracks.items()}, masks, SR)
    for n, t in tracks.items():
        session.masks[t.id] = lay.masks[n]
    lay.apply(STROKE)
    path = session.save_project(tmp_path / "p.unmix")
    back = Session.open_project(path)
    stems = {t.name: t for t in back.tracks if t.role == "stem"}
    for n in tracks:
        assert np.array_equal(back.masks[stems[n].id], lay.masks[n])
        assert np.max(np.abs(stems[n].audio.samples - lay.stems[n])) < 2e-7  # 24-bit FLAC
    mix_back = next(t for t in back.tracks if t.role == "mix").audio.samples
    again = MaskLayers(mix_back, {n: t.audio.samples for n, t in stems.items()},
                       {n: back.masks[t.id] for n, t in stems.items()}, SR, already_normalised=True)
    again.apply(BoxEdit("vocals", "cut", 3.0, 4.0, 0.0, 5000.0))
    assert again.sum_error_db() < -100.0


def test_redo_of_large_edits_recomputes_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.maskedit.layers as layers_module

    monkeypatch.setattr(layers_module, "_AFTER_CELLS", 0)  # every edit counts as large
    lay, _, _ = _layers(stems=4)
    edits = [ContrastEdit("vocals", 0.3, 3.0), BoxEdit("bass", "move", 1.0, 3.0, 50.0, 900.0, target="drums"),
             STROKE, ContrastEdit("other", 0.6, 0.5, 2.0, 4.0)]
    records, states = [], []
    for edit in edits:
        rec = lay.apply(edit)
        assert rec is not None and rec.after is None
        records.append(rec)
        states.append(_snapshot(lay))
    for rec in reversed(records):
        lay.undo(rec)
    for rec, (masks, audio) in zip(records, states, strict=True):
        lay.redo(rec)
        for n in lay.names:
            assert np.array_equal(lay.masks[n], masks[n]) and np.array_equal(lay.stems[n], audio[n])
