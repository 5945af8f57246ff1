"""How the portal words things people read at a glance: one way to say a span of time, or an amount, everywhere."""

from __future__ import annotations

from decimal import Decimal


def duration(seconds) -> str:
    """A span of seconds as people say it: "45 s", "12 min", "2 h 05 min", "3 d 4 h" (empty for no number)."""
    try:
        total = max(0, int(float(seconds)))
    except (TypeError, ValueError):
        return ""
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def amount(value) -> str:
    """A money amount as people read it in a sentence: thousands grouped, two decimals ("15,155.94").

    What is not a finite number (a payload missing its figure) is shown as it came.
    """
    try:
        number = Decimal(str(value))
    except ArithmeticError:  # decimal.InvalidOperation
        return str(value)
    return f"{number:,.2f}" if number.is_finite() else str(value)
