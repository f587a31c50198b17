"""``python -m omnitensor_agent`` runs the same CLI as the ``omnitensor-agent`` script."""

import sys

from omnitensor_agent.cli import main

sys.exit(main())
