"""Command line: ``apsystems-ecu-proxy serve|decode|demo|check-options``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import signal
import socket
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


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from err
    if not value >= 1:
        # Two records stamped within one second are duplicates to the service.
        raise argparse.ArgumentTypeError(f"must be at least 1 second, not {text}")
    return value


def busy_port(host: str, ports: Sequence[int]) -> int | None:
    """Return the first of ``ports`` that another program listens on, or None."""
    for port in ports:
        if port == 0:
            continue
        try:
            infos = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except OSError:
            continue  # an unusable host is reported by the bind itself
        for family, kind, proto, _name, address in infos:
            with socket.socket(family, kind, proto) as probe:
                # Same options as the real listeners: a port in TIME_WAIT is free.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(address)
                except OSError as err:
                    if err.errno == errno.EADDRINUSE:
                        return port
    return None


def _port_busy_message(host: str, port: int) -> str:
    return (
        f"apsystems-ecu-proxy: port {port} on {host} is already in use "
        "(is the service or the demo already running?)"
    )


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
    demo.add_argument(
        "--data-dir",
        type=Path,
        help="default: $XDG_STATE_HOME/apsystems-ecu-proxy/demo "
        "(~/.local/state/...); a restarted demo continues from it",
    )
    demo.add_argument(
        "--fresh",
        action="store_true",
        help="forget the demo's saved state and server id and start over "
        "(its energy counters start again from the capture's values)",
    )
    demo.add_argument(
        "--interval",
        type=_interval,
        default=5.0,
        help="seconds between simulated uploads (at least 1: ECU time has seconds)",
    )
    demo.add_argument(
        "--day-minutes",
        type=float,
        default=60.0,
        help="minutes of one simulated daylight arc (0: the real sun, dark at night)",
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
            return run_demo_command(args)
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
            # Relay ports may fail one by one (the rest still work), but
            # without its API port the service is useless: say so in one line.
            if (port := busy_port(options.api_host, [options.api_port])) is not None:
                print(_port_busy_message(options.api_host, port), file=sys.stderr)
                return EXIT_USAGE
            return asyncio.run(serve(options))


def run_demo_command(args: argparse.Namespace) -> int:
    """Run the demo on loopback; exit 2 at once if one of its ports is taken."""
    from .demo import default_data_dir, run_demo  # noqa: PLC0415

    setup_logging(args.log_level)
    if (port := busy_port("127.0.0.1", [args.api_port, *args.ports])) is not None:
        print(_port_busy_message("127.0.0.1", port), file=sys.stderr)
        return EXIT_USAGE
    demo = run_demo(
        api_port=args.api_port,
        ports=args.ports,
        data_dir=args.data_dir or default_data_dir(),
        interval=args.interval,
        records=args.records,
        day_minutes=args.day_minutes,
        fresh=args.fresh,
    )
    try:
        return asyncio.run(demo)
    except KeyboardInterrupt:  # Ctrl-C: the demo already stopped cleanly
        return EXIT_OK
    except OSError as err:  # a port taken between the check and the bind
        print(f"apsystems-ecu-proxy: cannot start the demo: {err}", file=sys.stderr)
        return EXIT_USAGE


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
    except OSError as err:  # a port taken between the check and the bind
        print(f"apsystems-ecu-proxy: cannot start: {err}", file=sys.stderr)
        await service.stop()
        return EXIT_USAGE
    await stop.wait()
    await service.stop()
    return EXIT_OK


def decode_files(paths: Sequence[Path]) -> int:
    """Print one JSON object per frame found in the files (JSON Lines)."""
    from .contract.codec import encode  # noqa: PLC0415
    from .decoder import decode_frame  # noqa: PLC0415
    from .frame_json import decoded  # noqa: PLC0415
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
            print(json.dumps(encode(decoded(frame)), ensure_ascii=False))
    return EXIT_OK if all_good else EXIT_BAD_FRAMES


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
