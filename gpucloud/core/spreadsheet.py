"""CSV cells that a spreadsheet shows as text, never runs as a formula.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is taken for a formula by
Excel, LibreOffice and Google Sheets, so text a user chose (a deployment's name in a statement's
description) could make the owner's spreadsheet fetch a URL or run a command when opened. OWASP's
rule: prefix such a cell with a single quote, which the spreadsheet shows as text. Numbers the
platform formats itself (amounts such as -5.000000) are written as they are, so they stay numbers.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """`value` as a cell a spreadsheet shows as text."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value
