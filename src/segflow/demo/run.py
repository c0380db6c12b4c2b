"""``segflow demo``: a fresh segflow, a simulated shop driving its real HTTP API, the whole story.

Steps (each printed as it happens):

1. a fresh data directory with a source (write key) and an admin token;
2. ``segflow serve`` in a child process on loopback (the demo's receiver allowed by the SSRF guard);
3. a local "ad platform" webhook receiver registered as a destination, subscribed to the story's
   segments with the traits a "Complete the look" ad needs;
4. the docs' example segments and computed traits, created through ``/api/v1/segments``;
5. weeks of history for thousands of simulated people, sent through ``/v1/batch`` with their
   original timestamps (the backfill), and the story of ``anon_123xyz`` starting 58 minutes ago,
   so that her cart is abandoned (one hour, no order) a couple of minutes into the demo, with no
   new event;
6. once the warehouse has caught up: the models (clusters, propensities, LTV) through
   ``/api/v1/models/{name}/runs``, then the segments on their clusters and scores — the
   cluster model and the bundle model are applied in the stream (``definitions.LIVE_MODELS``):
   ``footwear_prospect`` is the discovered cluster of today's footwear browsers, which a new
   visitor joins with her first footwear page views;
7. live traffic at ``--rate`` events/s with a status line, until Ctrl-C or ``--duration``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from segflow.clock import MINUTE_MS
from segflow.demo import definitions
from segflow.demo.receiver import AdPlatform
from segflow.demo.simulator import STORY_ANONYMOUS_ID, Message, Simulator, story

BATCH = 250
MODELS = ("customer_segments", "bundle_72h", "purchase_7d", "churn", "ltv")
STORY_SEGMENTS = ("footwear_prospect", "abandoned_cart", "high_bundle_propensity")


@dataclass
class DemoOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    people: int = 2000
    days: int = 42
    rate: float = 20.0
    seed: int = 42
    duration_s: float | None = None  # None: until interrupted
    open_browser: bool = True
    keep: bool = False  # keep an existing data directory instead of starting fresh


@dataclass
class DemoResult:
    """What the demo did (printed at the end; read by the tests)."""

    url: str = ""
    token: str = ""
    events_sent: int = 0
    segments: dict[str, int] = field(default_factory=dict)
    story_segments: list[str] = field(default_factory=list)
    model_runs: dict[str, str] = field(default_factory=dict)
    webhooks: list[dict[str, Any]] = field(default_factory=list)


def free_port(host: str, preferred: int) -> int:
    """``preferred`` when it is free, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


