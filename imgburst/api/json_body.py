"""Reading JSON that a client sent: bounded in size, depth and number length.

Python's parser recurses once per nesting level (`[` x 100000 raises RecursionError) and
turns a 5000-digit number into an int only to fail Python's int-digit limit: left to it,
a 32-byte body becomes a 500 and a traceback in the log. No body imgburst takes nests
deeper than a recipe (about 6 levels) or holds a number longer than a float's digits, so
anything past these bounds is refused with a 400 that names the problem.
"""

from __future__ import annotations

import json
import math
from typing import Any

from imgburst.api.errors import Problem

MAX_JSON_BYTES = 1 << 20  # a recipe with every output and operation is a few KB
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 32


class _Refused(ValueError):
    """A value the parser's hooks refuse; its message says which."""


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number has {len(text)} digits; at most {MAX_NUMBER_CHARS}")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number is {len(text)} characters long; at most {MAX_NUMBER_CHARS}")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text} is too large for a float")
    return value


def _constant(text: str) -> float:
    raise _Refused(f"{text} is not JSON (numbers must be finite)")


def _depth(value: Any) -> int:
    """How deeply `value` nests, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((child, depth + 1) for child in
                             (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json(text: str | bytes, field: str | None = None, silent: bool = False) -> Any:
    """Parse a client's JSON, or raise a 400 naming the problem (`field` says where the
    JSON came from, e.g. the `recipe` part). With `silent`, plain invalid JSON gives None
    (the caller says what it expected), but a refused depth or number is still refused."""
    where = f"{field}: " if field else ""
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise Problem(400, "Invalid JSON", f"{where}JSON nested too deeply; at most "
                      f"{MAX_DEPTH} levels", field=field) from None
    except _Refused as exc:
        raise Problem(400, "Invalid JSON", f"{where}{exc}", field=field) from None
    except json.JSONDecodeError as exc:
        if silent:
            return None
        raise Problem(400, "Invalid JSON", f"{where}not valid JSON: {exc.msg} at line "
                      f"{exc.lineno} column {exc.colno}", field=field) from None
    except ValueError as exc:  # undecodable bytes
        if silent:
            return None
        raise Problem(400, "Invalid JSON", f"{where}not valid JSON: {exc}", field=field) from None
    if _depth(value) > MAX_DEPTH:
        raise Problem(400, "Invalid JSON", f"{where}JSON nested too deeply; at most "
                      f"{MAX_DEPTH} levels", field=field)
    return value
