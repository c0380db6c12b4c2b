"""``segflow tokens create`` says which token it made, in English (issue #17: "a admin")."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from segflow.cli.main import _register_all, app


@pytest.mark.parametrize(("role", "said"), [("admin", "an admin"), ("editor", "an editor"), ("read", "a read")])  # fmt: skip
def test_tokens_create_names_the_role_with_its_article(
    tmp_path: Path, role: str, said: str
) -> None:
    if not app.registered_groups:
        _register_all()
    result = CliRunner().invoke(
        app, ["tokens", "create", "--role", role, "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert f"created {said} token " in result.output
