"""Kubernetes quantities (`500m`, `1.5`, `128Mi`, `1G`, `1e3`), parsed as the API server does.

How this works: a port of `ParseQuantity` from k8s.io/apimachinery
(pkg/api/resource/quantity.go), quirks included, so that a value means here
exactly what it means on a cluster:

* the text splits into sign, digits, optional `.digits`, and a suffix: one of
  the decimal SI suffixes `n u m "" k M G T P E`, the binary ones
  `Ki Mi Gi Ti Pi Ei`, or an exponent `e3` / `E-2`. `K` is not a suffix;
  `1.` and `.5` are numbers; no space is allowed inside.
* a value small enough to be held exactly (at most 18 digits, no finer than
  nanos) is kept exactly, however large its suffix makes it.
* any other value is rounded *up*, away from zero, to a whole nano (so asking
  for a tiny amount never yields zero), and capped at 2^63-1.

`cpu_millicores` and `memory_bytes` then round up again, to whole millicores
and whole bytes, as `Quantity.MilliValue()` and `Quantity.Value()` do.
"""

from __future__ import annotations

import decimal
import math
from decimal import Decimal

from podvisor.supervisor.errors import QuantityError

__all__ = ["QuantityError", "cpu_millicores", "memory_bytes", "parse_quantity"]

_DECIMAL_SUFFIXES = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")
_MAX = Decimal(2**63 - 1)  # maxAllowed in quantity.go
_NANO = Decimal("1e-9")
_INT64 = range(-(2**63), 2**63)
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def parse_quantity(text: str) -> Decimal:
    """The exact value Kubernetes gives `text`; QuantityError when it is not a quantity."""
    if not text:
        raise QuantityError("empty")
    if text == "0":
        return Decimal(0)
    positive, value, num, denom, suffix = _split(text)
    base, exponent, kind = _interpret(suffix)
    with decimal.localcontext() as ctx:
        # Exact arithmetic whatever the exponent, as with Go's inf.Dec: the digits
        # of the text, times at most 2^60 (19 digits), then nanos (9 more).
        ctx.prec = len(text) + 40
        ctx.Emax = decimal.MAX_EMAX
        ctx.Emin = decimal.MIN_EMIN
        exact = _fast_path(positive, num, denom, exponent, kind)
        if exact is not None:
            return +exact
        return +_rounded(value, base, exponent)


def cpu_millicores(quantity: Decimal) -> int:
    """Whole millicores, rounded up as `Quantity.MilliValue()` rounds; at most 2^63-1."""
    return _saturated(quantity.scaleb(3, _EXACT))


def memory_bytes(quantity: Decimal) -> int:
    """Whole bytes, rounded up as `Quantity.Value()` rounds; at most 2^63-1."""
    return _saturated(quantity)


def _saturated(amount: Decimal) -> int:
    # Go's int64 results overflow past 2^63-1; saturating says "no limit" instead.
    if amount.copy_abs() >= _MAX:
        return int(_MAX) if amount > 0 else -int(_MAX)
    return math.ceil(amount)


# --- parseQuantityString -----------------------------------------------------------


def _split(text: str) -> tuple[bool, str, str, str, str]:
    """(positive, value, num, denom, suffix), as parseQuantityString returns them."""
    end = len(text)
    pos = 0
    positive = True
    if text[0] in "+-":
        positive = text[0] == "+"
        pos = 1
    while pos < end and text[pos] == "0":  # leading zeros do not count as precision
        pos += 1
    if pos == end:
        return positive, "0", "0", "", ""
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    num = text[start:pos] or "0"
    denom = ""
    if pos < end and text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        denom = text[start:pos]
    value = text[:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise QuantityError(f"unexpected {text[pos]!r}")
    return positive, value, num, denom, text[suffix_start:]


def _interpret(suffix: str) -> tuple[int, int, str]:
    """(base, exponent, format) of a suffix, as suffixHandler.interpret reads it."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], "DecimalSI"
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], "BinarySI"
    if len(suffix) > 1 and suffix[0] in "eE" and _is_go_int(suffix[1:]):
        parsed = int(suffix[1:])
        if parsed in _INT64:
            # Go stores the exponent in an int32: larger ones wrap around.
            return 10, (parsed + 2**31) % 2**32 - 2**31, "DecimalExponent"
    raise QuantityError(f"unknown suffix {suffix!r}")


def _is_go_int(text: str) -> bool:
    digits = text[1:] if text[:1] in "+-" else text
    return bool(digits) and set(digits) <= _DIGITS


# --- ParseQuantity -------------------------------------------------------------------


def _fast_path(positive: bool, num: str, denom: str, exponent: int, kind: str) -> Decimal | None:
    """The exact value when it fits an int64 at nano scale or coarser, else None."""
    mantissa = 1
    if kind == "BinarySI":
        if exponent < 0 or denom:
            return None
        mantissa = 1 << exponent
        # quantity.go estimates the decimal digits 2^exponent takes as exponent*0.3.
        precision = 15 - len(num) - int(exponent * 3 / 10) - 1
        scale = 0
    else:
        precision = 18 - (len(num) + len(denom))
        scale = exponent
    if precision < 0:
        return None
    scale -= len(denom)
    if scale < -9:
        return None
    result = int(num + denom) * mantissa
    if result not in _INT64:
        return None
    return Decimal(result if positive else -result).scaleb(scale)


def _rounded(value: str, base: int, exponent: int) -> Decimal:
    """The slow path: exact arithmetic, then round up to nanos and cap at 2^63-1."""
    try:
        amount = Decimal(value)
    except decimal.InvalidOperation:
        raise QuantityError(f"{value!r} is not a number") from None
    amount = amount.scaleb(exponent) if base == 10 else amount * 2**exponent
    negative = amount < 0
    amount = abs(amount)
    if amount > _MAX:
        amount = _MAX
    elif amount:
        amount = amount.quantize(_NANO, rounding=decimal.ROUND_UP)
    return -amount if negative else amount
