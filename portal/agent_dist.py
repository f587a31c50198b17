"""The node agent as the portal hands it out: a wheel built from agent/, its systemd unit, and
a SHA256SUMS file that lists both (`manage.py build_agent` writes them; portal/agent_views.py
serves them under /agent/ with the install script).

The build is reproducible (SOURCE_DATE_EPOCH is fixed), so web nodes that each build their own
copy from the same checkout publish the same bytes and the same checksums. SHA256SUMS is the
manifest: it is written last, atomically, and the files it lists are the only ones served.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from django.conf import settings

SUMS = "SHA256SUMS"
UNIT = "omnitensor-agent.service"
STAMP = ".source-sha256"
# What goes into the wheel: pyproject.toml reads the README and packages omnitensor_agent/.
SOURCES = ("pyproject.toml", "README.md", "omnitensor_agent")
# Any fixed time will do: wheels built from the same sources are then identical bytes.
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip file can hold

_LINE = re.compile(r"([0-9a-f]{64})  ([A-Za-z0-9][A-Za-z0-9._+-]*)")
_WHEEL = re.compile(r"omnitensor_agent-([0-9A-Za-z.+!]+)-py3-none-any\.whl")
_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Published:
    """What SHA256SUMS lists: the wheel (name, version, checksum) and every file's checksum."""

    directory: Path
    files: dict[str, str]  # name -> sha256
    wheel: str
    version: str

    @property
    def sha256(self) -> str:
        return self.files[self.wheel]

    def path(self, name: str) -> Path | None:
        """The file for SHA256SUMS or an exact name it lists; None for any other name."""
        return self.directory / name if name == SUMS or name in self.files else None


def agent_dir() -> Path:
    return Path(settings.BASE_DIR) / "agent"


def dist_dir() -> Path:
    """Where the built agent lives: AGENT_DIST_DIR, else VAR_DIR/agent-dist."""
    configured = getattr(settings, "AGENT_DIST_DIR", None)
    return Path(configured) if configured else Path(settings.VAR_DIR) / "agent-dist"


def agent_version(source: Path | None = None) -> str:
    text = ((source or agent_dir()) / "omnitensor_agent" / "__init__.py").read_text()
    match = _VERSION.search(text)
    if not match:
        raise BuildError("agent/omnitensor_agent/__init__.py has no __version__")
    return match.group(1)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_sums(text: str) -> dict[str, str]:
    """name -> sha256 for the lines of a SHA256SUMS file (`sha256sum` format); lines that are
    not exactly that, or name a path rather than a file, are ignored."""
    files = {}
    for line in text.splitlines():
        match = _LINE.fullmatch(line)
        if match and match.group(2) not in (".", ".."):
            files[match.group(2)] = match.group(1)
    return files


def published(directory: Path | None = None) -> Published | None:
    """The agent as last built, or None when it was not built (or SHA256SUMS lists no wheel)."""
    directory = directory or dist_dir()
    try:
        files = parse_sums((directory / SUMS).read_text())
    except (OSError, UnicodeDecodeError):
        return None
    wheels = [(name, m.group(1)) for name in files if (m := _WHEEL.fullmatch(name))]
    if len(wheels) != 1:
        return None
    wheel, version = wheels[0]
    return Published(directory=directory, files=files, wheel=wheel, version=version)


def source_digest(source: Path | None = None) -> str:
    """One checksum over everything a build reads, so an unchanged agent is not rebuilt."""
    source = source or agent_dir()
    digest = hashlib.sha256()
    paths = [source / UNIT]
    for name in SOURCES:
        top = source / name
        paths.extend(sorted(p for p in top.rglob("*.py")) if top.is_dir() else [top])
    for path in paths:
        digest.update(path.relative_to(source).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _setuptools_is_enough() -> bool:
    """Whether this interpreter's setuptools satisfies agent/pyproject.toml (>=77), so that pip
    can build without downloading a build environment (offline, and in 2 s instead of 10)."""
    try:
        major = int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return major >= 77


def build(directory: Path | None = None, *, force: bool = False) -> tuple[Published, bool]:
    """Build the wheel into `directory` (default dist_dir()) and publish it with the unit and
    SHA256SUMS. Returns what is published and whether a build ran (False: it was up to date)."""
    directory = directory or dist_dir()
    source = agent_dir()
    digest = source_digest(source)
    current = published(directory)
    stamp = directory / STAMP
    if (
        not force
        and current is not None
        and current.version == agent_version(source)
        and stamp.is_file()
        and stamp.read_text().strip() == digest
        and all((directory / name).is_file() for name in current.files)
    ):
        return current, False

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=directory) as tmp:
        work = Path(tmp)
        # A copy of the sources only: pip builds in place, and agent/ keeps its tree clean
        # (no build/ or egg-info left there, none of an editable install's picked up).
        tree = work / "src"
        tree.mkdir()
        for name in SOURCES:
            origin = source / name
            if origin.is_dir():
                shutil.copytree(
                    origin, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                shutil.copy2(origin, tree / name)
        out = work / "out"
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out)]
        if _setuptools_is_enough():
            command.append("--no-build-isolation")
        command.append(str(tree))
        env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
        done = subprocess.run(  # noqa: S603 - a fixed command line: this Python's pip
            command, cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            raise BuildError(f"pip wheel failed:\n{done.stdout}{done.stderr}")
        version = agent_version(source)
        wheel = f"omnitensor_agent-{version}-py3-none-any.whl"
        built = out / wheel
        if not built.is_file():
            found = ", ".join(p.name for p in out.iterdir()) or "nothing"
            raise BuildError(f"pip wheel wrote {found}, not {wheel}")

        files = {wheel: sha256_of(built), UNIT: sha256_of(source / UNIT)}
        os.replace(built, directory / wheel)
        shutil.copyfile(source / UNIT, work / UNIT)
        os.replace(work / UNIT, directory / UNIT)
        sums = "".join(f"{sha}  {name}\n" for name, sha in sorted(files.items()))
        (work / SUMS).write_text(sums)
        os.replace(work / SUMS, directory / SUMS)  # last: the files it lists are in place
        (work / STAMP).write_text(digest + "\n")
        os.replace(work / STAMP, stamp)

    # Wheels of other versions are no longer listed, so no longer served.
    for old in directory.glob("omnitensor_agent-*.whl"):
        if old.name not in files:
            old.unlink(missing_ok=True)
    result = published(directory)
    if result is None:
        raise BuildError(f"{directory / SUMS} does not list the wheel just built")
    return result, True
