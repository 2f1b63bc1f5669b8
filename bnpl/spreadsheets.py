"""Text cells for files merchants open in a spreadsheet (CSV exports, statements): no formula injection.

Excel, WPS and LibreOffice run a cell that begins with ``=``, ``+``, ``-`` or ``@`` as a formula (and a
leading TAB or CR can hide one), so a merchant order number or listing title typed as
``=HYPERLINK(...)`` would run on the reader's machine. :func:`safe_text_cell` prefixes such text with a
single quote, which the spreadsheet shows as plain text. Use it for text only: amounts are written as
numbers or as their formatted figure (a negative amount must stay ``-5.00``). A leaf module: imports nothing
from the project.
"""

from __future__ import annotations

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_text_cell(value: object) -> str:
    """``value`` as text, with a leading ``'`` when it would start a formula; ``None`` → ``""``."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text
