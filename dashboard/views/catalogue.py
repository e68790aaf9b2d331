"""Catalogue: a 2-D map of the tracks (PCA of the z-scored features) coloured by genre, with a user's
recent tracks, taste and recommendations marked; "more like this" for any track from the model's
neighbour table."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from common import reclist
from dashboard import data, projection, tables, ui

MAP_POINTS = 5000  # tracks drawn on the map (a fixed random subset; marked tracks are always drawn)

st.title("Catalogue")


@st.fragment(run_every=2.0)
def waiting() -> None:
    snap = data.snapshot("catalogue", wait_s=0)
    if snap.value is not None:
        st.rerun()
    st.info(ui.progress_text(snap, "the catalogue"))


if ui.store_down() and data.track_map() is None:
    st.stop()
tmap = data.track_map(wait_s=2.0)
if tmap is None:
    waiting()
    st.stop()
if len(tmap) == 0:
    st.info("The catalogue is empty: run the feature extraction first.")
    st.stop()

user = st.text_input("Mark a user", value=st.session_state.get("user") or st.query_params.get("user") or "",
                     key="catalogue_user").strip()
if user:
    st.session_state["user"] = user


@st.cache_data(show_spinner=False, max_entries=4)
def base_sample(key: str, _tmap) -> pd.DataFrame:
    drawable = np.flatnonzero(np.isfinite(_tmap.x))
    return _tmap.points(drawable[projection.sample_indices(len(drawable), MAP_POINTS)])


def marks(user: str, focus: int | None) -> pd.DataFrame:
    """Marked points: the user's recent tracks, recommendations and taste, the focused track and its
    neighbours."""
    parts = []
    if user and data.store_up():
        events = data.user_events(user, limit=50)
        weights = tables.taste_weights(events)
        recent = tmap.points_of(list(weights))
        if len(recent):
            parts.append(recent.assign(mark="recent"))
            pos = recent.assign(w=[max(weights.get(t, 0.0), 0.0) for t in recent["track_id"]])
            pos = pos[np.isfinite(pos["x"]) & (pos["w"] > 0)]
            if len(pos):
                taste = pd.DataFrame([{"track_id": -1, "title": f"taste of {user}", "artist": "", "genre_top": "",
                                       "x": float(np.average(pos["x"], weights=pos["w"])),
                                       "y": float(np.average(pos["y"], weights=pos["w"])), "mark": "taste"}])
                parts.append(taste)
        recommended = reclist.track_ids(data.recommendation(user))
        if recommended:
            recs = tmap.points_of(recommended)
            if len(recs):
                parts.append(recs.assign(mark="recommended"))
    if focus is not None:
        near = tmap.points_of([t for t, _ in data.neighbours_of(focus)[1]])
        if len(near):
            parts.append(near.assign(mark="neighbour"))
        parts.append(tmap.points_of([focus]).assign(mark="selected"))
    if not parts:
        return pd.DataFrame(columns=["track_id", "title", "artist", "genre_top", "x", "y", "mark"])
    out = pd.concat(parts, ignore_index=True)
    return out[np.isfinite(out["x"].astype(float))]


def chart(base: pd.DataFrame, marked: pd.DataFrame) -> alt.Chart:
    tip = ["title", "artist", "genre_top", "track_id"]
    size = 60 if len(base) < 1000 else 25 if len(base) < 3000 else 12
    points = alt.Chart(base).mark_circle(size=size, opacity=0.6).encode(
        x=alt.X("x:Q", title=f"PC 1 ({tmap.explained[0]:.0%} of variance)"),
        y=alt.Y("y:Q", title=f"PC 2 ({tmap.explained[1]:.0%})"),
        color=alt.Color("genre_top:N", title="genre", legend=alt.Legend(columns=1, symbolLimit=20)),
        tooltip=tip)
    if marked.empty:
        return points.properties(height=520).interactive()
    shapes = alt.Scale(domain=["recent", "recommended", "taste", "selected", "neighbour"],
                       range=["circle", "diamond", "cross", "triangle-up", "square"])
    over = alt.Chart(marked).mark_point(size=140, filled=False, strokeWidth=2.5, color="black").encode(
        x="x:Q", y="y:Q", shape=alt.Shape("mark:N", scale=shapes, title="marked"),
        tooltip=tip + ["mark"])
    return alt.layer(points, over).properties(height=520).interactive()


map_slot = st.container()
st.subheader("More like this")
search = st.text_input("Find a track", placeholder="title, artist or id", key="track_search")
found = tmap.search(search, limit=100)
focus = None
if len(found):
    focus = st.selectbox("Track", found.tolist(), key="track_pick", format_func=lambda t: f"{tmap.label(t)} (#{t})")
else:
    st.caption("No track matches.")


@st.fragment(run_every=max(10.0, data.refresh_s()))
def catalogue_map(user: str, focus: int | None) -> None:
    st.subheader("Map")
    base = base_sample(tmap.key, tmap)
    marked = marks(user, focus)
    st.caption(f"{len(base):,} of {len(tmap):,} tracks drawn, coloured by genre; PCA of the z-scored "
               f"{tmap.n_features} features. Marked: {ui.escape_md(', '.join(sorted(set(marked['mark']))) or 'nothing')}.")
    st.altair_chart(chart(base, marked), width="stretch")


if focus is not None:
    version, pairs = data.neighbours_of(focus)
    if not pairs:
        st.caption(f"{ui.escape_md(tmap.label(focus))} has no neighbours in the current model.")
    else:
        rows = tmap.points_of([t for t, _ in pairs])
        dist = dict(pairs)
        table = pd.DataFrame({"title": rows["title"], "artist": rows["artist"], "genre": rows["genre_top"],
                              "distance": [dist[t] for t in rows["track_id"]], "track_id": rows["track_id"]})
        missing = [t for t, _ in pairs if t not in set(rows["track_id"])]
        if missing:
            table = pd.concat([table, pd.DataFrame({"title": [f"#{t}" for t in missing], "track_id": missing,
                                                    "distance": [dist[t] for t in missing]})], ignore_index=True)
        st.caption(f"Nearest to {ui.escape_md(tmap.label(focus))} (model {ui.escape_md(version or '–')}):")
        st.table(table.reset_index(drop=True).style.format({"distance": "{:.3f}"}, na_rep=""))

with map_slot:
    catalogue_map(user, focus)
