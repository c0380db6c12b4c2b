"""Definitions as YAML files: plan, apply (all or nothing, any order), export round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from segflow.catalog.audit import AuditLog
from segflow.errors import ValidationError
from segflow.segments import files
from segflow.segments.service import SegmentService
from segflow.segments.store import DefinitionStore


def _service(tmp_path: Path) -> SegmentService:
    catalog = tmp_path / "catalog.sqlite"
    return SegmentService(DefinitionStore(catalog), audit=AuditLog(catalog))


def _write(root: Path, kind: str, name: str, rule: str) -> None:
    (root / kind).mkdir(parents=True, exist_ok=True)
    (root / kind / f"{name}.yaml").write_text(f"rule: '{rule}'\n")


def test_apply_creates_in_dependency_order_updates_and_prunes(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    svc.put_segment("old", "true")
    svc.put_segment("keep", 'did "A"')
    defs = tmp_path / "defs"
    _write(defs, "segments", "a_uses_b", 'in segment "b_uses_trait"')  # sorts before its dependency
    _write(defs, "segments", "b_uses_trait", "computed spent >= 10")
    _write(defs, "segments", "keep", 'did "A" at least 2 times')
    _write(defs, "traits", "spent", 'sum(revenue of "Order Completed")')
    changes = files.plan(svc, defs, prune=True)
    assert sorted((c.action, c.name) for c in changes) == [
        ("create", "a_uses_b"), ("create", "b_uses_trait"), ("create", "spent"),
        ("delete", "old"), ("update", "keep"),
    ]  # fmt: skip
    assert files.apply(svc, changes, actor="test") == 5
    assert sorted(svc.segments()) == ["a_uses_b", "b_uses_trait", "keep"]
    assert svc.get("segment", "keep").version == 2
    assert [c.action for c in files.plan(svc, defs, prune=True)] == ["same"] * 4
    assert {e.actor for e in svc.audit.list()} == {"system", "test"}  # type: ignore[union-attr]

    out = tmp_path / "out"
    assert len(files.export(svc, out)) == 4
    fresh = _service(tmp_path / "fresh")
    files.apply(fresh, files.plan(fresh, out), actor="test")
    assert fresh.segments() == svc.segments() and fresh.traits() == svc.traits()


def test_a_plan_that_does_not_compile_applies_nothing(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    defs = tmp_path / "defs"
    _write(defs, "segments", "good", 'did "A"')
    _write(defs, "segments", "loop", 'in segment "loop"')
    with pytest.raises(ValidationError, match="cycle"):
        files.plan(svc, defs)
    (defs / "segments" / "bad.yaml").write_text("description: no rule here\n")
    with pytest.raises(ValidationError, match="rule"):
        files.read_directory(defs)
    assert svc.segments() == {}
