"""Options: defaults, the add-on options file, flags over the file, validation."""

import json
from pathlib import Path

import pytest

from ecu_proxy.cli import build_parser, options_from_args
from ecu_proxy.options import (
    DEFAULT_PORTS,
    Mode,
    Options,
    OptionsError,
    load_options_file,
    options_from_mapping,
)


def test_defaults_are_valid() -> None:
    options = Options().validate()
    assert options.all_ports == DEFAULT_PORTS
    assert options.mode is Mode.FORWARD
    assert options.ema_host == "ecu.apsystemsema.com"


def test_extra_ports_are_appended_once() -> None:
    options = Options(extra_ports=(9220, 8995, 9220))
    assert options.all_ports == (8995, 8996, 8997, 9220)


def test_addon_options_file(tmp_path: Path) -> None:
    path = tmp_path / "options.json"
    path.write_text(
        json.dumps(
            {
                "ema_host": "3.67.1.32",
                "mode": "cloudless",
                "extra_ports": [9220],
                "api_token": "",
                "allowed_ecu_ids": ["216000064136"],
                "capture_frames": False,
                "log_level": "debug",
                "dns_resolvers": ["9.9.9.9"],
                "install_integration": False,
            }
        )
    )
    options = load_options_file(path).validate()
    assert options.mode is Mode.CLOUDLESS
    assert options.ema_host == "3.67.1.32"
    assert options.all_ports == (8995, 8996, 8997, 9220)
    assert options.api_token is None  # empty string means no token
    assert options.allowed_ecu_ids == ("216000064136",)
    assert options.capture_frames is False
    assert options.dns_resolvers == ("9.9.9.9",)
    assert options.install_integration is False


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "options.json"
    path.write_text(json.dumps({"mode": "cloudless", "log_level": "debug"}))
    args = build_parser().parse_args(
        [
            "serve",
            "--options",
            str(path),
            "--mode",
            "forward",
            "--ports",
            "18995,18996",
            "--api-port",
            "0",
            "--data-dir",
            str(tmp_path),
        ]
    )
    options = options_from_args(args)
    assert options.mode is Mode.FORWARD
    assert options.log_level == "debug"
    assert options.ports == (18995, 18996)
    assert options.api_port == 0
    assert options.data_dir == tmp_path


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mode": "offline"}, "mode"),
        ({"extra_ports": ["x"]}, "extra_ports"),
        ({"capture_frames": "yes"}, "capture_frames"),
        ({"surprise": 1}, "unknown option"),
    ],
)
def test_bad_option_values_name_the_option(
    raw: dict[str, object], message: str
) -> None:
    with pytest.raises(OptionsError, match=message):
        options_from_mapping(raw)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (Options(extra_ports=(70000,)), "outside"),
        (Options(api_port=8995), "also a relay port"),
        (Options(ema_host="not a host!"), "ema_host"),
        (Options(dns_resolvers=("dns.example",)), "not an IP"),
        (Options(allowed_ecu_ids=("1234",)), "12 digits"),
        (Options(allowed_hosts=("not a host!",)), "allowed host"),
        (Options(allowed_hosts=("*.10.0.0.1",)), "allowed host"),
        (Options(log_level="loud"), "log_level"),
        (Options(idle_timeout=0), "positive"),
        (Options(max_connections=0), "max_connections"),
        (Options(ports=()), "no relay ports"),
        (Options(dns_resolvers=()), "dns_resolvers is empty"),
    ],
)
def test_validation_rejects(options: Options, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        options.validate()


def test_no_resolvers_is_fine_without_a_name_to_resolve() -> None:
    assert Options(dns_resolvers=(), ema_host="3.67.1.32").validate()
    assert Options(dns_resolvers=(), mode=Mode.CLOUDLESS).validate()


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="cannot read"):
        load_options_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(OptionsError, match="not JSON"):
        load_options_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(OptionsError, match="JSON object"):
        load_options_file(bad)


def test_allowed_hosts_from_the_addon_options() -> None:
    options = options_from_mapping(
        {"allowed_hosts": ["solar.example.org", " *.lan.example ", "", "10.0.0.7"]}
    ).validate()
    assert options.allowed_hosts == ("solar.example.org", "*.lan.example", "10.0.0.7")
    assert Options().allowed_hosts == ()
