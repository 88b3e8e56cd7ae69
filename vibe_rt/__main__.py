"""``python -m vibe_rt`` runs the CLI."""

import sys

from .cli import main

sys.exit(main())
