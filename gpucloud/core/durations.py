"""Durations as people read them on statements and pages."""

from __future__ import annotations


def duration_text(seconds: int) -> str:
    """2 h 05 min, 3 min 20 s, 45 s."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
