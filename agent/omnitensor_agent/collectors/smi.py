"""Running ``nvidia-smi``: shared by the CSV and XML collectors."""

from __future__ import annotations

import shutil
import subprocess

from omnitensor_agent.collectors.base import CollectorError, CollectorUnavailable

TIMEOUT_S = 15.0


def find_nvidia_smi(binary: str = "nvidia-smi") -> str:
    path = shutil.which(binary)
    if path is None:
        raise CollectorUnavailable(
            f"{binary} was not found on PATH (install the NVIDIA driver, or pick another "
            "collector with --collector)"
        )
    return path


def run_nvidia_smi(path: str, args: list[str]) -> str:
    try:
        # A fixed argv with the resolved binary, never a shell: nothing here comes from users.
        proc = subprocess.run(  # noqa: S603
            [path, *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        # A hung driver makes nvidia-smi hang too; that is a bad tick, not a missing tool.
        raise CollectorError(f"nvidia-smi did not answer within {TIMEOUT_S:.0f} s") from exc
    except OSError as exc:
        raise CollectorUnavailable(f"cannot run {path}: {exc}") from exc
    if proc.returncode != 0:
        # e.g. "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"
        message = (proc.stdout or proc.stderr).strip().splitlines()
        detail = message[0] if message else f"exit status {proc.returncode}"
        raise CollectorUnavailable(f"nvidia-smi failed: {detail}")
    return proc.stdout
