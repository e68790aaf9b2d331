"""User: pick or search a user; their current recommendations (title, artist, genre, score, reason),
how the list changed since the previous version, their recent activity and an audio player for a clip
that is on disk. The recommendations refresh themselves every `dashboard_ttl_s` seconds."""
from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from common import reclist
from dashboard import data, listdiff, tables, ui
from dashboard.timefmt import age_text, to_utc

st.title("User")


def _options(search: str, wanted: str | None) -> list[str]:
    """Users to offer: the one asked for, the recently active, then everyone with recommendations
    (when the background list is ready); filtered by the search text."""
    users = data.snapshot("users").value or []  # never waits: the full list arrives when read
    recent = tables.recent_users(data.latest_events(), limit=50) if data.store_up() else []
    ordered = list(dict.fromkeys(([wanted] if wanted else []) + recent + users))
    text = search.strip().lower()
    if text:
        ordered = [u for u in ordered if text in u.lower()] or [search.strip()]  # else: an id as typed
    return ordered[:500]


wanted = st.query_params.get("user") or st.session_state.get("user")
search = st.text_input("Search users", placeholder="user id or part of it", key="user_search")
options = _options(search, wanted)
if not options:
    if not ui.store_down():
        st.info("No users yet: recommendations appear once the simulator and the streaming job run.")
    st.stop()
index = options.index(wanted) if wanted in options else 0
user = st.selectbox("User", options, index=index, key="user_pick")
st.session_state["user"] = user
if st.query_params.get("user") != user:
    st.query_params["user"] = user


@st.fragment(run_every=data.refresh_s())
def recommendations(user: str) -> None:
    if ui.store_down():
        return
    doc = data.recommendation(user)
    if doc is None:
        st.info(f"No recommendations for {ui.escape_md(user)} yet.")
    else:
        items = reclist.items_of(doc)
        updated = to_utc(doc.get("updated_at"))
        version = (doc.get("batch_id"), str(doc.get("updated_at")))
        previous = data.list_history().observe(str(user), version, items)
        change = listdiff.diff_items(previous[1], items) if previous else None
        age = age_text((datetime.now(timezone.utc) - updated).total_seconds()) + " ago" if updated else "unknown"
        st.markdown(f"**{len(items)} recommendations** · updated {age} · batch {ui.code(doc.get('batch_id', '–'))} · "
                    f"model {ui.code(doc.get('model_version', '–'))} · {ui.escape_md(doc.get('n_events', '–'))} events")
        if change is None:
            st.caption("How the list changed: this is the first version this dashboard has seen.")
        else:
            before = {it.get("track_id"): it for it in previous[1] if isinstance(it, dict)}

            def label(tid) -> str:
                it = before.get(tid) or {}
                return (f"{it['title']} - {it.get('artist') or ''}".rstrip(" -") if it.get("title")
                        else data.track_label(tid))

            dropped = ", ".join(label(r["track_id"]) for r in change.removed[:5])
            more = f" (+{len(change.removed) - 5})" if len(change.removed) > 5 else ""
            st.caption(f"How the list changed since batch {ui.code(previous[0][0])}: {ui.escape_md(change.text())}"
                       + (f"; dropped: {ui.escape_md(dropped)}{more}" if dropped else ""))
        rows = tables.rec_rows(items, change, tracks=data.tracks(), label=data.track_label)
        if rows.empty:
            st.info("The list is empty.")
        else:
            st.table(rows.drop(columns=["track_id"]).set_index("rank").style.format({"score": "{:.3f}"}, na_rep=""))
    st.subheader("Recent activity")
    feed = tables.feed_rows(data.user_events(user), label=data.track_label)
    if feed.empty:
        st.caption("No recent activity.")
    else:
        st.dataframe(feed.drop(columns=["user", "track_id"]), hide_index=True, width="stretch",
                     column_config={"time": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm:ss"),
                                    "ms_played": st.column_config.NumberColumn("ms played", format="%d")})


recommendations(user)

# The player sits outside the refreshing fragment, so a refresh does not cut a clip short.
st.subheader("Listen")
doc = data.recommendation(user)
items = reclist.items_of(doc)
snap = data.track_map()
playable = [(it.get("track_id"), path) for it in items if isinstance(it, dict)
            for path in [data.audio_file(it.get("track_id"), snap)] if path is not None]
if not playable:
    st.caption("No clip of these recommendations is on disk (audio_dir: "
               f"{data.settings().audio_dir}).")
else:
    labels = {tid: data.track_label(tid) for tid, _ in playable}
    choice = st.selectbox("Clip", [tid for tid, _ in playable], format_func=lambda t: labels[t], key="clip")
    st.audio(str(dict(playable)[choice]))
