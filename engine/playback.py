"""Live playback through sounddevice (PortAudio), Qt-free.

The :class:`Player` mixes the audible lanes (gain, mute/solo, polarity, timeline offset) inside
the PortAudio callback. Rules for that callback (it runs on the audio thread, where a late
buffer is an audible click):

* no allocation of audio buffers: every sample goes through preallocated arrays with numpy
  ``out=``; the only objects created are array views and small ints;
* no locks, logging or Qt: the GUI thread publishes an immutable *mix plan* (a tuple) and the
  callback reads the reference once per buffer; Python reference assignment is atomic;
* seeks travel as ``(frame, serial)``: the GUI writes the frame, then bumps the serial; the
  callback applies a serial it has not seen. The playhead is published as a plain int that a
  ~30 Hz GUI timer polls.

A lane at a fractional timeline offset (an acapella aligned to a fraction of a sample) plays
through a windowed-sinc fractional delay (:func:`fractional_delay_taps`, applied tap by tap in
the callback with the same preallocated scratch), so the invert-check's live null is as deep as
the meter's; whole-frame offsets stay sample-exact.

Lanes at another sample rate than the session are resampled once when they are set. With no
output device, or without the PortAudio library, the player still works as a model (seek, loop,
lanes) and says why it cannot play in :attr:`Player.status_message`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engine.audio import resample

try:  # PortAudio is a shared library; without it sounddevice raises OSError on import.
    import sounddevice as _sd

    _IMPORT_ERROR: str | None = None
except OSError as _exc:  # pragma: no cover - depends on the machine
    _sd = None
    _IMPORT_ERROR = str(_exc)

#: Frames per callback we ask PortAudio for (23 ms at 44.1 kHz).
DEFAULT_BLOCKSIZE = 1024
# Scratch length; a callback asking for more frames is mixed in pieces of this size.
_SCRATCH_FRAMES = 8192


class OutputStreamLike(Protocol):
    """What the player needs from an output stream (sounddevice.OutputStream satisfies it)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


#: ``factory(samplerate=, channels=, blocksize=, device=, callback=) -> stream``.
StreamFactory = Callable[..., OutputStreamLike]


@dataclass(frozen=True)
class OutputDevice:
    """An audio output device as PortAudio lists it."""

    index: int
    name: str
    host_api: str
    channels: int
    default_sample_rate: float

    @property
    def label(self) -> str:
        return f"{self.name} ({self.host_api})"


def portaudio_available() -> bool:
    """True when the PortAudio library could be loaded."""
    return _sd is not None


def list_output_devices() -> list[OutputDevice]:
    """All devices with output channels; empty without PortAudio or devices."""
    if _sd is None:
        return []
    try:
        devices = _sd.query_devices()
        apis = _sd.query_hostapis()
    except Exception:  # PortAudio errors while probing mean "no usable device"
        return []
    out = []
    for d in devices:
        if int(d["max_output_channels"]) > 0:
            out.append(OutputDevice(
                index=int(d["index"]), name=str(d["name"]),
                host_api=str(apis[int(d["hostapi"])]["name"]),
                channels=int(d["max_output_channels"]),
                default_sample_rate=float(d["default_samplerate"]),
            ))
    return out


def output_usable(device: int | str | None = None) -> bool:
    """True when an output stream on ``device`` really opens and starts (a listed ALSA device
    may still have no server behind it)."""
    if _sd is None or not list_output_devices():
        return False

    def silence(out: Any, frames: int, time_info: Any, status: Any) -> None:
        out.fill(0)

    try:
        stream = _sd.OutputStream(samplerate=44_100, channels=2, device=device, callback=silence,
                                  dtype="float32")
        stream.start()
        stream.stop()
        stream.close()
    except Exception:
        return False
    return True


def default_output_device() -> OutputDevice | None:
    """PortAudio's default output device, else the first one, else None."""
    devices = list_output_devices()
    if not devices:
        return None
    if _sd is not None:
        try:
            default = int(_sd.default.device[1])
        except (TypeError, ValueError, IndexError):
            default = -1
        for d in devices:
            if d.index == default:
                return d
    return devices[0]


