"""File destinations write only inside the export root (issue #17): an ``editor`` names the
directory, so without a root an API token could have the server write anywhere it may."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.unit.activate.harness import Harness, mc

from segflow.activate.exceptions import InvalidDestinationError
from segflow.activate.files import ExportRoot
from segflow.activate.payloads import DictProfiles


def harness(tmp_path: Path) -> tuple[Harness, Path]:
    root = tmp_path / "exports"
    root.mkdir()
    lookup = DictProfiles(members={"vip": ["p1"]})
    h = Harness(tmp_path, lambda r: httpx.Response(200), lookup, exports=ExportRoot(root))
    return h, root


def refusal(h: Harness, directory: str) -> str:
    with pytest.raises(InvalidDestinationError) as raised:
        h.service.create_destination({"name": "f", "kind": "file", "directory": directory})
    assert raised.value.field == "directory"
    return raised.value.reason


def test_a_relative_directory_is_placed_under_the_root(tmp_path: Path) -> None:
    h, root = harness(tmp_path)
    dest, _ = h.service.create_destination({"name": "f", "kind": "file", "directory": "crm"})
    assert dest.directory == str(root / "crm")
    inside = str(root / "ads")
    assert h.service.create_destination({"name": "g", "kind": "file", "directory": inside})[0].directory == inside  # fmt: skip


def test_paths_outside_the_root_are_refused_with_the_field(tmp_path: Path) -> None:
    h, root = harness(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (root / "out").symlink_to(tmp_path / "elsewhere")
    assert "outside the export root" in refusal(h, str(tmp_path / "elsewhere"))
    assert str(root) in refusal(h, "/etc")
    assert "'..' is not allowed" in refusal(h, "crm/../../elsewhere")
    assert "symbolic link" in refusal(h, "out/crm")
    assert "symbolic link" in refusal(h, str(root / "out"))
    assert "NUL" in refusal(h, "crm\x00")  # a 400, not a ValueError from the path functions
    h.service.create_destination({"name": "f", "kind": "file", "directory": "crm"})
    with pytest.raises(InvalidDestinationError):
        h.service.update_destination("f", {"directory": str(tmp_path / "elsewhere")})
    assert not list((tmp_path / "elsewhere").iterdir())


def test_a_link_made_after_creation_is_refused_at_write_time(tmp_path: Path) -> None:
    h, root = harness(tmp_path)
    h.service.create_destination({"name": "f", "kind": "file", "directory": "crm"})
    h.service.subscribe("f", "vip")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "crm").symlink_to(outside)  # swapped in after the check at creation
    h.feed.add(mc("p1", "entered", 1))
    h.passes(1)
    (dead,) = h.service.dead_letters("f")
    assert "symbolic link leads out of the export root" in (dead["delivery"].last_error or "")
    with pytest.raises(InvalidDestinationError) as raised:
        h.service.snapshot("f", "vip")
    assert raised.value.field == "directory"
    assert list(outside.iterdir()) == []
