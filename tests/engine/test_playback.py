"""The player's mixing callback, checked sample-exact through a stream double.

The double replaces only the device boundary (the stream factory): it records the callback the
player hands to "PortAudio" and calls it the way PortAudio would, with an outdata buffer.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import engine.playback as playback
from engine.playback import Player

RATE = 44_100


class FakeStream:
    """Stands in for sounddevice.OutputStream: same constructor keywords, start/stop/close."""

    def __init__(self, samplerate: int, channels: int, blocksize: int, device, callback) -> None:
        self.samplerate, self.channels, self.blocksize = samplerate, channels, blocksize
        self.device, self.callback = device, callback
        self.active = False
        self.closed = False
        self.starts = 0

    def start(self) -> None:
        self.active = True
        self.starts += 1

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.closed = True

    def pump(self, frames: int) -> np.ndarray:
        out = np.full((frames, self.channels), 7.0, dtype=np.float32)  # garbage to overwrite
        self.callback(out, frames, None, 0)
        return out


class Factory:
    def __init__(self) -> None:
        self.streams: list[FakeStream] = []

    def __call__(self, **kw) -> FakeStream:
        s = FakeStream(**kw)
        self.streams.append(s)
        return s


def _ramp(frames: int, channels: int = 2, scale: float = 1e-4) -> np.ndarray:
    x = (np.arange(frames, dtype=np.float32) * scale) % 0.5
    return np.stack([x * (1 + 0.5 * c) for c in range(channels)]).astype(np.float32)


def _player(**kw) -> tuple[Player, Factory]:
    factory = Factory()
    return Player(sample_rate=RATE, stream_factory=factory, **kw), factory


def _start(player: Player, factory: Factory) -> FakeStream:
    assert player.play()
    return factory.streams[-1]


def _coef(gain_db: float, polarity: int = 1) -> np.float32:
    return np.float32(10.0 ** (gain_db / 20.0) * polarity)


def test_gain_and_polarity_are_sample_exact() -> None:
    x = _ramp(5000)
    p, f = _player()
    p.set_lane("a", x, RATE, gain_db=-6.0, polarity=-1)
    out = _start(p, f).pump(1024)
    np.testing.assert_array_equal(out, (x[:, :1024] * _coef(-6.0, -1)).T)
    assert p.position == 1024


def test_mute_and_solo_select_the_audible_lanes() -> None:
    a, b = _ramp(4096), _ramp(4096, scale=3e-4)
    p, f = _player()
    p.set_lane("a", a, RATE)
    p.set_lane("b", b, RATE)
    s = _start(p, f)
    np.testing.assert_array_equal(s.pump(256), (a[:, :256] + b[:, :256]).T)
    p.set_lane_params("a", mute=True)
    np.testing.assert_array_equal(s.pump(256), b[:, 256:512].T)
    p.set_lane_params("a", solo=True)  # solo beats mute; b is not soloed -> silent
    np.testing.assert_array_equal(s.pump(256), a[:, 512:768].T)
    assert p.lane_gain("b") == 0.0 and p.lane_gain("a") == 1.0
    p.set_lane_params("b", solo=True)
    np.testing.assert_array_equal(s.pump(256), (a[:, 768:1024] + b[:, 768:1024]).T)
    p.set_lane_params("a", solo=False, mute=False)
    p.set_lane_params("b", solo=False, mute=True)
    np.testing.assert_array_equal(s.pump(256), a[:, 1024:1280].T)


def test_offset_places_the_lane_on_the_timeline() -> None:
    x = _ramp(1000)
    p, f = _player()
    p.set_lane("a", x, RATE, offset_frames=100)
    out = _start(p, f).pump(512)
    assert not out[:100].any()
    np.testing.assert_array_equal(out[100:], x[:, :412].T)
    p.set_lane_params("a", offset_frames=-50)  # starts before the session's zero
    p.seek(0)
    np.testing.assert_array_equal(f.streams[-1].pump(10), x[:, 50:60].T)


@pytest.mark.parametrize("offset", [0.37, -12.5, 100.81, 7.0000000001])
def test_a_fractional_offset_nulls_deeply_against_the_mix(offset: float) -> None:
    """An acapella placed at a fraction of a sample, inverted against the mix it came from (the
    invert-check): the live null is below −70 dB up to 11 kHz; rounding the offset instead
    (what playback did before) leaves −5 dB at 11 kHz for 0.37 of a sample."""
    n, pad = 30_000, 300

    def sig(pos: np.ndarray) -> np.ndarray:
        parts = [(0.3, 110.0, 0.1), (0.2, 1234.5, 1.0), (0.15, 5000.0, 2.0), (0.1, 11_000.0, 0.5)]
        return sum(a * np.sin(2 * np.pi * f * pos / RATE + ph) for a, f, ph in parts)

    timeline = np.arange(n + 2 * pad, dtype=np.float64) - pad
    mix = sig(timeline + pad)[None].astype(np.float32)  # the mix lane at 0: sample k is sig(k)
    aca = sig(np.arange(n + 2 * pad) + offset)[None].astype(np.float32)  # plays at offset + j
    p, f = _player(channels=1)
    p.set_lane("mix", mix, RATE)
    p.set_lane("aca", aca, RATE, offset_frames=offset, polarity=-1)
    out = _start(p, f).pump(n)[:, 0].astype(np.float64)
    inside = slice(max(int(np.ceil(offset)), 0) + 200, n - 200)
    null_db = 10 * np.log10(np.mean(out[inside] ** 2) / np.mean(mix[0, inside].astype(np.float64) ** 2))
    assert null_db < -70.0, null_db
    p.set_lane_params("aca", offset_frames=round(offset))  # a whole frame: the exact path again
    p.seek(0)
    rounded = f.streams[-1].pump(n)[:, 0].astype(np.float64)
    if abs(offset - round(offset)) > 1e-6:
        assert 10 * np.log10(np.mean(rounded[inside] ** 2) / np.mean(mix[0, inside].astype(np.float64) ** 2)) > -40


def test_fractional_delay_taps() -> None:
    from engine.playback import fractional_delay_taps

    h = fractional_delay_taps(0.25)
    assert h.shape == (64,) and abs(h.sum() - 1.0) < 1e-12
    # a sampled ramp is read exactly (up to the window's ripple) a quarter frame earlier
    x = np.arange(200, dtype=np.float64)
    j = 100
    assert abs(float(h @ x[j - 32 : j + 32]) - (j - 0.25)) < 1e-3


def test_loop_wraps_inside_a_buffer() -> None:
    x = _ramp(10_000)
    p, f = _player()
    p.set_lane("a", x, RATE)
    p.set_loop(100, 300)
    p.seek(250)
    out = _start(p, f).pump(1024)
    idx = np.concatenate([np.arange(250, 300), np.tile(np.arange(100, 300), 6)])[:1024]
    np.testing.assert_array_equal(out, x[:, idx].T)
    assert p.position == 100 + (1024 - 50) % 200
    p.set_loop(None)
    assert p.loop == (False, 0, 0)


def test_playhead_past_the_loop_plays_on() -> None:
    x = _ramp(4000)
    p, f = _player()
    p.set_lane("a", x, RATE)
    p.set_loop(100, 300)
    p.seek(1000)
    np.testing.assert_array_equal(_start(p, f).pump(64), x[:, 1000:1064].T)


def test_seek_while_playing_applies_at_the_next_buffer() -> None:
    x = _ramp(20_000)
    p, f = _player()
    p.set_lane("a", x, RATE)
    s = _start(p, f)
    s.pump(512)
    p.seek(12_345)
    assert p.position == 12_345  # pending seeks are visible at once
    np.testing.assert_array_equal(s.pump(100), x[:, 12_345:12_445].T)
    assert p.position == 12_445


def test_end_of_session_outputs_silence_and_flags_the_end() -> None:
    x = _ramp(300)
    p, f = _player()
    p.set_lane("a", x, RATE)
    s = _start(p, f)
    out = s.pump(512)
    np.testing.assert_array_equal(out[:300], x.T)
    assert not out[300:].any() and p.at_end
    p.pause()
    assert p.play()  # play at the end starts over
    np.testing.assert_array_equal(s.pump(10), x[:, :10].T)


def test_channel_mapping_and_clipping() -> None:
    mono = np.full((1, 100), 0.25, np.float32)
    p, f = _player()
    p.set_lane("m", mono, RATE)
    np.testing.assert_array_equal(_start(p, f).pump(100), np.full((100, 2), 0.25, np.float32))
    p.set_lane("loud", np.full((2, 100), 0.9, np.float32), RATE)
    p.seek(0)
    assert f.streams[-1].pump(100).max() == 1.0  # 1.15 clipped
    q, g = _player(channels=1)
    q.set_lane("s", np.stack([np.full(50, 0.2, np.float32), np.full(50, 0.4, np.float32)]), RATE)
    np.testing.assert_allclose(_start(q, g).pump(50), 0.3, rtol=1e-6)


def test_lanes_at_another_rate_are_resampled_once() -> None:
    t = np.arange(22_050) / 22_050
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    p, f = _player()
    p.set_lane("a", x, 22_050)
    assert p.length_frames == 44_100
    out = _start(p, f).pump(2048)
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(1024, 2048) / RATE)
    np.testing.assert_allclose(out[1024:, 0], ref, atol=2e-3)


def test_long_callbacks_are_mixed_in_pieces() -> None:
    x = _ramp(30_000)
    p, f = _player()
    p.set_lane("a", x, RATE, gain_db=-3.0)
    out = _start(p, f).pump(20_000)  # longer than the scratch buffer
    np.testing.assert_array_equal(out, (x[:, :20_000] * _coef(-3.0)).T)


def test_callback_does_not_allocate() -> None:
    rng = np.random.default_rng(1)
    p, f = _player(blocksize=2048)
    for name in "abc":
        p.set_lane(name, (rng.standard_normal((2, 200_000)) * 0.1).astype(np.float32), RATE,
                   offset_frames=ord(name), gain_db=-3.0)
    p.set_lane("mono", (rng.standard_normal((1, 150_000)) * 0.1).astype(np.float32), RATE)
    p.set_lane("fractional", (rng.standard_normal((2, 120_000)) * 0.1).astype(np.float32), RATE,
               offset_frames=1234.37)  # the fractional-delay path
    p.set_lane_params("b", polarity=-1)
    p.set_loop(10_000, 90_000)
    s = _start(p, f)
    out = np.zeros((2048, 2), np.float32)
    cb = s.callback
    cb(out, 2048, None, 0)  # warm up
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(500):
            if i == 250:
                p.seek(5_000)
            cb(out, 2048, None, 0)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A single mono scratch buffer of one block would be 8 KiB; views and ints are ~100 B each.
    assert peak - before < 2048, f"callback peak allocation {peak - before} bytes"
    assert after - before < 512


def test_play_pause_toggle_drive_the_stream() -> None:
    p, f = _player()
    p.set_lane("a", _ramp(100_000), RATE)
    assert p.toggle() is True and f.streams[0].active and p.playing
    f.streams[0].pump(1000)
    assert p.toggle() is False and not f.streams[0].active
    assert p.position == 1000  # pause keeps the playhead
    assert p.toggle() is True and f.streams[0].starts == 2 and len(f.streams) == 1
    p.stop()
    assert not p.playing and p.position == 0
    p.set_device(3)  # a new device closes the stream; the next play opens one there
    assert f.streams[0].closed
    assert p.play() and f.streams[1].device == 3
    p.close()
    assert f.streams[1].closed and not p.playing


def test_failure_to_open_the_device_is_reported_not_raised() -> None:
    def broken(**kw):
        raise OSError("Error opening OutputStream: Invalid sample rate")

    p = Player(sample_rate=RATE, stream_factory=broken)
    p.set_lane("a", _ramp(100), RATE)
    assert p.play() is False
    assert not p.available and "Invalid sample rate" in p.status_message


def test_no_device_means_unavailable_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(playback, "list_output_devices", lambda: [])
    p = Player(sample_rate=RATE)
    p.set_lane("a", _ramp(100), RATE)
    assert not p.available and p.play() is False
    msg = p.status_message
    assert msg.startswith("Playback off") and ("no audio output device" in msg or "PortAudio" in msg)
    p.seek(50)  # the model still works without a device
    assert p.position == 50


def test_sample_rate_change_drops_lanes() -> None:
    p, _ = _player()
    p.set_lane("a", _ramp(100), RATE)
    p.set_sample_rate(48_000)
    assert p.lane_ids == [] and p.length_frames == 0 and p.sample_rate == 48_000


@pytest.mark.skipif(not playback.output_usable(), reason="no usable audio output device (none listed, or it does not open)")
def test_real_output_device_plays_in_real_time() -> None:
    import time

    p = Player(sample_rate=RATE)
    assert p.available and p.status_message.startswith("Output: ")
    p.set_lane("a", _ramp(RATE * 10), RATE)
    try:
        assert p.play(), p.status_message
        deadline = time.monotonic() + 3.0
        while p.position < RATE // 4 and time.monotonic() < deadline:  # the device warms up
            time.sleep(0.01)
        t0, pos0 = time.monotonic(), p.position
        time.sleep(0.8)
        rate = (p.position - pos0) / (time.monotonic() - t0)
    finally:
        p.close()
    # the callback runs on PortAudio's thread at real time (to within device buffering)
    assert 0.7 * RATE < rate < 1.3 * RATE and not p.playing
