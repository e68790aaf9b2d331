"""The live Streamlit dashboard of musicrec: `streamlit run dashboard/app.py` (or scripts/dashboard.sh).

Pure logic (time values, stream metrics, list diffs, the 2-D map, feed rows) lives in small modules with
no Streamlit or MongoDB import; `store.py` is the read-only MongoDB/Kafka edge, `data.py` the cached
accessors the pages use, `views/` the thin pages.
"""
