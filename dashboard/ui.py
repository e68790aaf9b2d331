"""Small pieces every page uses: the one-line status of the store and Kafka, empty states."""
from __future__ import annotations

import re

import streamlit as st

from dashboard import data


def escape_md(text) -> str:
    """Text shown literally inside Streamlit markdown (ids, titles and URIs hold _, *, [, &, : and the like):
    every markdown-active ASCII character backslash-escaped, line breaks and other controls as spaces."""
    return "".join("\\" + ch if ch in MD_ACTIVE else (" " if ch < " " or "\x7f" <= ch < "\xa0" else ch)
                   for ch in str(text))


def code(text) -> str:
    """`text` as an inline code span, shown literally whatever it holds (a fence longer than any run of
    backticks inside, CommonMark's rule; controls as spaces)."""
    text = "".join(" " if ch < " " or "\x7f" <= ch < "\xa0" else ch for ch in str(text))
    runs = [len(r) for r in re.findall("`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")
                                                                 and text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


MD_ACTIVE = frozenset("\\`*_{}[]()#+-.!|~<>:$&=\"'%^@")


def status_line() -> str:
    """'● store ok (...) · ● Kafka unreachable at ... (...)' (green/red dots): one line, whatever is down."""
    parts = []
    for health in (data.store_health(), data.kafka_health()):
        parts.append((":green[●] " if health.ok else ":red[●] ") + escape_md(health.text))
    return " · ".join(parts)


@st.fragment(run_every=data.refresh_s())
def status_bar() -> None:
    st.caption(status_line())


def store_down() -> bool:
    """True (after saying why, in one line) when the store cannot be read right now."""
    health = data.store_health()
    if not health.ok:
        st.warning("The store is down (see the line above): this page shows its data again as soon as it is back.",
                   icon=":material/cloud_off:")
        return True
    return False


def progress_text(snap, what: str) -> str:
    if snap.error:
        return f"Could not read {what}: {snap.error} (retrying)."
    if snap.progress:
        return f"Reading {what} from the store: {snap.progress:,} documents so far…"
    return f"Reading {what} from the store…"
