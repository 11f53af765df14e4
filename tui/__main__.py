"""`python -m tui` runs `hhg-tui`."""
import sys

from .app import main

sys.exit(main())
