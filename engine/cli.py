"""Command line: ``python app.py [gui|align|analyze] ...`` (the contract is in DESIGN.md).

Exit codes: 0 success, 2 bad input (one line on stderr naming the file and the problem),
1 internal failure (one line; the traceback only with ``--debug``). Headless sub-commands never
import Qt; ``gui`` imports it lazily.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from engine import __version__
from engine.errors import Cancelled, InputError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="app.py",
        description="Unmix Studio: align a mix and its acapella, separate, edit masks, export "
        "stems and reports. With no command, opens the GUI on the bundled demo session.",
    )
    parser.add_argument("--version", action="version", version=f"Unmix Studio {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    gui = sub.add_parser("gui", help="open the workstation (the default)",
                         description="Open the main window; with nothing given, the demo session.")
    gui.add_argument("--mix", metavar="M", help="mix audio file (WAV, FLAC, OGG, MP3, AIFF)")
    gui.add_argument("--acapella", metavar="A", help="acapella audio file")
    gui.add_argument("--project", metavar="P", help="Unmix Studio project (.unmix)")
    gui.add_argument("--screenshot", metavar="PNG",
                     help="save a PNG of the main window once the lanes are drawn, then exit")
    gui.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    gui.set_defaults(handler=_run_gui)

    align = sub.add_parser("align", help="find offset, drift, gain and polarity of an acapella",
                           description="Align an acapella to its mix and print the result as JSON.")
    align.add_argument("--mix", metavar="M", required=True, help="mix audio file")
    align.add_argument("--acapella", metavar="A", required=True, help="acapella audio file")
    align.add_argument("--json", metavar="OUT", help="also write the JSON to this file")
    align.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    align.set_defaults(handler=_run_align)

    sep = sub.add_parser("separate", help="separate a mix into stems and export them",
                         description="Separate a mix (with an acapella for the reference and "
                         "fingerprint engines; aligned first unless --no-align) and write "
                         "DIR/<stem>.wav|flac plus DIR/separation.json.")
    sep.add_argument("--mix", metavar="M", required=True, help="mix audio file")
    sep.add_argument("--acapella", metavar="A", help="acapella audio file")
    sep.add_argument("--query", metavar="Q",
                     help="query engine: a 1–3 s clip of the sound to find (longer is trimmed)")
    sep.add_argument("--query-region", metavar="START:END",
                     help="query engine: take the query from the mix between START and END seconds")
    sep.add_argument("--references", metavar="DIR",
                     help="true stems named like the engine's (e.g. target.wav) for seed 002's metrics")
    sep.add_argument("--gt", metavar="FILE",
                     help="true audio of the first stem (query engine: the target) for the metrics")
    sep.add_argument("--engine", metavar="E", required=True,
                     help="separation engine: reference, fingerprint (need --acapella), unet, "
                     "query (needs --query or --query-region)")
    sep.add_argument("--stems", choices=("2", "4"),
                     help="unet: 2 (vocals, instrumental) or 4 (drums, bass, other, vocals)")
    sep.add_argument("--out", metavar="DIR", required=True, help="output folder")
    sep.add_argument("--format", choices=("wav", "flac"), default="wav", help="file format (wav)")
    sep.add_argument("--bit-depth", choices=("16", "24", "float"), default="24",
                     help="16, 24 or float (32-bit float, WAV only); default 24")
    sep.add_argument("--template", default="{stem}",
                     help="file name template: {title} {stem} {engine} {index}; default {stem}")
    sep.add_argument("--limiter", action="store_true",
                     help="limit peaks to -0.3 dBFS instead of letting 16/24-bit files clip")
    sep.add_argument("--overwrite", action="store_true", help="replace existing files")
    sep.add_argument("--no-align", action="store_true",
                     help="take the acapella as already aligned to the mix (sample 0 on sample 0)")
    sep.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                     help="where to compute (auto: CUDA when available)")
    sep.add_argument("--param", action="append", metavar="NAME=VALUE",
                     help="engine parameter (repeatable); see the engine's parameters")
    sep.add_argument("--quiet", action="store_true", help="no progress on stderr")
    sep.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sep.set_defaults(handler=_run_separate)

    analyze = sub.add_parser("analyze", help="measure separated stems (SDR, BSS Eval, bands, …)",
                             description="Analyse estimated stems against references (matched by "
                             "stem name), or reference-free without --references.")
    analyze.add_argument("--estimates", metavar="DIR", required=True, help="folder of estimated stems")
    analyze.add_argument("--references", metavar="DIR", help="folder of true stems (same names)")
    analyze.add_argument("--mix", metavar="M", help="the mix (for reference-free checks)")
    analyze.add_argument("--acapella", metavar="A", help="the acapella (reference-free vocal check)")
    analyze.add_argument("--json", metavar="OUT", help="write every number as JSON")
    analyze.add_argument("--markdown", metavar="OUT", help="write the Markdown report")
    analyze.add_argument("--pdf", metavar="OUT", help="write the PDF report")
    analyze.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    analyze.set_defaults(handler=_run_analyze)
    return parser


GuiRunner = Callable[..., int]
_gui_runner: GuiRunner | None = None


def _run_gui(args: argparse.Namespace) -> int:
    # The engine never imports the GUI: app.py hands the launcher in (see main()).
    if _gui_runner is None:
        raise InputError("the GUI is not available from this entry point; run app.py")
    return _gui_runner(mix=args.mix, acapella=args.acapella, project=args.project,
                       screenshot=args.screenshot)


def _run_align(args: argparse.Namespace) -> int:
    from engine.align import align_command

    return align_command(args.mix, args.acapella, args.json)


def _run_separate(args: argparse.Namespace) -> int:
    from engine.separators.command import separate_command

    return separate_command(
        args.mix, args.engine, args.out, acapella_path=args.acapella, no_align=args.no_align,
        file_format=args.format, bit_depth=args.bit_depth, template=args.template,
        limiter=args.limiter, overwrite=args.overwrite, device=args.device,
        params=[*(args.param or []), *([f"stems={args.stems}"] if args.stems else [])],
        quiet=args.quiet, query_path=args.query, query_region=args.query_region,
        references_dir=args.references, gt_path=args.gt,
    )


def _run_analyze(args: argparse.Namespace) -> int:
    from engine.analysis.command import analyze_command

    return analyze_command(
        args.estimates, args.references, args.mix, args.json, args.markdown, args.pdf,
        acapella_path=args.acapella,
    )


def main(argv: Sequence[str] | None = None, gui_runner: GuiRunner | None = None) -> int:
    """Run the CLI; returns the exit code. ``gui_runner`` opens the GUI (given by app.py)."""
    global _gui_runner
    _gui_runner = gui_runner
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui", *argv])
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args) or 0)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Cancelled:
        print("cancelled", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
