"""Money is integer micro-USD everywhere; these helpers only format it for people."""

from __future__ import annotations

MICROS_PER_USD = 1_000_000


def usd_text(micros: int, *, places: int = 2) -> str:
    """`4410000` -> `'4.41'` (exact decimal arithmetic, no floats; rounds half up)."""
    scale = 10**places
    sign = "-" if micros < 0 else ""
    units = (abs(micros) * scale + MICROS_PER_USD // 2) // MICROS_PER_USD
    whole, frac = divmod(units, scale)
    return f"{sign}{whole}.{frac:0{places}d}" if places else f"{sign}{whole}"