class Demo:
    """Runs the demo; :meth:`run` returns a :class:`DemoResult`."""

    def __init__(self, options: DemoOptions, console: Console | None = None) -> None:
        self.o = options
        self.console = console or Console()
        self.result = DemoResult()
        self.platform = AdPlatform()
        self.server: subprocess.Popen[bytes] | None = None
        self.sim = Simulator(people=options.people, seed=options.seed)
        self.on_ready: Callable[[str], object] | None = None  # e.g. open a browser on the URL

    # -- setup -------------------------------------------------------------------------------
    def _prepare(self) -> tuple[str, str]:
        from segflow.catalog.tokens import TokenStore
        from segflow.collect.catalog import SourceCatalog

        data = self.o.data_dir
        if data.exists() and not self.o.keep:
            shutil.rmtree(data)
        data.mkdir(parents=True, exist_ok=True)
        catalog = SourceCatalog(data / "catalog.sqlite")
        try:
            _, write_key = catalog.create("shop")
        finally:
            catalog.close()
        tokens = TokenStore(data / "catalog.sqlite")
        try:
            token = tokens.create("admin", name="demo")
        finally:
            tokens.close()
        return write_key, token

    def _start_server(self) -> str:
        port = free_port(self.o.host, self.o.port)
        env = {
            **os.environ,
            "SEGFLOW_ACTIVATE__ALLOW_LIST": '["127.0.0.1/32"]',
            "SEGFLOW_ML__SCHEDULE_ENABLED": "false",  # the demo runs the models itself
            "SEGFLOW_SHARED__DSN": "",  # its own data directory, whatever the shell's settings
        }
        log_path = self.o.data_dir / "serve.log"
        with log_path.open("ab") as out:
            self.server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "segflow.cli.main",
                    "serve",  # supervised: scores of the API's model runs reach the
                    # processor's process through the command queue (docs/serve.md)
                    "--data-dir",
                    str(self.o.data_dir),
                    "--host",
                    self.o.host,
                    "--port",
                    str(port),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://{self.o.host}:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"segflow serve exited; see {log_path}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    return url
            time.sleep(0.1)  # waiting for a child process to listen
        raise RuntimeError(f"segflow serve did not start; see {log_path}")

    def stop(self) -> None:
        for client in (getattr(self, "client", None), getattr(self, "collector", None)):
            if client is not None:
                client.close()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:  # the supervisor gives its children 30 s before it kills them
                self.server.wait(45)
            except subprocess.TimeoutExpired:
                self.server.kill()  # its children die with it (docs/serve.md#signals)
                self.server.wait(10)
        self.platform.close()

    # -- the API -----------------------------------------------------------------------------
    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.client.request(method, path, **kwargs)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json()

    def _send(self, messages: list[Message]) -> None:
        for i in range(0, len(messages), BATCH):
            chunk = messages[i : i + BATCH]
            r = self.collector.post("/v1/batch", json={"batch": chunk})
            if r.status_code == 429 or r.status_code == 503:
                time.sleep(float(r.headers.get("retry-after", "1")))
                r = self.collector.post("/v1/batch", json={"batch": chunk})
            if r.status_code != 200:
                raise RuntimeError(f"/v1/batch: {r.status_code} {r.text}")
            self.result.events_sent += len(chunk)

    def _define(self) -> None:
        for name, expr in definitions.TRAITS.items():
            self._api("POST", "/api/v1/traits", json={"name": name, "rule": expr})
        for name, rule in definitions.SEGMENTS.items():
            body = {"name": name, "rule": rule,
                    "description": definitions.DESCRIPTIONS.get(name, "")}  # fmt: skip
            self._api("POST", "/api/v1/segments", json=body)

    def _destination(self) -> None:
        subs = [
            {"segment": s, "traits": ["viewed_products", "cart_products", "favourite_category"]}
            for s in STORY_SEGMENTS
        ]
        body = {"name": "ad-platform", "url": self.platform.url, "subscriptions": subs}
        created = self._api("POST", "/api/v1/destinations", json=body)
        self.platform.secret = created["secret"]

    def _wait_caught_up(self, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        seen = False  # caught up once: the same again 1.5 s later, as the processor picks up
        while time.monotonic() < deadline:  # new definitions within a second (its watcher)
            parts = self._api("GET", "/api/v1/status")["parts"]
            # new segments see history; None: the pipeline's figures are not known right now
            busy = parts["processor"].get("backfilling") is not False
            if (
                not busy
                and parts["processor"]["lag"] == 0
                and parts["warehouse_loader"]["lag"] == 0
            ):
                if seen:
                    return
                seen = True
                time.sleep(1.5)  # the loader flushes the processor's changes every second
                continue
            seen = False
            time.sleep(0.5)
        raise RuntimeError("segflow did not catch up with the backfill")

    def _models(self) -> None:
        # the built-in churn model looks 30 days ahead at 4 cutoffs (120 days of history);
        # the demo's weeks of history fit a 14-day horizon at 2 cutoffs
        churn = {"kind": "propensity", "target": "no activity within 14 days", "n_cutoffs": 2}
        self._api("PUT", "/api/v1/models/churn", json=churn)
        for name, spec in definitions.LIVE_MODELS.items():  # applied in the stream
            self._api("PUT", f"/api/v1/models/{name}", json=spec)
        with Progress(console=self.console, transient=True) as progress:
            task = progress.add_task("training models", total=len(MODELS))
            for name in MODELS:
                progress.update(task, description=f"model {name}")
                r = self.client.post(f"/api/v1/models/{name}/runs", json={})
                status = r.json()["run"]["status"] if r.status_code == 200 else "failed"
                self.result.model_runs[name] = status
                if r.status_code != 200:  # e.g. too little history for a target: say so, go on
                    self.console.print(
                        f"  model {name} did not train: {r.json()['error']['message']}"
                    )
                # defined now, the processor rebuilds profiles while the other models train
                self._segments_on(name, r.json()["run"] if r.status_code == 200 else {})
                progress.advance(task)
        self.console.print(
            "models: " + ", ".join(f"{n} {s}" for n, s in self.result.model_runs.items())
        )
        self._model_warnings()

    def _segments_on(self, model: str, run: dict[str, Any]) -> None:
        """The segments on a model's output, once it has run: footwear_prospect on the
        discovered cluster of footwear browsers, the score segments after the bundle model."""
        segments: dict[str, str] = {}
        cards = run.get("metrics", {}).get("cards")
        if model == definitions.CLUSTER_MODEL and cards:
            footwear = definitions.footwear_cluster(cards)
            self.console.print(f"footwear_prospect: discovered cluster {footwear} of {model}")
            segments = definitions.cluster_segments(footwear)
        elif model == "bundle_72h":
            segments = definitions.score_segments()
        for name, rule in segments.items():
            body = {"name": name, "rule": rule,
                    "description": definitions.DESCRIPTIONS.get(name, "")}  # fmt: skip
            self._api("POST", "/api/v1/segments", json=body)

    def _model_warnings(self) -> None:
        """Say what the models' cards say: a model no better than its baseline is not used."""
        for name in MODELS:
            show = self._api("GET", f"/api/v1/models/{name}")
            if show.get("warning"):
                self.console.print(f"  [yellow]{show['warning']}[/yellow]")

    # -- traffic -----------------------------------------------------------------------------
    def _backfill(self) -> None:
        now = int(time.time() * 1000)
        history = self.sim.history(end_ms=now - 60 * MINUTE_MS, days=self.o.days)
        with Progress(console=self.console, transient=True) as progress:
            task = progress.add_task(f"backfill: {len(history):,} events", total=len(history))
            for i in range(0, len(history), BATCH * 8):
                self._send(history[i : i + BATCH * 8])
                progress.advance(task, len(history[i : i + BATCH * 8]))
        self._send(story(now - 58 * MINUTE_MS))

    def _live(self, until: Callable[[], bool]) -> None:
        interval = 10.0
        next_report = time.monotonic() + interval
        seen = 0
        while not until():
            started = time.monotonic()
            session = self.sim.live(int(time.time() * 1000))
            self._send(session)
            budget = len(session) / max(self.o.rate, 0.1)
            time.sleep(max(0.0, budget - (time.monotonic() - started)))
            if time.monotonic() >= next_report:
                next_report += interval
                seen = self._report(seen)
        self._report(seen)

    def _report(self, seen: int) -> int:
        sizes = self._segment_sizes()
        hooks = self.platform.payloads()
        top = ", ".join(f"{n} {c}" for n, c in sorted(sizes.items(), key=lambda x: -x[1])[:4])
        self.console.print(
            f"[dim]{time.strftime('%H:%M:%S')}[/] events sent {self.result.events_sent:,} · "
            f"webhooks {len(hooks)} · {top}"
        )
        for payload in hooks[seen:]:
            if _is_story(payload):
                self._show_ad(payload)
        return len(hooks)

    def _segment_sizes(self) -> dict[str, int]:
        return {d["name"]: d["size"] for d in self._api("GET", "/api/v1/segments")}

    def _show_ad(self, payload: dict[str, Any]) -> None:
        data = payload.get("data") or {}
        traits = data.get("traits", {})
        self.console.print(
            f"[bold magenta]ad platform[/] ← {data.get('segment')} {data.get('kind')} "
            f"for {STORY_ANONYMOUS_ID}: [bold]Complete the look[/] — in the cart "
            f"{traits.get('cart_products')}, also viewed {traits.get('viewed_products')}"
        )

    # -- the whole run ----------------------------------------------------------------------
    def run(self) -> DemoResult:
        c = self.console
        write_key, token = self._prepare()
        self.result.token = token
        url = self._start_server()
        self.result.url = url
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=600
        )
        self.collector = httpx.Client(base_url=url, auth=(write_key, ""), timeout=60)
        c.print(f"[bold]segflow[/] is serving {self.o.data_dir} at {url}")
        self._destination()
        self._define()
        c.print(
            f"defined {len(definitions.SEGMENTS)} segments and {len(definitions.TRAITS)} "
            "computed traits; the ad platform is subscribed to " + ", ".join(STORY_SEGMENTS)
        )
        self._backfill()
        c.print(f"backfill sent: {self.result.events_sent:,} events for {self.o.people:,} people")
        self._wait_caught_up()
        self._models()
        started = time.monotonic()
        self._wait_caught_up()
        c.print(f"score segments backfilled from history in {time.monotonic() - started:.1f} s")
        self._story_status()
        self._banner()
        if self.on_ready is not None:
            self.on_ready(f"{self.result.url}/console")
        deadline = None if self.o.duration_s is None else time.monotonic() + self.o.duration_s
        self._live(lambda: deadline is not None and time.monotonic() >= deadline)
        self._story_status()
        self.result.segments = self._segment_sizes()
        self.result.webhooks = self.platform.payloads()
        return self.result

    def _story_status(self) -> None:
        profile = self._api("GET", f"/api/v1/profiles/anonymous_id:{STORY_ANONYMOUS_ID}")
        self.result.story_segments = list(profile["segments"])
        self.console.print(
            f"{STORY_ANONYMOUS_ID} is in: {', '.join(profile['segments']) or '(none yet)'}"
        )

    def _banner(self) -> None:
        table = Table(show_header=False, box=None)
        table.add_row("console", f"{self.result.url}/console  (log in with the admin token)")
        table.add_row("API", f"{self.result.url}/api/v1/docs")
        table.add_row(
            "her profile", f"{self.result.url}/api/v1/profiles/anonymous_id:{STORY_ANONYMOUS_ID}"
        )
        table.add_row("admin token", self.result.token)
        table.add_row("data", str(self.o.data_dir))
        self.console.print(table)
        self.console.print(
            f"live traffic at {self.o.rate:g} events/s — her cart is abandoned about two minutes "
            "from now; watch for the ad platform line. Ctrl-C stops."
        )


def _is_story(payload: dict[str, Any]) -> bool:
    ids = (payload.get("data") or {}).get("identifiers") or []
    return any(i.get("value") == STORY_ANONYMOUS_ID for i in ids)


@contextlib.contextmanager
def running(options: DemoOptions, console: Console | None = None) -> Iterator[Demo]:
    """A :class:`Demo` whose server and receiver are stopped on exit."""
    demo = Demo(options, console)
    try:
        yield demo
    finally:
        demo.stop()
