"""Numbers as a reader should see them: rounded to the precision their standard error supports.

The standard error is kept to two significant digits when its leading digits are below 35 and to
one otherwise (the Particle Data Group rule), and the value is rounded to the same decimal place:
``5.2 ± 1.3``, ``0.52 ± 0.09``, ``0.1 ± 1.8``. A value within two standard errors of zero is
*compatible with zero* (:func:`near_zero`); an undefined number (NaN, e.g. the standard error of a
single sample) prints as an em dash.

>>> format_pm(5.247, 1.31)
'5.2 ± 1.3'
>>> format_pm(0.5247, 0.0921)
'0.52 ± 0.09'
>>> format_pm(5.155, float("nan"))
'5.16 ± —'
"""

from __future__ import annotations

import math
from typing import Any

DASH = "—"


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def error_decimals(stderr: float) -> int:
    """Decimal places that keep ``stderr`` to one or two significant digits (PDG rule).

    Negative results round to tens, hundreds ...
    """
    if stderr <= 0:
        raise ValueError("the standard error must be positive")
    exponent = math.floor(math.log10(stderr))
    leading = stderr / 10 ** (exponent - 2)  # three leading digits, 100 <= leading < 1000
    if leading >= 999.5:  # rounds up to the next power of ten
        exponent, leading = exponent + 1, 100.0
    digits = 2 if leading < 354.5 else 1
    return digits - 1 - exponent


def _fixed(x: float, decimals: int) -> str:
    if decimals >= 0:
        text = f"{x:.{decimals}f}"
    else:
        text = f"{round(x, decimals):.0f}"
    if text.startswith("-") and float(text) == 0:
        text = text[1:]  # no "-0.0"
    return text


def significant(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, in fixed notation where it stays short."""
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    if -4 <= exponent < 6:
        return _fixed(value, max(0, digits - 1 - exponent))
    return f"{value:.{digits - 1}e}"


def format_pm(value: Any, stderr: Any = None, plus_minus: str = "±") -> str:
    """``"value ± stderr"`` rounded to the precision the error supports; ``"—"`` for undefined parts.

    Without a standard error (``None``) only the value is printed, with three significant digits.
    """
    v = _finite(value)
    if v is None:
        return DASH
    if stderr is None:
        return significant(v)
    s = _finite(stderr)
    if s is None:
        return f"{significant(v)} {plus_minus} {DASH}"
    if s == 0:
        return f"{significant(v)} {plus_minus} 0"
    d = error_decimals(s)
    return f"{_fixed(v, d)} {plus_minus} {_fixed(s, d)}"


def near_zero(value: Any, stderr: Any, k: float = 2.0) -> bool:
    """``True`` when ``|value| <= k * stderr``: the value is compatible with zero (needs a finite error)."""
    v, s = _finite(value), _finite(stderr)
    if v is None or s is None:
        return False
    return abs(v) <= k * s


def format_limit(x: float) -> str:
    """A colour-scale limit, three significant digits."""
    v = _finite(x)
    return DASH if v is None else significant(v)
