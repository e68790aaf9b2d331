"""Progress bars that stay readable in a log file.

On a terminal a tqdm bar redraws itself in place. Written to a file or a pipe (spark-submit's output
redirected to a log, CI), every redraw is appended, and a long job left one line of thousands of
updates. `bar` keeps tqdm's behaviour on a terminal and elsewhere redraws at most every
`LOG_INTERVAL_S` seconds, each redraw on a line of its own.
"""
from __future__ import annotations

import sys

LOG_INTERVAL_S = 30.0


class _Lines:
    """A text stream where tqdm's carriage returns start new lines."""

    def __init__(self, out):
        self.out = out

    def write(self, text: str) -> int:
        return self.out.write(text.replace("\r", "\n") if text.strip() else "")

    def flush(self) -> None:
        self.out.flush()


def is_terminal(out) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


def bar(file=None, **kwargs):
    """A tqdm bar on `file` (stderr by default), sparse and line by line when that is no terminal."""
    from tqdm import tqdm

    out = file if file is not None else sys.stderr
    if not is_terminal(out):
        interval = max(float(kwargs.get("mininterval", 0.1)), LOG_INTERVAL_S)
        kwargs.update(mininterval=interval, maxinterval=max(interval, float(kwargs.get("maxinterval", 10.0))),
                      dynamic_ncols=False, ncols=100, ascii=True)
        out = _Lines(out)
    return tqdm(file=out, **kwargs)
