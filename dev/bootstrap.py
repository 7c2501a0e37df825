"""Run a project script inside the project's own virtual environment (.venv), creating it if needed.

Used by the README's two commands (the demo and the tests) so that they work on
a machine with nothing but Python 3: the first run makes ``.venv`` and installs
the project (editable) with its test extras; later runs reuse it, reinstalling
only when setup.py or the wanted extras changed.

Three environment variables choose another environment (``.ci/run`` uses them to
run the suite on several Pythons side by side):

    ES_PYTHON   the interpreter that creates the venv (default: the one running
                this); without ES_VENV the venv is then ``.venv-<X.Y>``
    ES_VENV     the venv directory, relative to the checkout or absolute
    ES_EXTRAS   the extras installed (default ``test``; ``test,dev`` adds ruff and mypy)

``python3 dev/bootstrap.py`` only creates or updates the venv and prints its
Python's path.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _base_python() -> str:
    """The interpreter that makes the venv: ES_PYTHON (a path or a name on PATH), else this one."""
    return os.environ.get("ES_PYTHON") or sys.executable


def _venv() -> Path:
    named = os.environ.get("ES_VENV")
    if named:
        return ROOT / named  # an absolute ES_VENV stays absolute
    if not os.environ.get("ES_PYTHON"):
        return ROOT / ".venv"
    try:
        version = subprocess.check_output(
            [_base_python(), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], text=True).strip()
    except (OSError, subprocess.CalledProcessError) as error:
        sys.exit(f"ES_PYTHON={_base_python()} does not run: {error}")
    return ROOT / f".venv-{version}"


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _extras() -> str:
    return os.environ.get("ES_EXTRAS", "test").replace(" ", "")


def _wanted_stamp() -> str:
    return hashlib.sha256((ROOT / "setup.py").read_bytes() + _extras().encode()).hexdigest()


def prepare(venv: Path | None = None) -> Path:
    """Create or update the venv (see the module docstring); return its Python."""
    venv = venv or _venv()
    python = _python(venv)
    stamp = venv / "eventservice-installed"
    if not python.exists():
        print(f"setting up {venv} with {_base_python()} (first run only)...", file=sys.stderr, flush=True)
        subprocess.check_call([_base_python(), "-m", "venv", str(venv)], stdout=sys.stderr)
    if not stamp.exists() or stamp.read_text() != _wanted_stamp():
        for command in (["install", "--quiet", "--upgrade", "pip"], ["install", "--quiet", "-e", f"{ROOT}[{_extras()}]"]):
            subprocess.check_call([str(python), "-m", "pip", *command], stdout=sys.stderr)
        stamp.write_text(_wanted_stamp())
    return python


def ensure_venv() -> None:
    """Re-execute the calling script with the venv's Python, after creating or updating the venv."""
    venv = _venv()
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    python = prepare(venv)
    os.environ["ES_VENV"] = str(venv)  # the re-executed script need not ask ES_PYTHON for its version again
    os.execv(str(python), [str(python), os.path.abspath(sys.argv[0]), *sys.argv[1:]])


if __name__ == "__main__":
    print(prepare())