def _sounddevice_stream(**kwargs: Any) -> OutputStreamLike:
    assert _sd is not None
    return _sd.OutputStream(dtype="float32", latency="low", **kwargs)  # type: ignore[no-any-return]


#: Half-length of the fractional-delay filter (taps = 2 × this).
FRACTIONAL_HALF_TAPS = 32
#: Offsets within this many frames of a whole frame play as that whole frame.
_WHOLE_FRAME_TOLERANCE = 1e-6


def fractional_delay_taps(fraction: float, half: int = FRACTIONAL_HALF_TAPS) -> np.ndarray:
    """Taps ``h`` (float64, ``2 * half``): the band-limited value of ``x`` at the position
    ``j - fraction`` is ``sum_i h[i] * x[j + i - half]`` (``0 < fraction < 1``).

    A Kaiser-windowed sinc (β 9), normalised to unit DC gain.
    """
    k = np.arange(2 * half, dtype=np.float64) - half  # source offsets relative to j
    t = k + fraction  # distance of each source sample from the read position
    window = np.kaiser(2 * half + 1, 9.0)
    # the window centred on the read position: sample it at t (linear interpolation is plenty)
    w = np.interp(t, np.arange(-half, half + 1, dtype=np.float64), window)
    h = np.sinc(t) * w
    result: np.ndarray = h / h.sum()
    return result


@dataclass
class _LaneState:
    samples: np.ndarray  # float32 (channels, frames) at the session rate
    offset_frames: float
    gain_db: float = 0.0
    mute: bool = False
    solo: bool = False
    polarity: int = 1


# One mixing step: add ``coef * row[k - offset]`` into output channel ``out_channel``; with taps
# (a fractional offset: ``offset`` is its floor), ``coef * sum_i taps[i] * row[k - offset + i - half]``.
_PlanEntry = tuple[np.ndarray, int, int, float, "tuple[float, ...] | None"]
# (row (frames,), offset, out_channel, coef, taps × coef or None)


def _plan_entry(row: np.ndarray, offset: int, channel: int, coef: float, taps: np.ndarray | None) -> _PlanEntry:
    scaled = None if taps is None else tuple(float(np.float32(coef * t)) for t in taps)
    return (row, offset, channel, coef, scaled)


