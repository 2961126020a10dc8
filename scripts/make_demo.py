"""Make the bundled demo session: a synthesized mix, its acapella with a known misalignment, and
the truth, in ``resources/demo/``.

    python scripts/make_demo.py                 # writes resources/demo/{mix,acapella}.flac + demo.json
    python scripts/make_demo.py --stems DIR     # also writes the true stems (not committed)
    python scripts/make_demo.py --spectrogram /tmp/demo.png

The acapella is the song's vocal stem cut so that its sample k plays at mix sample
k + offset_samples (DESIGN.md's ``align`` convention), 2.5 dB quieter; ``align`` on the demo
should answer offset_seconds ≈ 1.3479 and gain_db ≈ +2.5. Everything is reproducible from the seed
(on the same fluidsynth / soundfont / espeak-ng / pyworld versions, recorded in demo.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.audio import Audio, load_audio, save_audio  # noqa: E402
from engine.errors import InputError  # noqa: E402
from engine.synth import STEMS, make_acapella, synthesize_song  # noqa: E402

SEED = 3
STYLE = "pop"
DURATION_SECONDS = 24.0
OFFSET_SECONDS = 1.3479  # acapella starts 1.3479 s into the song (non-round on purpose)
ACAPELLA_GAIN_DB = -2.5
MAX_TOTAL_BYTES = 5 * 1024 * 1024


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-30))


def _spectrogram(path: Path, audio: Audio) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(14, 5))
    x = audio.mono().astype(np.float64) + 1e-9
    ax.specgram(x, NFFT=4096, noverlap=3072, Fs=audio.sample_rate, cmap="magma", vmin=-130, vmax=-30)
    ax.set_ylim(0, 8000)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Hz")
    ax.set_title("demo mix")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "demo")
    parser.add_argument("--stems", type=Path, help="also write the true stems (FLAC) here")
    parser.add_argument("--spectrogram", type=Path, help="write a spectrogram PNG of the mix here")
    parser.add_argument("--seed", type=int, default=SEED, help="try another song (default: the demo's)")
    args = parser.parse_args(argv)
    try:
        song = synthesize_song(args.seed, DURATION_SECONDS, sample_rate=44100, style=STYLE, bus=False)
        acapella, truth = make_acapella(song, OFFSET_SECONDS, ACAPELLA_GAIN_DB)
    except InputError as exc:
        print(f"make_demo: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    mix_path = save_audio(args.out / "mix.flac", song.mix, bit_depth="16")
    acapella_path = save_audio(args.out / "acapella.flac", acapella, bit_depth="16")
    if args.stems:
        args.stems.mkdir(parents=True, exist_ok=True)
        for stem in STEMS:
            save_audio(args.stems / f"{stem}.flac", song.stems[stem], bit_depth="16")

    # Checks on what was written (16-bit files, read back).
    mix = load_audio(mix_path)
    acap = load_audio(acapella_path)
    stems_sum = np.sum([song.stems[s].samples.astype(np.float64) for s in STEMS], axis=0)
    sum_error_db = _db(song.mix.samples - stems_sum) - _db(song.mix.samples)
    off = truth["offset_samples"]
    placed = np.zeros_like(mix.samples)
    n = min(acap.frames, mix.frames - off)
    placed[:, off : off + n] = acap.samples[:, :n] * 10 ** (truth["gain_db"] / 20)
    vocal = song.stems["vocals"].samples
    null_db = _db((mix.samples - placed)[:, off:]) - _db(mix.samples[:, off:])
    instrumental = mix.samples[:, off:] - vocal[:, off:]
    vocal_residual_db = _db(placed[:, off:] - vocal[:, off:]) - _db(vocal[:, off:])
    checks = {
        "mix_peak_dbfs": round(20 * np.log10(float(np.max(np.abs(mix.samples)))), 2),
        "mix_rms_dbfs": round(_db(mix.samples), 2),
        "acapella_peak_dbfs": round(20 * np.log10(float(np.max(np.abs(acap.samples)))), 2),
        "vocal_to_instrumental_db": round(float(song.info["levels"]["vocal_to_instrumental_db"]), 2),
        "stems_sum_error_db": round(sum_error_db, 1),
        "acapella_placed_vs_vocal_error_db": round(vocal_residual_db, 1),
        "null_residual_vs_instrumental_db": round(
            _db((mix.samples - placed)[:, off:] - instrumental) - _db(instrumental), 1),
        "null_depth_db": round(null_db, 2),
    }
    score = song.info["score"]
    demo = {
        "title": f"Unmix Studio demo — synthesized {score['style']} song, {score['tempo_bpm']} BPM, {score['key']}",
        "description": (
            "A song made by engine.synth (General MIDI instruments rendered with fluidsynth, a "
            "sung line from espeak-ng re-sung with WORLD on the melody, seeded mixing), and its "
            "acapella deliberately offset by a non-round amount and 2.5 dB quieter. Line them up "
            "with the nudge tool and the invert-check, then separate."
        ),
        "files": {"mix": "mix.flac", "acapella": "acapella.flac"},
        "truth": {
            "offset_seconds": truth["offset_seconds"],
            "offset_samples": truth["offset_samples"],
            "gain_db": truth["gain_db"],
            "drift_ppm": truth["drift_ppm"],
            "polarity": truth["polarity"],
            "acapella_sample_rate": truth["acapella_sample_rate"],
            "convention": "acapella sample k plays at mix sample k + offset_samples; gain_db is "
                          "the gain that makes the acapella match the vocal in the mix",
        },
        "seed": args.seed,
        "made_with": {
            "command": "python scripts/make_demo.py"
                       + ("" if args.seed == SEED else f" --seed {args.seed}"),
            "call": f"synthesize_song({args.seed}, {DURATION_SECONDS}, sample_rate=44100, style={STYLE!r}, "
                    f"bus=False); make_acapella(song, {OFFSET_SECONDS}, {ACAPELLA_GAIN_DB})",
            "style": score["style"],
            "tempo_bpm": score["tempo_bpm"],
            "key": score["key"],
            "lyrics": score["lyrics"],
            "tracks": score["tracks"],
            "singer": song.info["singer"],
            "renderers": song.info["renderers"],
            "format": "FLAC, 16-bit, 44.1 kHz, stereo",
        },
        "licences": {
            "soundfont": song.info["renderers"]["soundfont_licence"],
            "audio": "generated by this project; same licence as the project (MIT)",
        },
        "checks": checks,
    }
    (args.out / "demo.json").write_text(json.dumps(demo, indent=2, ensure_ascii=False) + "\n")
    if args.spectrogram:
        _spectrogram(args.spectrogram, mix)
    total = sum((args.out / f).stat().st_size for f in ("mix.flac", "acapella.flac", "demo.json"))
    print(json.dumps({"files_bytes": total, **checks}, indent=2))
    if total > MAX_TOTAL_BYTES:
        print(f"make_demo: demo is {total} bytes, over the {MAX_TOTAL_BYTES} budget", file=sys.stderr)
        return 1
    if checks["mix_peak_dbfs"] >= 0 or checks["acapella_peak_dbfs"] >= 0:
        print("make_demo: clipping", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
