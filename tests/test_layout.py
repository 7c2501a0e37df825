"""Offline check of the package's dependency direction (the four wings), read from the source, nothing imported.

    client -> pyro -> core        server -> pyro -> core
core (subjects, subscriptions, config, event) imports nothing from Pyro5; pyro is the one seam to Pyro5 and
knows neither server nor client; client and server never import each other. A new module anywhere in a wing
is checked as soon as it exists.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "eventservice"

#: wing -> the top-level names its modules must not import
FORBIDDEN = {
    "core": ("Pyro5", "eventservice.pyro", "eventservice.server", "eventservice.client"),
    "pyro": ("eventservice.server", "eventservice.client"),
    "client": ("eventservice.server",),
    "server": ("eventservice.client",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it, as absolute dotted names (relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            names.add(stem)
            names.update(f"{stem}.{alias.name}" for alias in node.names)  # `from . import wire` names a module
    return names


def _is_within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(wing: str) -> list[str]:
    """"<module> imports <name>" for each import of a module in ``wing`` that FORBIDDEN rules out."""
    modules = sorted((PACKAGE / wing).rglob("*.py"))
    assert modules, f"{PACKAGE / wing} has no modules"
    return sorted({f"{path.relative_to(PACKAGE.parent)} imports {name}"
                   for path in modules for name in imported_names(path)
                   for prefix in FORBIDDEN[wing] if _is_within(name, prefix)})


@pytest.mark.parametrize("wing", sorted(FORBIDDEN))
def test_wing_imports_only_in_the_allowed_direction(wing):
    """No module of the wing imports what the layout forbids it (see the module docstring)."""
    assert violations(wing) == []


def test_the_checker_sees_relative_and_nested_imports(tmp_path, monkeypatch):
    """The checker itself: relative imports are resolved, and imports inside functions count."""
    wing = tmp_path / "eventservice" / "core"
    wing.mkdir(parents=True)
    (wing / "__init__.py").write_text("")
    (wing / "sneaky.py").write_text("from ..server import service\n\ndef later():\n    import Pyro5.core\n")
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path / "eventservice")
    assert violations("core") == ["eventservice/core/sneaky.py imports Pyro5.core",
                                  "eventservice/core/sneaky.py imports eventservice.server",
                                  "eventservice/core/sneaky.py imports eventservice.server.service"]
