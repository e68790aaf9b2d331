"""Model: the current model's version, parameters, recall, genre precision and coverage, and the history
of versions."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, tables, ui
from dashboard.timefmt import to_utc

st.title("Model")


@st.fragment(run_every=max(5.0, data.refresh_s()))
def model() -> None:
    if ui.store_down():
        return
    current, docs = data.models()
    history = tables.model_rows(docs)
    if not docs:
        st.info("No model yet: fit one with `./spark-submit.sh jobs/fit_model.py`.")
        return
    by_version = {str(d.get("version") or d.get("_id")): d for d in docs}
    if current is None or current not in by_version:
        st.warning(f"No current model pointer{'' if current is None else f' ({ui.escape_md(current)} is not stored)'}: "
                   "showing the newest version.")
        current = history["version"].iloc[0] if len(history) else next(iter(by_version))
    doc = by_version[current]
    older = [v for v in history["version"] if v != current]
    prev = by_version.get(older[0]) if older else None
    created = to_utc(doc.get("created_at"))
    st.markdown(f"**Current model {ui.code(current)}** · created {created:%Y-%m-%d %H:%M:%S} UTC · "
                f"{ui.escape_md(doc.get('catalogue_size', '–'))} tracks · features {ui.code(doc.get('feature_version', '–'))}"
                if created else f"**Current model {ui.code(current)}**")
    head = tables.headline(doc.get("metrics"))
    before_head = tables.headline(prev.get("metrics")) if prev else {}
    cols = st.columns(3)
    for col, (name, label) in zip(cols, [("recall", f"Recall@{head['k']}"),
                                        ("genre_precision", f"Genre precision@{head['k']}"),
                                        ("coverage", "Coverage")]):
        value = head[name]
        before = before_head.get(name)
        col.metric(label, "–" if value is None else f"{value:.3f}",
                   delta=None if value is None or before is None else f"{value - before:+.3f}")
    left, right = st.columns(2)
    with left:
        st.caption("Parameters")
        params = tables.flat(doc.get("params") if isinstance(doc.get("params"), dict) else {})
        params.update(tables.flat(doc.get("tuning") if isinstance(doc.get("tuning"), dict) else {}, "tuning."))
        if params:
            st.table(pd.DataFrame({"parameter": list(params), "value": [str(v) for v in params.values()]})
                     .set_index("parameter"))
        else:
            st.caption("none recorded")
    with right:
        st.caption("All metrics")
        metrics = tables.flat(doc.get("metrics") if isinstance(doc.get("metrics"), dict) else {})
        if metrics:
            st.table(pd.DataFrame({"metric": list(metrics), "value": [str(v) for v in metrics.values()]})
                     .set_index("metric"))
        else:
            st.caption("none recorded")
    st.subheader(f"History ({len(history)} versions)")
    st.dataframe(history, hide_index=True, width="stretch",
                 column_config={"created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss")})
    chart = history.dropna(subset=["created_at"]).melt(
        id_vars=["created_at"], value_vars=["recall", "genre_precision", "coverage"],
        var_name="metric", value_name="value").dropna(subset=["value"])
    if len(history) > 1 and len(chart):
        st.line_chart(chart, x="created_at", y="value", color="metric", height=240)


model()
