"""Crypto-shredding's cost per event on the Kafka driver: sealing on the collector's produce
path and opening on every reader, against the plain records (no sealing) as the baseline.

Run: ``python -m benchmarks.shredding [--events 20000] [--batch 500] [--rounds 7] [--new 0.0]
[--before REF] [--append-size K] [--clock cpu|wall]``

Generated Segment events (``benchmarks.payloads``-like: a track with ~10 properties, ~600
bytes encoded) of ``events / 4`` people, all known to the key table after the warm-up round
(a warm collector), plus a share ``--new`` of events, per round, by people the key table has
never seen (their keys are made, one ``synchronous=FULL`` commit per batch that has one).
Each round measures, interleaved: the baseline's per-event work on the produce path (the
msgpack payload as it is) and on the read path (``decode_event``), then segflow's
(``Shredder.seal_events`` over the same payloads; ``open_many`` then ``decode_event``).
With ``--before REF`` (a git commit or branch of this repository), the ``Shredder`` of
``src/segflow/log/shredding.py`` at REF is measured in the same rounds, in alternating order
with the current one, each on a key table of its own: ``before`` / ``after`` figures and the
median of the per-round ratios of what sealing adds. Prints the median µs per event of each (CPU
time of the process by default: on a shared machine, elapsed time measures the neighbours too);
the key tables are ``keys.sqlite`` files in a temporary directory.

With ``--append-size K`` a batch is what the Kafka collector's writer takes at once: a group of
appends of ``K`` events each (HTTP requests). A ``Shredder`` with ``seal`` (since issue #20's
key-commit fold) seals the group in one call, as the driver now does: one key-table commit for
its new people; one without it seals each append on its own, as the driver did before: one
commit per append with a new person. Use ``--clock wall`` to count the commits' fsyncs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import tempfile
import time
import types
from pathlib import Path
from typing import Any

from benchmarks.common import commit, machine
from segflow.log.keys import SqliteKeyTable
from segflow.log.shredding import Shredder
from segflow.spec.events import Event, decode_event, encode_event


def events(n: int, people: int, seed: int = 7, new: float = 0.0) -> list[Event]:
    rng = random.Random(seed)
    return [
        Event(type="track", message_id=f"m{i}", source_id="web", timestamp_ms=1_700_000_000_000,
              received_at_ms=1_700_000_000_000,
              user_id=f"new-{seed}-{i}" if rng.random() < new else f"user-{rng.randrange(people)}",
              event="Product Viewed",
              properties={f"p{k}": f"value-{rng.randrange(1000)}-{k}" for k in range(10)})
        for i in range(n)
    ]  # fmt: skip


_now = time.process_time  # --clock cpu (the default); wall: time.perf_counter


def per_event_us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def shredder_at(ref: str) -> Any:
    """The ``Shredder`` class of ``src/segflow/log/shredding.py`` at git ``ref``."""
    source = subprocess.run(
        ["git", "show", f"{ref}:src/segflow/log/shredding.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(f"segflow_shredding_at_{ref}")
    exec(compile(source, f"{ref}:src/segflow/log/shredding.py", "exec"), module.__dict__)
    return module.Shredder


_append_size = 0  # --append-size: 0, each batch sealed in one call


def seal_batch(shredder: Any, evs: list[Event], payloads: list[bytes]) -> list[bytes]:
    """One collector group's envelopes, sealed as the driver of ``shredder``'s version does."""
    if not _append_size:
        return list(shredder.seal_events(evs, payloads))
    if hasattr(shredder, "seal"):  # the driver since the fold: the group in one call
        return list(shredder.seal(evs, payloads)[0])
    out: list[bytes] = []  # the driver before: each append on its own
    for j in range(0, len(evs), _append_size):
        out += shredder.seal_events(evs[j : j + _append_size], payloads[j : j + _append_size])
    return out


def sealed_paths(shredder: Any, evs: list[Event], payloads: list[bytes], batch: int) -> tuple[float, float]:  # fmt: skip
    """Seconds to seal ``payloads`` in batches, then to open and decode them."""
    t0 = _now()
    sealed: list[bytes] = []
    for i in range(0, len(evs), batch):
        sealed += seal_batch(shredder, evs[i : i + batch], payloads[i : i + batch])
    t1 = _now()
    for i in range(0, len(sealed), batch):
        for value in shredder.open_many(sealed[i : i + batch]):
            assert value is not None
            decode_event(value)
    return t1 - t0, _now() - t1


def round_once(
    shredders: dict[str, Any], evs: list[Event], batch: int, flip: bool = False
) -> dict[str, float]:
    payloads = [encode_event(e) for e in evs]
    n = len(evs)
    t0 = _now()
    plain = list(payloads)  # the baseline produces the payload as it is
    t1 = _now()
    for value in plain:
        decode_event(value)
    t2 = _now()
    out = {"produce_plain": per_event_us(t1 - t0, n), "read_plain": per_event_us(t2 - t1, n)}
    for label in sorted(shredders, reverse=flip):
        produce, read = sealed_paths(shredders[label], evs, payloads, batch)
        out[f"produce_{label}"] = per_event_us(produce, n)
        out[f"read_{label}"] = per_event_us(read, n)
    return out


def report(rounds: list[dict[str, float]], labels: list[str]) -> None:
    for path in ("produce", "read"):
        plain = statistics.median(r[f"{path}_plain"] for r in rounds)
        line = f"{path}: plain {plain:.2f} µs/event"
        for label in labels:
            sealed = statistics.median(r[f"{path}_{label}"] for r in rounds)
            extra = statistics.median(r[f"{path}_{label}"] - r[f"{path}_plain"] for r in rounds)
            line += f"; {label} {sealed:.2f} µs/event, sealing adds {extra:.2f}"
        if len(labels) == 2:
            ratio = statistics.median(
                (r[f"{path}_before"] - r[f"{path}_plain"])
                / (r[f"{path}_after"] - r[f"{path}_plain"])
                for r in rounds
            )
            line += f"; before / after (what sealing adds) {ratio:.2f}x"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--new", type=float, default=0.0, help="share of events by new people")
    ap.add_argument("--before", metavar="REF", help="also measure the Shredder at this commit")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: the process's CPU time (default: what the work costs a core on a"
                         " shared machine; fsync waits excluded); wall: elapsed time")  # fmt: skip
    ap.add_argument("--append-size", type=int, default=0, metavar="K",
                    help="a batch is a group of appends of K events (the Kafka collector's)")  # fmt: skip
    args = ap.parse_args()
    global _now, _append_size
    _now = time.process_time if args.clock == "cpu" else time.perf_counter
    _append_size = args.append_size
    root = Path(tempfile.mkdtemp(prefix="segflow-bench-shredding-"))
    shredders: dict[str, Any] = {"sealed": Shredder(SqliteKeyTable(root / "keys.sqlite"))}
    if args.before:
        shredders = {
            "after": shredders["sealed"],
            "before": shredder_at(args.before)(SqliteKeyTable(root / "before.sqlite")),
        }
    people = args.events // 4
    round_once(shredders, events(args.events, people, seed=1), args.batch)  # warm-up
    rounds = [
        round_once(
            shredders, events(args.events, people, seed=r + 2, new=args.new), args.batch, r % 2 == 1
        )
        for r in range(args.rounds)
    ]
    for shredder in shredders.values():
        shredder.table.close()
    print(
        f"# {machine()}, commit {commit()}, {args.events} events, batches of {args.batch},"
        f" {args.new:.0%} by new people, {args.clock} time"
        + (f", appends of {args.append_size}" if args.append_size else "")
        + (f", before = {args.before}" if args.before else "")
    )
    report(rounds, sorted(shredders, reverse=True))


if __name__ == "__main__":
    main()
