"""Times as the stores hand them over (datetime, naive UTC datetime, ISO-8601 text, epoch s or ms) made
comparable, and short human texts for ages. Pure functions."""
from __future__ import annotations

import math
from datetime import datetime, timezone

_EPOCH_MS_THRESHOLD = 1e11  # numbers above this are epoch milliseconds (1e11 s is the year 5138)


def to_utc(value) -> datetime | None:
    """A timezone-aware UTC datetime, or None when `value` is missing or not a time.

    pymongo returns naive datetimes that are UTC; Kafka events may carry ISO-8601 text or epoch ms.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return None
        seconds = value / 1000.0 if abs(value) > _EPOCH_MS_THRESHOLD else float(value)
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return to_utc(number)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return to_utc(datetime.fromisoformat(text))
        except ValueError:
            return None
    return None


def age_text(seconds: float | None) -> str:
    """'3 s', '4 min', '2 h', '5 d' (or 'never' for None)."""
    if seconds is None or not math.isfinite(seconds):
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"
