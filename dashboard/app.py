"""musicrec's live dashboard: `streamlit run dashboard/app.py` (or scripts/dashboard.sh).

Pages: Live (stream throughput, batch duration, latency, newest activity), User (recommendations with
reasons, recent activity, how the list changed, audio), Catalogue (2-D map of the tracks, more like
this), Model (current version, parameters, metrics, history). Read-only: it never writes to the store.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts dashboard/, not the project, on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import data, ui  # noqa: E402

st.set_page_config(page_title="musicrec", page_icon=":material/library_music:", layout="wide")

PAGES = [
    st.Page("views/live.py", title="Live", icon=":material/monitoring:", url_path="live", default=True),
    st.Page("views/user.py", title="User", icon=":material/person:", url_path="user"),
    st.Page("views/catalogue.py", title="Catalogue", icon=":material/scatter_plot:", url_path="catalogue"),
    st.Page("views/model.py", title="Model", icon=":material/model_training:", url_path="model"),
]

page = st.navigation(PAGES)
ui.status_bar()
data.snapshot("catalogue")  # start (or keep) the catalogue loading before a page needs it
page.run()
