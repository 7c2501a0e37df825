"""``python -m eventservice.server``: the same as ``es``."""
import sys

from .cli import main

sys.exit(main())
