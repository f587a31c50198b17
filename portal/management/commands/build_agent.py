"""Build the node agent's wheel that the portal serves under /agent/ (run it as collectstatic)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from portal import agent_dist


class Command(BaseCommand):
    help = (
        "Build the node agent (agent/) into a wheel with its SHA256SUMS and systemd unit, which "
        "the portal serves under /agent/ for the one-line install. Run at deploy time, like "
        "collectstatic; an unchanged agent is not rebuilt."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            type=Path,
            default=None,
            help="directory to publish into (default AGENT_DIST_DIR, else VAR_DIR/agent-dist)",
        )
        parser.add_argument(
            "--force", action="store_true", help="rebuild even if the agent did not change"
        )

    def handle(self, *args, output: Path | None, force: bool, **options):
        try:
            result, built = agent_dist.build(output, force=force)
        except (agent_dist.BuildError, OSError) as exc:
            raise CommandError(f"building the agent failed: {exc}") from None
        verb = "Built" if built else "Up to date:"
        self.stdout.write(
            f"{verb} {result.directory / result.wheel} (agent {result.version}, "
            f"sha256 {result.sha256})"
        )
