"""Every import arrow points down: a module of ``src/segflow`` imports its own package or a
package on a lower layer, never one on its own layer or above (docs/architecture.md,
"Packages and their layers", holds the same table). The imports are read with ``ast``, so
those under ``if TYPE_CHECKING:`` and inside functions count too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import segflow

SRC = Path(segflow.__file__).parent
DOCS = Path(__file__).parents[2] / "docs" / "architecture.md"

# From the ground up; the packages of one layer do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "clock", "background"),
    ("spec", "db", "telemetry"),
    ("identity", "rules", "profiles"),
    ("config",),
    ("catalog", "log"),
    ("collect", "activate", "stream", "warehouse"),
    ("segments", "syncs", "backup"),
    ("ml", "privacy"),
    ("serving",),
    ("api", "ui"),
    ("demo",),
    ("server",),
    ("cli",),
)
LAYER = {name: n for n, names in enumerate(LAYERS, start=1) for name in names}


def _package(module: str) -> str | None:
    """``segflow.stream.reader`` -> ``stream``; ``segflow`` itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "segflow" else None


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(source: str, module: str, *, is_package: bool) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of a segflow module in ``source``."""
    here = module.split(".")
    package = here if is_package else here[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.append((node.lineno, ".".join([*base, *filter(None, [node.module])])))
            elif node.module:
                found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if m == "segflow" or m.startswith("segflow.")]


def upward_imports(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Each import in ``source`` (the text of ``module``) that reaches a package on the
    module's own layer or above."""
    own = _package(module)
    problems = []
    for line, imported in _imported(source, module, is_package=is_package):
        target = _package(imported)
        if own is None or target is None or target == own:
            continue
        if LAYER[target] >= LAYER[own]:
            problems.append(f"{module}:{line} imports {imported} ({own}: layer {LAYER[own]}, "
                            f"{target}: layer {LAYER[target]})")  # fmt: skip
    return problems


MODULES = sorted(SRC.rglob("*.py"))


def test_every_package_of_segflow_has_a_layer() -> None:
    packages = {p.stem if p.is_file() else p.name for p in SRC.iterdir()}
    packages = {p for p in packages if not p.startswith("_") and p not in {"py", "static"}}
    on_disk = {p for p in packages if (SRC / p).is_dir() or (SRC / f"{p}.py").is_file()}
    assert on_disk - set(LAYER) == set(), "give each new package a layer (here and in the docs)"
    assert set(LAYER) - on_disk == set(), "a package in the table is gone"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_a_module_imports_nothing_from_its_layer_or_above(path: Path) -> None:
    module, source = _module_name(path), path.read_text()
    assert upward_imports(source, module, is_package=path.name == "__init__.py") == []


def test_the_docs_table_is_this_table() -> None:
    text = DOCS.read_text()
    section = text.split("## Packages and their layers", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", section, flags=re.M)
    documented = {int(n): tuple(re.findall(r"`(\w+)`", names)) for n, names in rows}
    assert documented == dict(enumerate(LAYERS, start=1))


def test_upward_and_sideways_imports_are_caught_and_relative_ones_resolved() -> None:
    source = """
from segflow.api.auth import authorizer
from segflow.errors import SegflowError
from segflow.spec import events
from . import normalize
from ..rules import ast
def later():
    import segflow.db.sqlite
"""
    found = upward_imports(source, "segflow.spec.wire")
    assert found == [
        "segflow.spec.wire:2 imports segflow.api.auth (spec: layer 2, api: layer 10)",
        "segflow.spec.wire:6 imports segflow.rules (spec: layer 2, rules: layer 3)",
        "segflow.spec.wire:8 imports segflow.db.sqlite (spec: layer 2, db: layer 2)",
    ]
