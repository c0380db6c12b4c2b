"""The same features as ``segflow.warehouse.features`` (default settings, given key features),
written the way a competent pandas user would: one frame of events, vectorised group-bys."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

DAY = 86_400_000
GAP = 30 * 60_000


def features_pandas(
    events: pd.DataFrame, at_ms: int, key_features: tuple[str, ...]
) -> pd.DataFrame:
    e = events[events["timestamp_ms"] <= at_ms]
    active = e[e["type"].isin(["track", "page", "screen"])].sort_values(
        ["profile_id", "timestamp_ms", "message_id"]
    )
    gap = active.groupby("profile_id")["timestamp_ms"].diff()
    sid = (gap.isna() | (gap > GAP)).astype(np.int64).groupby(active["profile_id"]).cumsum()
    sess = active.assign(sid=sid).groupby(["profile_id", "sid"])["timestamp_ms"].agg(["min", "max"])
    sess["dur"] = sess["max"] - sess["min"]
    s = sess.groupby(level=0).agg(
        last_active_ms=("max", "max"),
        frequency_30d=("max", lambda x: int((x > at_ms - 30 * DAY).sum())),
        avg_session_duration=("dur", lambda x: x.mean() / 60000.0),
    )
    is_order = (e["event"] == "Order Completed") & (e["timestamp_ms"] > at_ms - 90 * DAY)
    revenue = (
        e["properties"]
        .where(is_order)
        .map(lambda p: json.loads(p).get("revenue") if isinstance(p, str) else None)
    )
    g = e.assign(rev=pd.to_numeric(revenue, errors="coerce"), order=is_order,
                 ticket=(e["event"] == "Support Ticket Created") & (e["timestamp_ms"] > at_ms - 60 * DAY),
                 key=e["event"].where(e["event"].isin(key_features))).groupby("profile_id")  # fmt: skip
    a = g.agg(first_ms=("timestamp_ms", "min"), last_ms=("timestamp_ms", "max"), monetary_value_90d=("rev", "sum"),
              orders_90d=("order", "sum"), support_tickets_60d=("ticket", "sum"), used=("key", "nunique"))  # fmt: skip
    out = a.join(s, how="left")
    out["recency"] = (at_ms - out["last_active_ms"].fillna(out["last_ms"])) / DAY
    out["frequency_30d"] = out["frequency_30d"].fillna(0)
    out["feature_adoption_rate"] = out["used"] / len(key_features)
    out["avg_session_duration"] = out["avg_session_duration"].fillna(0.0)
    out["tenure_days"] = (at_ms - out["first_ms"]) / DAY
    for col, asc in (("recency", False), ("frequency_30d", True), ("monetary_value_90d", True)):
        rank = out[col].rank(method="max", ascending=asc, pct=True)
        out[col[0] + "_score"] = np.ceil(5 * rank).astype(int)
    return out.reset_index()
