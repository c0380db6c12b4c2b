"""A deployment that cannot carry regulations out refuses them instead of queueing them."""

from __future__ import annotations

from pathlib import Path

import pytest

from segflow.config import load_settings
from segflow.privacy.compose import regulations_unsupported
from segflow.privacy.exceptions import RegulationsUnsupported
from segflow.privacy.service import PrivacyService
from segflow.privacy.store import PrivacyStore
from segflow.serving.errors import error_body, status_for


def test_regulations_are_refused_on_a_log_that_can_erase_nothing(tmp_path: Path) -> None:
    settings = load_settings(overrides={"log": {"driver": "pulsar"}})
    reason = regulations_unsupported(settings)
    assert reason is not None and "log.driver = pulsar" in reason
    store = PrivacyStore(tmp_path / "catalog.sqlite")
    service = PrivacyService(store, unsupported=reason)
    with pytest.raises(RegulationsUnsupported) as refused:
        service.submit("delete", [{"type": "email", "value": "a@example.com"}], actor="t")
    assert status_for(refused.value) == 409
    assert error_body(refused.value)["error"]["code"] == "regulations_unsupported"
    assert service.regulations() == []  # nothing queued to wait forever
    store.close()


def test_regulations_are_accepted_on_kafka_which_shreds_keys(tmp_path: Path) -> None:
    assert regulations_unsupported(load_settings(overrides={"log": {"driver": "kafka"}})) is None


def test_regulations_are_accepted_on_the_embedded_log(tmp_path: Path) -> None:
    store = PrivacyStore(tmp_path / "catalog.sqlite")
    service = PrivacyService(store, unsupported=regulations_unsupported(load_settings()))
    reg = service.submit("delete", [{"type": "email", "value": "a@example.com"}], actor="t")
    assert [r.id for r in service.regulations()] == [reg.id]
    store.close()
