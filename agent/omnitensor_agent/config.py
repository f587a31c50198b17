"""The agent's config file: portal URL, node id and token, intervals.

JSON, written atomically with mode 0600 in a 0700 directory: it holds the node token,
which is a bearer credential. Default location follows the XDG base-directory spec
(``$XDG_CONFIG_HOME/omnitensor-agent/config.json``); the spool goes under
``$XDG_STATE_HOME``. The systemd unit passes explicit paths instead.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

APP = "omnitensor-agent"
DEFAULT_SAMPLE_INTERVAL_S = 10
DEFAULT_REPORT_INTERVAL_S = 30


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    return Path.home() / fallback


def default_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / APP / "config.json"


def default_spool_path() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / APP / "spool.sqlite3"


class ConfigError(RuntimeError):
    pass


@dataclass
class AgentConfig:
    portal: str
    node_id: str
    node_token: str
    sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S
    report_interval_s: float = DEFAULT_REPORT_INTERVAL_S
    collector: str = "auto"
    simulate: int | None = None  # GPU count when collector is "simulate"
    dcgm_url: str | None = None
    spool_path: str | None = None

    @classmethod
    def load(cls, path: Path) -> AgentConfig:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"no config at {path}: run `omnitensor-agent enroll --portal URL --code CODE` first"
            ) from None
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ConfigError(f"{path} lacks a required setting: {exc}") from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Write a private temp file then rename: the token is never world-readable, not even
        # for a moment, and a crash never leaves a half-written config.
        fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(asdict(self), fh, indent=2)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
