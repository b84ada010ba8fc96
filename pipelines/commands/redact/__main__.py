"""`python -m pipelines.commands.redact`: the kis-redact command."""

import sys

from pipelines.commands.redact.cli import main

if __name__ == "__main__":
    sys.exit(main())
