"""Live: events per second, micro-batch duration and event-to-recommendation latency over the last
minutes, and the newest activity. Refreshes itself every `dashboard_ttl_s` seconds."""
from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from dashboard import data, metrics, tables, ui
from dashboard.timefmt import age_text

st.title("Live")
minutes = st.radio("Window (minutes)", [1, 5, 10, 30, 60], index=2, horizontal=True, key="live_minutes")


def _ms(value) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


@st.fragment(run_every=data.refresh_s())
def live(minutes: int) -> None:
    if ui.store_down():
        return
    now = datetime.now(timezone.utc)
    frame = metrics.last_minutes(metrics.batches_frame(data.batches(minutes)), now, minutes)
    head = metrics.summary(frame, now)
    c = st.columns(5)
    c[0].metric("Events / s (last minute)", f"{head['events_per_s_recent']:,.1f}")
    c[1].metric(f"Batches ({minutes} min)", f"{head['batches']:,}", help=f"{head['events']:,} events")
    c[2].metric("Batch duration (last)", _ms(head["last_duration_ms"]),
                help=f"median {_ms(head['median_duration_ms'])}")
    c[3].metric("Latency p50 / p95 (last batch)",
                f"{_ms(head['last_p50_ms'])} / {_ms(head['last_p95_ms'])}",
                help=f"worst p95 in the window: {_ms(head['worst_p95_ms'])}")
    c[4].metric("Last batch", age_text(head["last_batch_age_s"]) + (" ago" if head["last_batch_age_s"] is not None else ""))
    if frame.empty:
        st.info(f"No micro-batch in the last {minutes} min: is the streaming job running?")
    else:
        bin_s = max(2.0, minutes * 60 / 60)
        eps = metrics.events_per_second(frame, now, minutes, bin_s)
        left, mid, right = st.columns(3)
        left.caption(f"Events per second ({bin_s:.0f} s bins)")
        left.area_chart(eps, x="time", y="events_per_s", height=220)
        mid.caption("Micro-batch duration (ms)")
        mid.line_chart(frame, x="written_at", y="duration_ms", height=220)
        right.caption("Event-to-recommendation latency (ms)")
        right.line_chart(frame.rename(columns={"latency_ms_p50": "p50", "latency_ms_p95": "p95"}),
                         x="written_at", y=["p50", "p95"], height=220)
    st.subheader("Newest activity")
    feed = tables.feed_rows(data.latest_events(), label=data.track_label, limit=50)
    if feed.empty:
        st.info("No activity yet: start the simulator (`python -m simulator`).")
    else:
        st.dataframe(feed.drop(columns=["track_id"]), hide_index=True, width="stretch",
                     column_config={"time": st.column_config.DatetimeColumn("time", format="HH:mm:ss.SSS"),
                                    "ms_played": st.column_config.NumberColumn("ms played", format="%d")})


live(int(minutes))
