"""The streaming job's per-micro-batch progress (`stream_batches` documents) shaped for the Live page:
a clean frame, the last minutes of it, events per second in time bins and a few headline figures.
Pure functions over documents and pandas; nothing here reads a store."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from dashboard.timefmt import to_utc

NUMERIC = ("rows", "duration_ms", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99")
COLUMNS = ("batch_id", "written_at") + NUMERIC


def _number(value) -> float:
    if isinstance(value, bool) or value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def batches_frame(docs: Iterable[Mapping]) -> pd.DataFrame:
    """One row per batch with a UTC `written_at`, sorted by it; documents without a usable time are
    dropped, missing or malformed numbers become NaN (never an exception)."""
    rows = []
    for doc in docs:
        at = to_utc(doc.get("written_at"))
        if at is None:
            continue
        row = {"batch_id": doc.get("batch_id", doc.get("_id")), "written_at": at}
        row.update({name: _number(doc.get(name)) for name in NUMERIC})
        rows.append(row)
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in NUMERIC}
                            | {"batch_id": pd.Series(dtype="object"),
                               "written_at": pd.Series(dtype="datetime64[ns, UTC]")})[list(COLUMNS)]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["written_at"] = pd.to_datetime(df["written_at"], utc=True)
    return df.sort_values("written_at", kind="stable").reset_index(drop=True)


def last_minutes(df: pd.DataFrame, now: datetime, minutes: float) -> pd.DataFrame:
    """The batches written in (now - minutes, now]."""
    now_ts = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    start = now_ts - pd.Timedelta(minutes=minutes)
    return df[(df["written_at"] > start) & (df["written_at"] <= now_ts)].reset_index(drop=True)


def events_per_second(df: pd.DataFrame, now: datetime, minutes: float, bin_s: float) -> pd.DataFrame:
    """Rows processed per second in the complete bins of `bin_s` seconds (aligned to the epoch, so they
    do not shift between refreshes) of the last `minutes`; empty bins are 0 and the bin still filling
    is left out. Columns: time (bin start, UTC), events_per_s."""
    if bin_s <= 0:
        raise ValueError("bin_s must be positive")
    now_ts = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    end = np.floor(now_ts.value / 1e9 / bin_s) * bin_s
    n_bins = max(1, int(round(minutes * 60.0 / bin_s)))
    first = end - n_bins * bin_s
    starts = first + bin_s * np.arange(n_bins)
    sums = np.zeros(n_bins)
    if len(df):
        at = df["written_at"].astype("int64").to_numpy() / 1e9
        idx = np.floor((at - first) / bin_s).astype(np.int64)
        ok = (at >= first) & (at < end) & (idx >= 0) & (idx < n_bins)
        rows = np.nan_to_num(df["rows"].to_numpy(dtype=float))
        np.add.at(sums, idx[ok], rows[ok])
    return pd.DataFrame({"time": pd.to_datetime(starts, unit="s", utc=True), "events_per_s": sums / bin_s})


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation) of the finite values, or None if there are none."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(np.percentile(arr, q)) if arr.size else None


def summary(df: pd.DataFrame, now: datetime, recent_s: float = 60.0) -> dict:
    """Headline figures of a (windowed) batch frame: batches, events, events/s over the last `recent_s`,
    age of the last batch, the last batch's duration and latencies, and over the frame the median batch
    duration and the worst per-batch p95 latency. Missing values are None."""
    now_ts = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    out = {"batches": int(len(df)), "events": int(np.nansum(df["rows"].to_numpy(dtype=float))) if len(df) else 0,
           "events_per_s_recent": 0.0, "last_batch_id": None, "last_batch_age_s": None,
           "last_duration_ms": None, "last_p50_ms": None, "last_p95_ms": None,
           "median_duration_ms": percentile(df["duration_ms"], 50) if len(df) else None,
           "worst_p95_ms": None}
    if not len(df):
        return out
    recent = df[df["written_at"] > now_ts - pd.Timedelta(seconds=recent_s)]
    out["events_per_s_recent"] = float(np.nansum(recent["rows"].to_numpy(dtype=float))) / recent_s
    last = df.iloc[-1]

    def fin(v):
        return float(v) if v is not None and np.isfinite(v) else None

    out.update(last_batch_id=last["batch_id"],
               last_batch_age_s=max(0.0, (now_ts - last["written_at"]).total_seconds()),
               last_duration_ms=fin(last["duration_ms"]), last_p50_ms=fin(last["latency_ms_p50"]),
               last_p95_ms=fin(last["latency_ms_p95"]))
    p95 = df["latency_ms_p95"].to_numpy(dtype=float)
    out["worst_p95_ms"] = float(np.nanmax(p95)) if np.isfinite(p95).any() else None
    return out


def since(now: datetime, minutes: float) -> datetime:
    """The start of the window, as a naive UTC datetime (what a pymongo filter compares with)."""
    start = pd.Timestamp(now)
    start = start.tz_convert("UTC") if start.tzinfo else start.tz_localize("UTC")
    return (start - timedelta(minutes=minutes)).tz_localize(None).to_pydatetime()
