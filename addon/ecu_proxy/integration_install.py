"""Install the companion integration into Home Assistant's config folder, atomically."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .contract.constants import DOMAIN

if TYPE_CHECKING:
    from collections.abc import Mapping

_LOGGER = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path("/usr/share/apsystems_ecu_proxy") / DOMAIN
DEFAULT_CONFIG_DIR = Path("/homeassistant")
BUNDLE_ENV = "ECU_PROXY_INTEGRATION_BUNDLE"
CONFIG_DIR_ENV = "ECU_PROXY_HA_CONFIG"
# Work folders next to the installed one; the AppArmor profile allows these names.
NEW_PREFIX = f".{DOMAIN}.new-"
OLD_PREFIX = f".{DOMAIN}.old-"

Action = Literal[
    "installed",
    "upgraded",
    "up_to_date",
    "newer_present",
    "foreign",
    "disabled",
    "no_config_dir",
    "error",
]

_VERSION = re.compile(
    r"^v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[.-]?(?P<pre>a|b|rc|alpha|beta)\.?(?P<pre_n>\d*))?"
    r"(?:[.-]?post\.?(?P<post>\d+))?"
    r"(?:[.-]?dev\.?(?P<dev>\d*))?$",
    re.IGNORECASE,
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "rc": 2}


@dataclass(frozen=True, slots=True)
class InstallResult:
    """What the installer did, with a sentence for the log."""

    action: Action
    detail: str

    @property
    def changed(self) -> bool:
        """Return True when Home Assistant must restart to load new files."""
        return self.action in ("installed", "upgraded")


def bundle_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return the integration folder shipped in the image."""
    env = os.environ if environ is None else environ
    return Path(env.get(BUNDLE_ENV) or DEFAULT_BUNDLE)


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return Home Assistant's config folder as mapped into the container."""
    env = os.environ if environ is None else environ
    return Path(env.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def version_key(text: str) -> tuple[tuple[int, ...], int, int, int, int] | None:
    """Return a sortable key for a PEP 440-like version string, or None."""
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    release = tuple(int(part) for part in match["release"].split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    pre = match["pre"]
    dev = match["dev"]
    # Order within one release: dev < a < b < rc < final < post.
    if pre is not None:
        pre_rank, pre_n = _PRE_RANK[pre.lower()], int(match["pre_n"] or 0)
    elif dev is not None and match["post"] is None:
        pre_rank, pre_n = -1, 0
    else:
        pre_rank, pre_n = 3, 0
    post = int(match["post"]) if match["post"] is not None else -1
    dev_n = int(dev or 0) if dev is not None else 1 << 62
    return release, pre_rank, pre_n, post, dev_n


def _read_manifest(folder: Path) -> tuple[str, str] | None:
    """Return (domain, version) from folder/manifest.json, or None if unusable."""
    try:
        raw = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    domain, version = raw.get("domain"), raw.get("version")
    if not isinstance(domain, str):
        return None
    return domain, version if isinstance(version, str) else ""


def install_integration(
    bundle: Path, config_dir: Path, *, enabled: bool = True
) -> InstallResult:
    """Copy the bundled integration into config_dir/custom_components when needed."""
    if not enabled:
        return InstallResult("disabled", "integration install is turned off")
    shipped = _read_manifest(bundle)
    if shipped is None or shipped[0] != DOMAIN or version_key(shipped[1]) is None:
        return InstallResult("error", f"the bundled integration at {bundle} is broken")
    new_version = shipped[1]
    if not config_dir.is_dir():
        return InstallResult(
            "no_config_dir",
            f"Home Assistant's config folder {config_dir} is not mapped",
        )
    components = config_dir / "custom_components"
    target = components / DOMAIN
    try:
        previous = _inspect_target(target, new_version)
        if isinstance(previous, InstallResult):
            return previous
        components.mkdir(exist_ok=True)
        _remove_leftovers(components)
        staged = _stage_copy(bundle, components)
        try:
            _swap_in(staged, target, components, replacing=previous is not None)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
    except OSError as err:
        _LOGGER.error("Installing the integration failed: %s", err)
        return InstallResult("error", f"could not install into {target}: {err}")
    if previous is None:
        return InstallResult("installed", f"installed integration {new_version}")
    return InstallResult(
        "upgraded", f"upgraded integration {previous} to {new_version}"
    )


def _inspect_target(target: Path, new_version: str) -> InstallResult | str | None:
    """Return a final result, the installed version to replace, or None if absent."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        return InstallResult(
            "foreign", f"{target} is not a folder we manage; left alone"
        )
    if not target.exists():
        return None
    found = _read_manifest(target)
    if found is None or found[0] != DOMAIN:
        return InstallResult(
            "foreign", f"{target} holds another integration or no manifest; left alone"
        )
    old_version = found[1]
    old_key, new_key = version_key(old_version), version_key(new_version)
    if old_key is None or new_key is None:
        return InstallResult(
            "error", f"cannot compare installed version {old_version!r}; left alone"
        )
    if old_key == new_key:
        return InstallResult("up_to_date", f"integration {old_version} is up to date")
    if old_key > new_key:
        return InstallResult(
            "newer_present",
            f"integration {old_version} is newer than the bundled {new_version}; "
            "left alone",
        )
    return old_version


def _remove_leftovers(components: Path) -> None:
    """Delete work folders an interrupted earlier run left behind."""
    for entry in components.iterdir():
        if entry.name.startswith((NEW_PREFIX, OLD_PREFIX)) and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def _stage_copy(bundle: Path, components: Path) -> Path:
    """Copy the bundle to a hidden sibling folder and return its path."""
    staged = Path(tempfile.mkdtemp(prefix=NEW_PREFIX, dir=components))
    try:
        shutil.copytree(
            bundle,
            staged,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        staged.chmod(0o755)
        _sync_tree(staged)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def _sync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk before it is renamed in.

    Without this a power cut soon after the rename can leave empty files under the
    final name, which a later start would take for a foreign folder.
    """
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _sync_dir(Path(folder))


def _sync_dir(folder: Path) -> None:
    """Make renames and new entries in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(staged: Path, target: Path, components: Path, *, replacing: bool) -> None:
    """Rename the staged copy into place, moving an old version aside first."""
    if not replacing:
        os.rename(staged, target)
        _sync_dir(components)
        return
    aside = Path(tempfile.mkdtemp(prefix=OLD_PREFIX, dir=components))
    aside.rmdir()
    os.rename(target, aside)
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(aside, target)
        raise
    _sync_dir(components)
    shutil.rmtree(aside, ignore_errors=True)
