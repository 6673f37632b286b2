"""The contract package stands alone: standard library and itself, nothing else."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import ecu_proxy.contract

PACKAGE = Path(ecu_proxy.contract.__file__).resolve().parent


def _imports(path: Path) -> list[tuple[int, str]]:
    """Return (level, module) of every import in a file."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
    return found


def test_the_package_is_the_integrations_folder() -> None:
    """The service reaches the files the integration ships (one copy)."""
    assert PACKAGE.parent.name == "apsystems_ema_proxy"
    assert PACKAGE.parent.parent.name == "custom_components"


def test_only_the_standard_library_and_relative_imports() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 6
    outside = {
        f"{path.name}: {module}"
        for path in files
        for level, module in _imports(path)
        if level == 0 and module.split(".")[0] not in sys.stdlib_module_names
    }
    assert outside == set()
