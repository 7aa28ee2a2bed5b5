"""Entry point of the PyInstaller bundle."""

import sys

from loupe.cli import main

sys.exit(main())
