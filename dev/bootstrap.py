"""Run a project script inside the project's own virtual environment (.venv), creating it if needed.

Used by the README's two commands (the demo and the tests) so that they work on
a machine with nothing but Python 3: the first run makes ``.venv`` and installs
the project with its test extras; later runs reuse it, reinstalling only when
setup.py changed.
"""
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / "eventservice-installed"


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _wanted_stamp() -> str:
    return hashlib.sha256((ROOT / "setup.py").read_bytes()).hexdigest()


def ensure_venv() -> None:
    """Re-execute the calling script with .venv's Python, after creating or updating .venv."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not _python().exists():
        print(f"setting up {VENV} (first run only)...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not STAMP.exists() or STAMP.read_text() != _wanted_stamp():
        subprocess.check_call([str(_python()), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        subprocess.check_call([str(_python()), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"])
        STAMP.write_text(_wanted_stamp())
    script = os.path.abspath(sys.argv[0])
    os.execv(str(_python()), [str(_python()), script, *sys.argv[1:]])