class Player:
    """Plays the session's lanes on an output device.

    Args:
        sample_rate: the session's rate (Hz); positions are frames at this rate.
        channels: output channels (mono lanes go to every channel; a stereo lane on a mono
            output is averaged; extra lane channels beyond the output's are dropped).
        blocksize: frames per callback.
        device: PortAudio output device index (None = the system default).
        stream_factory: creates the output stream; ``None`` = sounddevice. Tests pass a double
            here — the only seam between the player and the hardware.
    """

    def __init__(
        self,
        sample_rate: int = 44_100,
        channels: int = 2,
        blocksize: int = DEFAULT_BLOCKSIZE,
        device: int | None = None,
        stream_factory: StreamFactory | None = None,
    ) -> None:
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.blocksize = int(blocksize)
        self.device = device
        self._factory: StreamFactory | None = stream_factory
        self._stream: OutputStreamLike | None = None
        self._lanes: dict[str, _LaneState] = {}
        self._order: list[str] = []
        self._open_error: str | None = None
        # ---- shared with the audio callback (plain values, replaced atomically) ----
        self._plan: tuple[_PlanEntry, ...] = ()
        self._length = 0
        self._loop: tuple[bool, int, int] = (False, 0, 0)
        self._pos = 0
        self._seek_frame = 0
        self._seek_serial = 0
        self._applied_serial = 0
        self._at_end = False
        self._playing = False
        self.xruns = 0
        self._scratch = np.zeros(_SCRATCH_FRAMES, dtype=np.float32)
        self._one = np.float32(1.0)
        self._minus_one = np.float32(-1.0)

    # ---- availability ------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        """True when :meth:`play` can produce sound (a stream factory or a real device)."""
        if self._open_error is not None:
            return False
        if self._factory is not None:
            return True
        return _sd is not None and bool(list_output_devices())

    @property
    def status_message(self) -> str:
        """One line for the status bar: the device in use, or why there is no sound."""
        if self._open_error is not None:
            return f"Playback off: cannot open the audio output ({self._open_error})"
        if self._factory is not None:
            return "Audio output ready"
        if _sd is None:
            return f"Playback off: the PortAudio library is missing ({_IMPORT_ERROR})"
        devices = list_output_devices()
        if not devices:
            return "Playback off: no audio output device found"
        chosen = next((d for d in devices if d.index == self.device), None)
        chosen = chosen or default_output_device()
        return f"Output: {chosen.label}" if chosen is not None else "Audio output ready"

    # ---- configuration -----------------------------------------------------------------------
    def set_sample_rate(self, sample_rate: int) -> None:
        """Change the session rate: closes the stream and drops all lanes (set them again)."""
        if int(sample_rate) == self.sample_rate:
            return
        self._close_stream()
        self.sample_rate = int(sample_rate)
        self._lanes.clear()
        self._order.clear()
        self._rebuild_plan()

    def set_device(self, device: int | None) -> None:
        """Use another output device (index; None = default). Playback resumes if it was on."""
        was_playing = self._playing
        self._close_stream()
        self.device = device
        self._open_error = None
        if was_playing:
            self.play()

    # ---- lanes -------------------------------------------------------------------------------
    def set_lane(
        self,
        lane_id: str,
        samples: np.ndarray,
        sample_rate: int,
        offset_frames: float = 0.0,
        gain_db: float = 0.0,
        mute: bool = False,
        solo: bool = False,
        polarity: int = 1,
    ) -> None:
        """Add or replace a lane.

        Args:
            lane_id: the track's id.
            samples: float32 ``(channels, frames)`` at ``sample_rate`` (kept by reference when
                the rate matches the session's; otherwise resampled once, here).
            sample_rate: rate of ``samples`` (Hz).
            offset_frames: where sample 0 plays on the session timeline (session frames;
                a fraction plays through a fractional-delay filter).
            gain_db, mute, solo, polarity: the lane's settings.
        """
        if samples.ndim == 1:
            samples = samples[None, :]
        if int(sample_rate) != self.sample_rate:
            samples = resample(samples, int(sample_rate), self.sample_rate)
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        self._lanes[lane_id] = _LaneState(
            samples, float(offset_frames), float(gain_db), bool(mute), bool(solo),
            1 if polarity >= 0 else -1,
        )
        if lane_id not in self._order:
            self._order.append(lane_id)
        self._rebuild_plan()

    def set_lane_params(
        self,
        lane_id: str,
        *,
        gain_db: float | None = None,
        mute: bool | None = None,
        solo: bool | None = None,
        polarity: int | None = None,
        offset_frames: float | None = None,
    ) -> None:
        """Change a lane's settings; takes effect at the next buffer."""
        lane = self._lanes[lane_id]
        if gain_db is not None:
            lane.gain_db = float(gain_db)
        if mute is not None:
            lane.mute = bool(mute)
        if solo is not None:
            lane.solo = bool(solo)
        if polarity is not None:
            lane.polarity = 1 if polarity >= 0 else -1
        if offset_frames is not None:
            lane.offset_frames = float(offset_frames)
        self._rebuild_plan()

    def remove_lane(self, lane_id: str) -> None:
        self._lanes.pop(lane_id, None)
        if lane_id in self._order:
            self._order.remove(lane_id)
        self._rebuild_plan()

    def clear_lanes(self) -> None:
        self._lanes.clear()
        self._order.clear()
        self._rebuild_plan()

    @property
    def lane_ids(self) -> list[str]:
        return list(self._order)

    def lane_gain(self, lane_id: str) -> float:
        """The signed linear gain the lane plays with now (0 when muted or not soloed)."""
        lane = self._lanes[lane_id]
        return self._effective_gain(lane, any(x.solo for x in self._lanes.values()))

    @staticmethod
    def _effective_gain(lane: _LaneState, any_solo: bool) -> float:
        audible = lane.solo if any_solo else not lane.mute
        if not audible:
            return 0.0
        return float(10.0 ** (lane.gain_db / 20.0)) * lane.polarity

    def _rebuild_plan(self) -> None:
        """Build the immutable mix plan the callback reads (runs on the caller's thread)."""
        any_solo = any(x.solo for x in self._lanes.values())
        plan: list[_PlanEntry] = []
        length = 0
        for lane_id in self._order:
            lane = self._lanes[lane_id]
            whole = round(lane.offset_frames)
            if abs(lane.offset_frames - whole) <= _WHOLE_FRAME_TOLERANCE:
                offset, taps = int(whole), None
            else:
                offset = int(np.floor(lane.offset_frames))
                taps = fractional_delay_taps(lane.offset_frames - offset)
            length = max(length, offset + lane.samples.shape[1] + (1 if taps is not None else 0))
            gain = self._effective_gain(lane, any_solo)
            if gain == 0.0:
                continue
            lane_ch = lane.samples.shape[0]
            for k in range(lane_ch):
                row = lane.samples[k]
                if lane_ch == self.channels:
                    plan.append(_plan_entry(row, offset, k, gain, taps))
                elif lane_ch == 1:
                    plan.extend(_plan_entry(row, offset, c, gain, taps) for c in range(self.channels))
                elif self.channels == 1:
                    plan.append(_plan_entry(row, offset, 0, gain / lane_ch, taps))
                elif k < self.channels:
                    plan.append(_plan_entry(row, offset, k, gain, taps))
        self._length = max(length, 0)
        self._plan = tuple(plan)

    # ---- transport ---------------------------------------------------------------------------
    @property
    def length_frames(self) -> int:
        """End of the last lane on the session timeline (session frames)."""
        return self._length

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def position(self) -> int:
        """The playhead (session frames): the next frame the callback will render."""
        if self._seek_serial != self._applied_serial:
            return self._seek_frame
        return self._pos

    @property
    def at_end(self) -> bool:
        """True once playback ran past the last lane (the GUI then pauses)."""
        return self._at_end

    def seek(self, frame: int) -> None:
        """Move the playhead; applied by the callback at its next buffer."""
        self._seek_frame = max(int(frame), 0)
        self._seek_serial += 1  # after the frame: the callback reads serial, then frame
        self._at_end = False

    def set_loop(self, start: int | None, stop: int | None = None, enabled: bool = True) -> None:
        """Loop ``[start, stop)`` when playback reaches ``stop`` (None clears the loop)."""
        if start is None or stop is None or int(stop) <= int(start):
            self._loop = (False, 0, 0)
        else:
            self._loop = (bool(enabled), int(start), int(stop))

    @property
    def loop(self) -> tuple[bool, int, int]:
        """``(enabled, start, stop)`` in session frames."""
        return self._loop

    def play(self) -> bool:
        """Start (or resume) playback. Returns False (see :attr:`status_message`) if it can't."""
        if self._playing:
            return True
        if not self.available:
            return False
        if self.position >= self._length:
            enabled, start, _ = self._loop
            self.seek(start if enabled else 0)
        self._at_end = False
        if self._stream is None:
            factory = self._factory or _sounddevice_stream
            try:
                self._stream = factory(
                    samplerate=self.sample_rate, channels=self.channels,
                    blocksize=self.blocksize, device=self.device, callback=self._callback,
                )
            except Exception as exc:  # PortAudioError, bad device index, unsupported rate
                self._open_error = str(exc) or type(exc).__name__
                return False
        try:
            self._stream.start()
        except Exception as exc:
            self._open_error = str(exc) or type(exc).__name__
            self._close_stream()
            return False
        self._playing = True
        return True

    def pause(self) -> None:
        """Stop the sound, keep the playhead."""
        if self._stream is not None and self._playing:
            self._stream.stop()
        self._playing = False

    def toggle(self) -> bool:
        """Play if paused, pause if playing; returns whether it is playing now."""
        if self._playing:
            self.pause()
            return False
        return self.play()

    def stop(self) -> None:
        """Stop and return the playhead to the start (the loop's start when looping)."""
        self.pause()
        enabled, start, _ = self._loop
        self.seek(start if enabled else 0)

    def close(self) -> None:
        """Release the device."""
        self._close_stream()

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        self._playing = False
        if stream is not None:
            try:
                stream.stop()
            finally:
                stream.close()

    # ---- the audio callback (audio thread) -----------------------------------------------------
    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """Fill ``outdata`` (float32 ``(frames, channels)``) with the next ``frames`` frames."""
        if status:
            self.xruns += 1
        plan = self._plan
        serial = self._seek_serial
        if serial != self._applied_serial:
            self._pos = self._seek_frame
            self._applied_serial = serial
        pos = self._pos
        outdata.fill(0.0)
        done = 0
        while done < frames:
            enabled, loop_start, loop_stop = self._loop
            looping = enabled and pos < loop_stop
            end = loop_stop if looping else self._length
            if pos >= end:
                self._at_end = True
                break
            n = min(frames - done, end - pos)
            self._mix(plan, outdata, done, pos, n)
            pos += n
            done += n
            if looping and pos >= loop_stop:
                pos = loop_start
        self._pos = pos
        # Two ufuncs with preallocated bounds: np.clip builds argument objects on every call.
        np.minimum(outdata, self._one, out=outdata)
        np.maximum(outdata, self._minus_one, out=outdata)

    def _mix(self, plan: tuple[_PlanEntry, ...], out: np.ndarray, dst0: int, pos: int, n: int) -> None:
        """Add ``n`` frames from session frame ``pos`` into ``out[dst0:dst0 + n]``."""
        scratch = self._scratch
        for row, offset, channel, coef, taps in plan:
            first = pos - offset  # lane frame at out[dst0]
            if taps is not None:
                self._mix_fractional(row, first, channel, taps, out, dst0, n)
                continue
            a = first if first > 0 else 0
            b = first + n
            if b > row.shape[0]:
                b = row.shape[0]
            while a < b:
                m = b - a
                if m > _SCRATCH_FRAMES:
                    m = _SCRATCH_FRAMES
                tmp = scratch[:m]
                np.multiply(row[a : a + m], coef, out=tmp)
                dst = out[dst0 + a - first : dst0 + a - first + m, channel]
                np.add(dst, tmp, out=dst)
                a += m

    def _mix_fractional(self, row: np.ndarray, first: int, channel: int, taps: tuple[float, ...],
                        out: np.ndarray, dst0: int, n: int) -> None:
        """Add ``sum_i taps[i] * row[first + r + i - half]`` into ``out[dst0 + r, channel]`` for
        ``r < n`` (out-of-range lane frames are zeros): one multiply-add per tap, in pieces of
        the scratch's length, with no allocation."""
        scratch = self._scratch
        half = len(taps) // 2
        size = row.shape[0]
        r0 = 0
        while r0 < n:
            m = n - r0
            if m > _SCRATCH_FRAMES:
                m = _SCRATCH_FRAMES
            base = first + r0 - half  # lane frame read by tap 0 for output r0
            for i, tap in enumerate(taps):
                src = base + i
                lo = -src if src < 0 else 0
                hi = size - src if size - src < m else m
                if hi <= lo:
                    continue
                tmp = scratch[: hi - lo]
                np.multiply(row[src + lo : src + hi], tap, out=tmp)
                dst = out[dst0 + r0 + lo : dst0 + r0 + hi, channel]
                np.add(dst, tmp, out=dst)
            r0 += m
