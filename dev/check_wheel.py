#!/usr/bin/env python3
"""Check what ``pip install .`` gives a user: build the wheel, install it (not editable) into a fresh venv, use it.

    python3 dev/check_wheel.py [--python INTERPRETER]

Fails (exit 1, saying what is wrong) unless
  - every .py file under eventservice/ in this checkout, and py.typed, are in the wheel
    (a new subpackage cannot go missing);
  - in a fresh venv with only the wheel and its dependencies, every module of the
    installed package imports (walked with pkgutil), from the venv and not from
    this checkout; a module that needs an optional extra may instead fail with an
    ImportError that tells the user which extra to install;
  - the installed ``es --help`` runs and prints its usage;
  - with every optional extra installed too, every module imports.
Needs a package index (the build backend and the dependencies are installed from it),
which is why .ci/run runs it rather than the test suite, whose tests stay on 127.0.0.1.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import typing as t
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "eventservice"

# runs inside the fresh venv: import every module of the installed package, say where it came from
IMPORT_ALL = r"""
import importlib, pkgutil, sys
from pathlib import Path
import eventservice
home = Path(eventservice.__file__).resolve().parent
assert Path(sys.prefix).resolve() in home.parents, f"eventservice imported from {home}, not from the venv"
assert (home / "py.typed").is_file(), "py.typed is not installed"
names = [info.name for info in pkgutil.walk_packages(eventservice.__path__, "eventservice.")
         if info.name.rsplit(".", 1)[-1] != "__main__"]  # importing a __main__ would run it
strict = sys.argv[1] == "strict"
needs_extra = []
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as error:
        if strict or "pip install 'eventservice[" not in str(error):
            raise
        needs_extra.append(name)
print(len(names) + 1 - len(needs_extra), len(needs_extra))
"""

#: the optional extras a user may install (setup.py's extras_require, less the test and dev tools)
RUNTIME_EXTRAS = ("fast", "monitoring", "redis")


def _run(command: list[str], **kwargs: t.Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, text=True, capture_output=True, **kwargs)


def check(python: str) -> list[str]:
    """The problems found (none: the installed package works) for a venv made by ``python``."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="eventservice-wheel-") as folder:
        work = Path(folder)
        _run([python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "dist"), str(ROOT)])
        [wheel] = (work / "dist").glob(f"{PACKAGE}-*.whl")
        shipped = set(zipfile.ZipFile(wheel).namelist())
        sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / PACKAGE).rglob("*.py")
                   if "__pycache__" not in path.parts}
        problems += [f"{name} is not in {wheel.name}" for name in sorted(sources - shipped)]
        if f"{PACKAGE}/py.typed" not in shipped:
            problems.append(f"{PACKAGE}/py.typed is not in {wheel.name}")

        venv = work / "venv"
        _run([python, "-m", "venv", str(venv)])
        bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
        _run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)])
        # run from the temporary folder, so that this checkout is not on sys.path
        imported = subprocess.run([str(bin_dir / "python"), "-c", IMPORT_ALL, "lenient"], cwd=work,
                                  text=True, capture_output=True)
        if imported.returncode != 0:
            problems.append(f"importing the installed modules failed:\n{imported.stderr.strip()}")
        usage = subprocess.run([str(bin_dir / "es"), "--help"], cwd=work, text=True, capture_output=True)
        if usage.returncode != 0 or not usage.stdout.startswith("usage: es"):
            problems.append(f"es --help exited {usage.returncode}:\n{usage.stdout}{usage.stderr}".strip())
        _run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[{','.join(RUNTIME_EXTRAS)}]"])
        with_extras = subprocess.run([str(bin_dir / "python"), "-c", IMPORT_ALL, "strict"], cwd=work,
                                     text=True, capture_output=True)
        if with_extras.returncode != 0:
            problems.append(f"with the extras {RUNTIME_EXTRAS} installed, importing the installed modules failed:\n"
                            f"{with_extras.stderr.strip()}")
        if not problems:
            plain, optional = imported.stdout.split()
            print(f"check_wheel: {wheel.name} ({len(shipped)} files) installed with {python}: "
                  f"{plain} modules import, {optional} more ask for an extra by name; es --help runs; "
                  f"with the extras {', '.join(RUNTIME_EXTRAS)} all {with_extras.stdout.split()[0]} import")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter for the build and the venv (default: this one)")
    options = parser.parse_args(argv)
    try:
        problems = check(options.python)
    except subprocess.CalledProcessError as error:
        problems = [f"{' '.join(map(str, error.cmd))} failed (exit {error.returncode}):\n{error.stdout}{error.stderr}"]
    for problem in problems:
        print(f"check_wheel: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
