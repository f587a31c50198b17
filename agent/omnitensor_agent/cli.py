"""``omnitensor-agent`` command line: enroll, run, status, set-token, verify."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from omnitensor_agent import __version__
from omnitensor_agent.api import NetworkError, PortalClient
from omnitensor_agent.collectors import CHOICES, Collector, CollectorError, CollectorUnavailable
from omnitensor_agent.collectors import make_collector as _make_collector
from omnitensor_agent.config import (
    AgentConfig,
    ConfigError,
    default_config_path,
    default_spool_path,
)
from omnitensor_agent.proof import CHOICES as PROOF_BACKENDS
from omnitensor_agent.proof import BackendUnavailable, DeviceNotFound, make_backend
from omnitensor_agent.runner import Runner, inventory, readings_to_samples
from omnitensor_agent.sender import AuthError
from omnitensor_agent.spool import Spool

log = logging.getLogger("omnitensor_agent")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3


class UserError(RuntimeError):
    """A problem the user can fix; printed as one plain line, no traceback."""


def _add_collector_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collector",
        choices=CHOICES,
        default=None,
        help="where readings come from (default: the config's, else auto = nvml then nvidia-smi)",
    )
    parser.add_argument(
        "--simulate", type=int, metavar="N", help="simulate N GPUs (implies --collector simulate)"
    )
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    parser.add_argument(
        "--dcgm-url", metavar="URL", help="dcgm-exporter metrics URL for --collector dcgm"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omnitensor-agent", description="Report this machine's GPUs to the OmniTensor portal."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    enroll = sub.add_parser("enroll", help="register this machine with an enrollment code")
    enroll.add_argument(
        "--portal", required=True, help="portal base URL, e.g. https://portal.example"
    )
    enroll.add_argument("--code", required=True, help="single-use enrollment code from the portal")
    enroll.add_argument("--force", action="store_true", help="overwrite an existing config")

    run = sub.add_parser("run", help="sample and report until stopped")
    run.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this long (for testing)"
    )
    run.add_argument(
        "--proof-backend",
        choices=PROOF_BACKENDS,
        default="auto",
        help="where proof-of-GPU challenges are solved (default auto: torch with CUDA, else "
        "cupy with CUDA, else numpy on the CPU; simulated GPUs always use numpy)",
    )
    # For demos only: a simulated machine that never answers, so failed proofs show.
    run.add_argument("--ignore-challenges", action="store_true", help=argparse.SUPPRESS)

    status = sub.add_parser("status", help="show what would be reported now and what is queued")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    set_token = sub.add_parser(
        "set-token", help="store the new token after 'Rotate token' in the portal"
    )
    set_token.add_argument("token", help="the node token the portal showed once")

    verify = sub.add_parser(
        "verify", help="solve a random proof-of-GPU challenge locally and check the answer"
    )
    verify.add_argument("--backend", choices=PROOF_BACKENDS, default="auto")
    verify.add_argument(
        "--n", type=int, help="matrix size, a multiple of 64 (default 8192; 1024 on numpy)"
    )
    verify.add_argument(
        "--rounds", type=int, help="products (default: about 3 s of work; 1 on numpy)"
    )
    verify.add_argument("--device", metavar="GPU-UUID|INDEX", help="which GPU (default: current)")
    verify.add_argument("--checks", type=int, default=8, help="rows to recompute (default 8)")
    verify.add_argument("--json", action="store_true", help="machine-readable output")

    for command in (enroll, run, status, set_token):
        command.add_argument(
            "--config",
            type=Path,
            default=None,
            help=f"config file (default {default_config_path()})",
        )
        command.add_argument(
            "--spool",
            type=Path,
            default=None,
            help=f"spool database (default {default_spool_path()})",
        )
        _add_collector_args(command)
    return parser


def _collector(args: argparse.Namespace, config: AgentConfig | None = None) -> Collector:
    kind = args.collector or ("simulate" if args.simulate else None)
    kind = kind or (config.collector if config else "auto")
    # Flags win; otherwise what enrollment used, so `run` reports the GPUs it enrolled.
    if config:
        args.simulate = args.simulate or config.simulate
        args.dcgm_url = args.dcgm_url or config.dcgm_url
    if kind == "simulate" and not args.simulate:
        args.simulate = 1
    try:
        return _make_collector(kind, simulate=args.simulate, seed=args.seed, dcgm_url=args.dcgm_url)
    except (CollectorUnavailable, ValueError) as exc:
        raise UserError(str(exc)) from None


def _collect(collector: Collector) -> list[Any]:
    try:
        return collector.collect()
    except (CollectorError, CollectorUnavailable) as exc:
        raise UserError(f"reading GPUs failed: {exc}") from None


def _spool_path(args: argparse.Namespace, config: AgentConfig | None) -> Path:
    if args.spool:
        return args.spool
    if config and config.spool_path:
        return Path(config.spool_path)
    return default_spool_path()


def cmd_enroll(args: argparse.Namespace) -> int:
    path = args.config or default_config_path()
    if path.exists() and not args.force:
        raise UserError(f"{path} exists (this machine is enrolled); use --force to replace it")
    collector = _collector(args)
    try:
        readings = _collect(collector)
    finally:
        collector.close()
    gpus = inventory(readings)
    if not gpus:
        raise UserError("no GPU with a memory reading was found; nothing to enroll")
    try:
        client = PortalClient(args.portal)
        resp = client.enroll(args.code, socket.gethostname(), gpus)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except NetworkError as exc:
        raise UserError(f"cannot reach the portal: {exc}") from None
    if resp.status != 201 or not isinstance(resp.body, dict) or "node_token" not in resp.body:
        raise UserError(f"enrollment refused ({resp.status} {resp.error})")
    body = resp.body
    config = AgentConfig(
        portal=client.portal,
        node_id=str(body["node_id"]),
        node_token=body["node_token"],
        sample_interval_s=body.get("sample_interval_s") or 10,
        report_interval_s=body.get("report_interval_s") or 30,
        collector=collector.name,
        simulate=args.simulate if collector.name == "simulate" else None,
        dcgm_url=args.dcgm_url if collector.name == "dcgm" else None,
        spool_path=str(args.spool) if args.spool else None,
    )
    config.save(path)
    print(f"Enrolled node {config.node_id} with {len(gpus)} GPU(s); config written to {path}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    path = args.config or default_config_path()
    try:
        config = AgentConfig.load(path)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    collector = _collector(args, config)
    simulated = collector.name == "simulate"
    if args.ignore_challenges and not simulated:
        collector.close()
        raise UserError("--ignore-challenges is only for simulated GPUs (--simulate)")
    backend: Any = args.proof_backend
    if backend in ("torch", "cupy") and not simulated:
        try:  # asked for by name: fail now, not at the first challenge
            backend = make_backend(backend)
        except BackendUnavailable as exc:
            collector.close()
            raise UserError(f"proof backend {args.proof_backend}: {exc}") from None
    runner = Runner(
        config,
        collector,
        str(_spool_path(args, config)),
        duration_s=args.duration,
        proof_backend=backend,
        ignore_challenges=args.ignore_challenges,
    )

    def stop(signum: int, _frame: object) -> None:
        log.info("received signal %d: stopping after a last delivery attempt", signum)
        runner.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "omnitensor-agent %s reporting to %s with %s", __version__, config.portal, collector.name
    )
    try:
        return runner.run()
    finally:
        collector.close()


def cmd_status(args: argparse.Namespace) -> int:
    path = args.config or default_config_path()
    try:
        config: AgentConfig | None = AgentConfig.load(path)
    except ConfigError:
        config = None
    collector = _collector(args, config)
    try:
        readings = _collect(collector)
    finally:
        collector.close()
    spool_path = _spool_path(args, config)
    queue: dict[str, int] = {}
    if spool_path.exists():
        with Spool(spool_path) as spool:
            queue = spool.stats()
    report = {
        "enrolled": config is not None,
        "portal": config.portal if config else None,
        "node_id": config.node_id if config else None,
        "collector": collector.name,
        "gpus": inventory(readings),
        "samples": readings_to_samples(readings),
        "spool": str(spool_path),
        "queue": queue,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    where = f"node {config.node_id} at {config.portal}" if config else "not enrolled"
    print(f"omnitensor-agent {__version__}: {where}; collector {collector.name}")
    for reading in readings:
        util = "n/a" if reading.utilization_gpu_pct is None else f"{reading.utilization_gpu_pct}%"
        print(
            f"  {reading.uuid}  {reading.name}  mem {reading.memory_used_mib}/"
            f"{reading.memory_total_mib} MiB  util {util}  temp {reading.temperature_c} C  "
            f"power {reading.power_w} W" + (f"  job {reading.job_id}" if reading.job_id else "")
        )
    if queue:
        print(
            f"queued: {queue['queued']} samples ({queue['in_pending_batch']} in a pending batch); "
            f"sent {queue['sent_total']}, dropped {queue['dropped_total']} (spool full), "
            f"rejected {queue['rejected_total']}"
        )
    else:
        print(f"queued: nothing (no spool at {spool_path})")
    return EXIT_OK


def cmd_set_token(args: argparse.Namespace) -> int:
    path = args.config or default_config_path()
    try:
        config = AgentConfig.load(path)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    token = args.token.strip()
    if not token.startswith("omt_"):
        raise UserError("that is not a node token (it starts with omt_)")
    config.node_token = token
    config.save(path)
    print(f"New token stored in {path}; restart the agent (systemctl restart omnitensor-agent).")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from omnitensor_agent.proof import selftest

    try:
        backend = make_backend(args.backend)
        report = selftest.run(
            backend, n=args.n, rounds=args.rounds, device=args.device, checks=args.checks
        )
    except (BackendUnavailable, DeviceNotFound, ValueError) as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(f"backend     {report.backend}")
        print(f"device      {report.device}")
        print(f"n           {report.n}")
        print(f"rounds      {report.rounds}")
        print(f"seconds     {report.seconds:.3f}")
        print(f"int8 TOPS   {report.tops:.3f}")
        print(f"checked     {report.checked_rows} random rows and a known answer")
        for problem in report.problems:
            print(f"  mismatch: {problem}")
        print("PASS" if report.passed else "FAIL")
    return EXIT_OK if report.passed else EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = {
        "enroll": cmd_enroll,
        "run": cmd_run,
        "status": cmd_status,
        "set-token": cmd_set_token,
        "verify": cmd_verify,
    }[args.command]
    try:
        return handler(args)
    except UserError as exc:
        print(f"omnitensor-agent: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except AuthError as exc:
        print(f"omnitensor-agent: {exc}", file=sys.stderr)
        return EXIT_AUTH
