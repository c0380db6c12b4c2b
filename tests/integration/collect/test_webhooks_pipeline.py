"""Vendor webhooks through a real ``segflow serve``: a Stripe charge and a Zendesk ticket land
on the profile of the person's web events (same email) and a segment over both sees them.
The webhook sources and the segment are set up as code (``segflow apply``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from tests.support import webhooks as wh
from tests.support.cli import run
from tests.support.serve import Serve
from tests.support.wait import until

RULE = 'did "Ticket Created" in last 60 days and did "Order Completed" in last 30 days'


def test_stripe_and_zendesk_deliveries_join_the_web_profile_and_its_segment(
    tmp_path: Path, serve_factory: Callable[..., Serve]
) -> None:
    data = tmp_path / "data"
    defs = tmp_path / "defs"
    (defs / "segments").mkdir(parents=True)
    (defs / "webhooks").mkdir()
    (defs / "segments" / "supported_buyers.yaml").write_text(f"rule: '{RULE}'\n")
    (defs / "webhooks" / "billing.yaml").write_text("vendor: stripe\nsecret_env: STRIPE_WH\n")
    (defs / "webhooks" / "helpdesk.yaml").write_text("vendor: zendesk\nsecret_env: ZENDESK_WH\n")
    data.mkdir()
    secrets = {"STRIPE_WH": wh.STRIPE_SECRET, "ZENDESK_WH": wh.ZENDESK_SECRET}
    applied = run(
        "apply", str(defs), "--no-sizes", "--data-dir", str(data), env=secrets, check=True
    ).stdout
    assert "create  webhook billing (stripe)" in applied and "applied 3 changes" in applied

    serve = serve_factory(data=data)  # a source "web" and an admin token, set up in process
    api, web, url = serve.api, serve.collector, serve.url
    identify = {"userId": "u1", "anonymousId": "a1", "traits": {"email": "Ann@Example.com"}}
    assert web.post("/v1/identify", json=identify).status_code == 200
    assert web.post("/v1/page", json={"anonymousId": "a1", "name": "Pricing"}).status_code == 200

    now = int(time.time())
    charge = wh.stripe_charge("int1", "ann@example.com", "cus_int", now)
    r = httpx.post(
        f"{url}/v1/webhooks/stripe", content=charge, headers=wh.stripe_headers(charge, now)
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    ticket = wh.zendesk_ticket(77, "ANN@example.com", 4242, stamp)
    r = httpx.post(
        f"{url}/v1/webhooks/zendesk", content=ticket, headers=wh.zendesk_headers(ticket, now)
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    forged = httpx.post(
        f"{url}/v1/webhooks/zendesk",
        content=ticket,
        headers=wh.zendesk_headers(ticket, now, "x"),
    )
    assert forged.status_code == 401

    members = until(
        lambda: api.get("/api/v1/segments/supported_buyers/members").json()["members"],
        what="the person enters the segment",
    )
    profile = api.get("/api/v1/profiles/user_id:u1").json()
    assert members == [profile["id"]]
    for ident in (
        "email:ann@example.com",
        "stripe_customer_id:cus_int",
        "zendesk_user_id:4242",
    ):
        assert api.get(f"/api/v1/profiles/{ident}").json()["id"] == profile["id"], ident
    listed = api.get("/api/v1/sources").json()["sources"]
    hooks = {s["name"]: s["config"].get("webhook") for s in listed}
    assert hooks["billing"]["vendor"] == "stripe" and "encrypted_secret" not in hooks["billing"]
