"""`python -m core <command> ...` is `llamafactory-cli <command> ...`."""

import sys

from core.cli import main

sys.exit(main())
