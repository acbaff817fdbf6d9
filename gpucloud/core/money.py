"""Money is integer micro-USD everywhere; these helpers only format it for people.

The one rule for showing money (pages, emails, messages, the live tickers in static/js/live.js):
an amount is shown exactly, to the micro-dollar the ledger keeps, with trailing zeros dropped
down to whole cents: $5.00, $4.9985, $4.998501, $0.001333, -$0.000833, $0.05/hr. Nothing is
rounded, so the same amount reads the same on every page, a statement row's balance differs from
the row before by exactly that row's amount, and a charge smaller than a cent never reads $0.00.
(Live tickers extrapolate between server snapshots; they round their estimate to the micro-dollar
and then follow the same rule.) Amounts typed into forms are whole cents (`usd_text`, 2 places).
"""

from __future__ import annotations

MICROS_PER_USD = 1_000_000


def usd_text(micros: int, *, places: int = 2) -> str:
    """`4410000` -> `'4.41'` (exact decimal arithmetic, no floats; rounds half up)."""
    scale = 10**places
    sign = "-" if micros < 0 else ""
    units = (abs(micros) * scale + MICROS_PER_USD // 2) // MICROS_PER_USD
    whole, frac = divmod(units, scale)
    return f"{sign}{whole}.{frac:0{places}d}" if places else f"{sign}{whole}"


def usd_display(micros: int) -> str:
    """The module's rule: `4998501` -> `'$4.998501'`, `5000000` -> `'$5.00'`, `-833` -> `'-$0.000833'`,
    `1500` -> `'$0.0015'`."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}${whole}.{digits}"
