"""Command line: ``apsystems-ecu-proxy serve|decode|demo|check-options``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .identity import load_or_create_server_id
from .models import FrameKind
from .options import LOG_LEVELS, Mode, Options, OptionsError, load_options_file

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_BAD_FRAMES = 1
EXIT_USAGE = 2

# Add-on log levels (bashio's names) mapped onto Python's.
_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}


class _Parser(argparse.ArgumentParser):
    """Argument parser that exits with our usage code."""

    def error(self, message: str) -> NoReturn:
        """Print the usage error and exit with code 2."""
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _ports(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated port list: {text}"
        ) from err


def _add_service_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", help="address the relay ports bind to")
    parser.add_argument("--ports", type=_ports, help="relay ports, e.g. 8995,8996,8997")
    parser.add_argument("--ema-host", help="EMA host name or IP address")
    parser.add_argument("--mode", choices=[m.value for m in Mode])
    parser.add_argument("--api-port", type=int, help="port of the HTTP/WebSocket API")
    parser.add_argument("--api-host", help="address the API binds to")
    parser.add_argument("--data-dir", type=Path, help="where state is kept")
    parser.add_argument(
        "--options", type=Path, help="add-on options.json; flags override it"
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser."""
    parser = _Parser(
        prog="apsystems-ecu-proxy",
        description="Relay APsystems ECU uploads to EMA and decode a copy of each.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run the relay and the API")
    _add_service_flags(serve)
    check = sub.add_parser(
        "check-options", help="validate the options and create the server id"
    )
    _add_service_flags(check)
    decode = sub.add_parser("decode", help="decode captured frames to JSON Lines")
    decode.add_argument("files", nargs="+", type=Path, metavar="FILE")
    demo = sub.add_parser(
        "demo", help="relay + API + a simulated ECU on loopback (no EMA)"
    )
    demo.add_argument("--api-port", type=int, default=8990)
    demo.add_argument("--ports", type=_ports, default=(8995, 8996, 8997))
    demo.add_argument("--data-dir", type=Path, help="default: a temporary folder")
    demo.add_argument(
        "--interval", type=float, default=2.0, help="seconds between simulated uploads"
    )
    demo.add_argument("--records", type=int, default=0, help="stop after N (0: never)")
    demo.add_argument("--log-level", choices=LOG_LEVELS, default="warning")
    return parser


def options_from_args(args: argparse.Namespace) -> Options:
    """Merge the options file (if any) with the command-line flags."""
    base = Options()
    if args.options is not None:
        base = load_options_file(args.options, base)
    changes: dict[str, Any] = {}
    for flag, field in (
        ("listen", "listen"),
        ("ports", "ports"),
        ("ema_host", "ema_host"),
        ("api_port", "api_port"),
        ("api_host", "api_host"),
        ("data_dir", "data_dir"),
        ("log_level", "log_level"),
    ):
        value = getattr(args, flag)
        if value is not None:
            changes[field] = value
    if args.mode is not None:
        changes["mode"] = Mode(args.mode)
    return base.replace(**changes).validate()


def setup_logging(level: str) -> None:
    """Log to stderr with timestamps at the add-on's level name."""
    logging.basicConfig(
        level=_LEVELS.get(level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit code."""
    args = build_parser().parse_args(argv)
    match args.command:
        case "decode":
            return decode_files(args.files)
        case "demo":
            from .demo import run_demo  # noqa: PLC0415

            setup_logging(args.log_level)
            demo = run_demo(
                api_port=args.api_port,
                ports=args.ports,
                data_dir=args.data_dir,
                interval=args.interval,
                records=args.records,
            )
            try:
                return asyncio.run(demo)
            except KeyboardInterrupt:  # Ctrl-C: the demo already stopped cleanly
                return EXIT_OK
        case _:
            try:
                options = options_from_args(args)
            except OptionsError as err:
                print(f"apsystems-ecu-proxy: {err}", file=sys.stderr)
                return EXIT_USAGE
            setup_logging(options.log_level)
            if args.command == "check-options":
                server_id = load_or_create_server_id(options.data_dir)
                print(f"options valid; server id {server_id}")
                return EXIT_OK
            return asyncio.run(serve(options))


async def serve(options: Options) -> int:
    """Run the service until SIGTERM or SIGINT, then stop cleanly."""
    from .service import Service  # noqa: PLC0415

    service = Service(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
    except OSError as err:
        logging.getLogger(__name__).error("Cannot start: %s", err)
        await service.stop()
        return 1
    await stop.wait()
    await service.stop()
    return EXIT_OK


def decode_files(paths: Sequence[Path]) -> int:
    """Print one JSON object per frame found in the files (JSON Lines)."""
    from .decoder import decode_frame  # noqa: PLC0415
    from .framing import Framer  # noqa: PLC0415

    all_good = True
    for path in paths:
        try:
            data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        except OSError as err:
            print(f"apsystems-ecu-proxy: cannot read {path}: {err}", file=sys.stderr)
            return EXIT_USAGE
        framer = Framer(max_frame=max(len(data), 1))
        frames = [*framer.feed(data), *framer.flush()]
        if not frames:
            print(f"apsystems-ecu-proxy: {path}: no frame found", file=sys.stderr)
            all_good = False
        for raw in frames:
            frame = decode_frame(raw)
            if frame.kind in (FrameKind.INVALID, FrameKind.UNKNOWN):
                all_good = False
            print(json.dumps(frame.as_dict(), ensure_ascii=False))
    return EXIT_OK if all_good else EXIT_BAD_FRAMES


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
