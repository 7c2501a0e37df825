#!/usr/bin/env python3
"""Run the test suite: ``python3 tests/run.py [pytest options]`` (sets up .venv on first use)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dev"))
import bootstrap

bootstrap.ensure_venv()

import pytest  # noqa: E402

sys.exit(pytest.main([str(Path(__file__).resolve().parent), *sys.argv[1:]]))
