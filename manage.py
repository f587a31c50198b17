#!/usr/bin/env python
"""Django's command-line utility for the OmniTensor contributor portal."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.core.management import execute_from_command_line

    from portal.lib.recursion import restore_recursion_limit

    restore_recursion_limit()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
