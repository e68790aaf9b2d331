"""Progress bars in a log file: a line per redraw, and few redraws."""
import io
import time

from common import progress


def test_a_bar_written_to_a_file_redraws_rarely_and_on_lines_of_its_own():
    out = io.StringIO()
    with progress.bar(file=out, total=5000, desc="extract", unit="file") as b:
        for _ in range(5000):
            b.update(1)
    lines = [x for x in out.getvalue().split("\n") if x]
    assert "\r" not in out.getvalue()
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("extract: 100%") and "5000/5000" in lines[-1]


def test_a_bar_on_a_terminal_keeps_tqdms_redraws():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    with progress.bar(file=out, total=3, desc="cut", mininterval=0) as b:
        for _ in range(3):
            time.sleep(0.01)
            b.update(1)
    assert out.getvalue().count("\r") >= 3
