"""Webhook ingest: requests/s per vendor through ``/v1/webhooks/{vendor}`` (signature check,
mapping, durable append included), against plain ``/v1/track`` in the same server and run.

One ``segflow serve --single-process`` pinned to core 0, the load generator (this process) on
core 1. Every request carries one event with a unique vendor event id, signed as the vendor
signs it at the moment it is sent (tests/support/webhooks.py). Rounds interleave the paths
(track, stripe, zendesk, ...); reported: median requests/s of each and the median of the
per-round ratios to ``/v1/track``.

Run: ``python -m benchmarks.webhooks [--rounds 5] [--seconds 1]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from tests.support import webhooks as wh

from benchmarks.common import commit, machine, median
from benchmarks.ingest import free_port, wait_ready
from benchmarks.loadgen import Outcome, exchange

Make = Callable[[int], bytes]


def _request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\n{lines}Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def makers(keys: dict[str, str], sendgrid: wh.SendgridKey) -> dict[str, Make]:
    """``path name -> (i -> request bytes)``, each request one unique event signed now."""
    mailchimp = f"/v1/webhooks/mailchimp?secret={wh.MAILCHIMP_SECRET}"
    hubspot_path = "/v1/webhooks/hubspot"

    def track(i: int) -> bytes:
        body = json.dumps({"userId": f"u{i}", "event": "Order Completed", "messageId": f"t{i}",
                           "context": {"traits": {"email": f"p{i}@example.com"}}}).encode()  # fmt: skip
        headers = {"Authorization": _basic(keys["web"]), "Content-Type": "application/json"}
        return _request("/v1/track", body, headers)

    def stripe(i: int) -> bytes:
        body = wh.stripe_charge(f"b{i}", f"p{i}@example.com", f"cus_{i}", int(time.time()))
        return _request("/v1/webhooks/stripe", body, wh.stripe_headers(body, int(time.time())))

    def zendesk(i: int) -> bytes:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = wh.zendesk_ticket(i, f"p{i}@example.com", i, stamp)
        headers = {**wh.zendesk_headers(body, int(time.time())),
                   "x-zendesk-webhook-invocation-id": f"inv-{i}"}  # fmt: skip
        return _request("/v1/webhooks/zendesk", body, headers)

    def hubspot(i: int) -> bytes:
        now_ms = int(time.time() * 1000)
        body = json.dumps([{"eventId": i, "portalId": 1, "occurredAt": now_ms, "objectId": i,
                            "subscriptionType": "contact.propertyChange", "propertyName": "email",
                            "propertyValue": f"p{i}@example.com"}]).encode()  # fmt: skip
        headers = wh.hubspot_headers(body, now_ms, f"http://bench{hubspot_path}")
        return _request(hubspot_path, body, headers)

    def sendgrid_(i: int) -> bytes:
        body = json.dumps([{"email": f"p{i}@example.com", "timestamp": int(time.time()),
                            "event": "open", "sg_event_id": f"sg{i}"}]).encode()  # fmt: skip
        return _request("/v1/webhooks/sendgrid", body, sendgrid.headers(body, int(time.time())))

    def salesforce(i: int) -> bytes:
        body = wh.salesforce_message(wh.SALESFORCE_ORG, f"N{i:017d}")
        return _request("/v1/webhooks/salesforce", body, {"Content-Type": "text/xml"})

    def mailchimp_(i: int) -> bytes:
        body = urlencode({"type": "subscribe", "fired_at": "2026-12-06 08:00:00",
                          "data[id]": f"m{i}", "data[email]": f"p{i}@example.com",
                          "data[list_id]": "l1"}).encode()  # fmt: skip
        return _request(mailchimp, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def generic(i: int) -> bytes:
        import hashlib
        import hmac

        body = json.dumps({"id": f"g{i}", "kind": "Plan Upgraded",
                           "user": {"email": f"p{i}@example.com"}}).encode()  # fmt: skip
        sig = "sha256=" + hmac.new(b"generic-secret", body, hashlib.sha256).hexdigest()
        headers = {"Authorization": _basic(keys["generic"]), "x-signature-256": sig}
        return _request("/v1/webhooks/generic", body, headers)

    return {"track": track, "stripe": stripe, "zendesk": zendesk, "hubspot": hubspot,
            "sendgrid": sendgrid_, "salesforce": salesforce, "mailchimp": mailchimp_,
            "generic": generic}  # fmt: skip


def load(port: int, make: Make, start: int, seconds: float, connections: int) -> Outcome:
    """Closed loop: ``connections`` keep-alive connections sending as fast as answered."""
    counter = iter(range(start, start + 10_000_000))

    async def worker(deadline: float, out: Outcome) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        try:
            while time.perf_counter() < deadline:
                status = await exchange(reader, writer, make(next(counter)))
                out.ok += status == 200
                out.failed += status != 200
        finally:
            writer.close()

    async def main() -> Outcome:
        out, begin = Outcome(), time.perf_counter()
        await asyncio.gather(*(worker(begin + seconds, out) for _ in range(connections)))
        out.seconds = time.perf_counter() - begin
        return out

    return asyncio.run(main())


def setup(data: Path, sendgrid: wh.SendgridKey) -> dict[str, str]:
    """The sources, configured in process before the server starts (no CLI round trips)."""
    from segflow.activate.secretbox import SecretBox
    from segflow.collect.catalog import SourceCatalog
    from segflow.collect.webhooks.config import GenericMapping
    from segflow.collect.webhooks.manage import WebhookSettings, configure_webhook

    data.mkdir(parents=True)
    catalog, box = SourceCatalog(data / "catalog.sqlite"), SecretBox.open(data)
    settings = {
        "stripe": WebhookSettings(vendor="stripe", secret=wh.STRIPE_SECRET),
        "zendesk": WebhookSettings(vendor="zendesk", secret=wh.ZENDESK_SECRET),
        "hubspot": WebhookSettings(vendor="hubspot", secret=wh.HUBSPOT_SECRET),
        "sendgrid": WebhookSettings(vendor="sendgrid", public_key=sendgrid.public),
        "salesforce": WebhookSettings(vendor="salesforce", organization_id=wh.SALESFORCE_ORG),
        "mailchimp": WebhookSettings(vendor="mailchimp", secret=wh.MAILCHIMP_SECRET),
        "generic": WebhookSettings(
            vendor="generic", secret="generic-secret",
            mapping=GenericMapping(event="kind", message_id="id", email="user.email"),
        ),
    }  # fmt: skip
    keys = {"web": catalog.create("web")[1]}
    for name, wanted in settings.items():
        keys[name] = catalog.create(name)[1]
        configure_webhook(catalog, name, wanted, box)
    catalog.close()
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-webhooks-"))
    sendgrid = wh.SendgridKey()
    keys = setup(root / "data", sendgrid)
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "segflow.cli.main", "serve",
         "--single-process", "--data-dir", str(root / "data"), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    paths = makers(keys, sendgrid)
    rps: dict[str, list[float]] = {name: [] for name in paths}
    ratios: dict[str, list[float]] = {name: [] for name in paths}
    failed: dict[str, int] = dict.fromkeys(paths, 0)
    start = 0
    try:
        wait_ready(port)
        for make in paths.values():  # warm-up
            start += 1_000_000
            load(port, make, start, 0.3, args.connections)
        for _ in range(args.rounds):
            for name, make in paths.items():
                start += 1_000_000
                out = load(port, make, start, args.seconds, args.connections)
                rps[name].append(out.ok / out.seconds)
                failed[name] += out.failed
            for name in paths:
                ratios[name].append(rps[name][-1] / rps["track"][-1])
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(root, ignore_errors=True)
    load_avg = os.getloadavg()[0]
    print(f"machine: {machine()}; shared, load {load_avg:.1f}; server on core 0, load on core 1; "
          f"{args.rounds} rounds x {args.seconds}s, {args.connections} connections; failed {failed}")  # fmt: skip
    print("| date | commit | path | req/s (median) | vs `/v1/track` (median of per-round ratios) |")
    print("| --- | --- | --- | --- | --- |")
    for name in paths:
        label = "/v1/track" if name == "track" else f"/v1/webhooks/{name}"
        print(f"| {datetime.now(UTC):%Y-%m-%d} | {commit()} | `{label}` | {median(rps[name]):,.0f} | "
              f"{median(ratios[name]):.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
