"""JSON bodies parsed in slices, so that a large one does not hold Python's GIL for long.

``json.loads`` runs in C from the first byte to the last without letting another thread run: a
4 MB body of numbers stalls every other thread of the server (its event loop included) for
0.1-1 s. A V2 JSON body is a small structure around long flat lists of numbers (``"data"``), so
:func:`loads` parses those lists in slices of :data:`CHUNK` characters (each slice with
``json.loads``: the same grammar, as strict) into numpy arrays, and the rest of the document,
with each list replaced by a marker, in one call. Between slices other threads run.

What stays in the one call is bounded: JSON other than long number lists (strings, objects,
short lists, nesting) may take at most :data:`STRUCTURE_LIMIT` characters (:class:`JsonError`
``too_large`` beyond), so no body can stall the server longer than parsing that much JSON
takes. A list of at least :data:`MIN_LIST` characters holding nothing but numbers becomes a
numpy array (int64, float64, or object for integers beyond int64) under a ``"data"`` key and a
plain list anywhere else; everything else is exactly what ``json.loads`` returns.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import numpy as np

CHUNK = 32 * 1024  # characters parsed (or scanned) per call into C
MIN_LIST = 512  # shorter number lists stay in the document
MAX_NUMBER = 4096  # characters a single number may take
STRUCTURE_LIMIT = 256 * 1024  # characters of JSON other than long number lists

_OPEN = re.compile(r'["\[]')
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_NUMBER = re.compile(r"[^-+0-9.eE,\s]")


class JsonError(ValueError):
    """A JSON document this loader refuses; ``kind`` is ``syntax``, ``too_large``, ``number``
    or ``depth``."""

    def __init__(self, message: str, kind: str = "syntax") -> None:
        super().__init__(message)
        self.kind = kind


def decode_text(raw: bytes | bytearray | str) -> str:
    """Bytes to text as ``json.loads`` does it (UTF-8, -16 or -32, detected)."""
    if isinstance(raw, str):
        return raw
    return raw.decode(json.detect_encoding(raw), "surrogatepass")


def loads(raw: bytes | bytearray | str, *, structure_limit: int = STRUCTURE_LIMIT) -> Any:
    """``json.loads`` in slices (module docstring). Raises :class:`JsonError`; also
    ``UnicodeDecodeError`` for text that is not UTF-8/16/32."""
    text = decode_text(raw)
    n = len(text)
    arrays: dict[str, np.ndarray] = {}
    nonce = secrets.token_hex(8)
    pieces: list[str] = []
    last = pos = kept = 0

    def too_large() -> JsonError:
        return JsonError(f"the JSON has more than {structure_limit} characters of structure (strings, objects, "
                         f"short or nested lists) besides its lists of numbers", "too_large")

    while True:
        if kept + (pos - last) > structure_limit:
            raise too_large()
        m = _OPEN.search(text, pos, min(n, pos + CHUNK))
        if m is None:
            if pos + CHUNK >= n:
                break
            pos += CHUNK
            continue
        p = m.start()
        if text[p] == '"':
            s = _STRING.match(text, p, min(n, p + structure_limit + 2))
            if s is None:  # unterminated (json reports it), or longer than the structure may be
                if n - p > structure_limit:
                    raise too_large()
                break
            pos = s.end()
            continue
        end = _number_run_end(text, p + 1)
        if end < n and text[end] == "]" and end - p >= MIN_LIST:
            key = f"\x00{nonce}:{len(arrays)}"
            arrays[key] = _parse_numbers(text, p + 1, end)
            pieces.append(text[last:p])
            pieces.append(json.dumps(key))
            kept += p - last
            last = pos = end + 1
        else:
            pos = p + 1
    pieces.append(text[last:])
    skeleton = "".join(pieces) if arrays else text
    if len(skeleton) - 32 * len(arrays) > structure_limit:
        raise too_large()
    obj = _json(skeleton, None if arrays else 0)  # positions in a skeleton are not the text's
    if isinstance(obj, str) and obj in arrays:  # the document is one list of numbers
        return arrays[obj].tolist()
    if arrays:
        _resolve(obj, arrays)
    return obj


def _json(text: str, offset: int | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonError(exc.msg + ("" if offset is None else f" at character {offset + exc.pos}")) from None
    except RecursionError:
        raise JsonError("it is nested too deeply", "depth") from None
    except ValueError:  # an integer over Python's int-string limit (4300 digits)
        raise JsonError("it holds a number too long to parse", "number") from None


def _number_run_end(text: str, i: int) -> int:
    """Index of the first character at or after ``i`` that cannot be part of a number list."""
    n = len(text)
    while i < n:
        m = _NOT_NUMBER.search(text, i, min(n, i + CHUNK))
        if m is not None:
            return m.start()
        i += CHUNK
    return n


def _parse_numbers(text: str, a: int, b: int) -> np.ndarray:
    """The numbers of ``text[a:b]`` (a list's content: numbers, commas, spaces), parsed in
    slices split at commas."""
    parts: list[np.ndarray] = []
    i, split = a, False
    while i < b:
        if b - i <= CHUNK:
            j = b
        else:
            j = text.find(",", i + CHUNK, min(b, i + CHUNK + MAX_NUMBER))
            if j < 0:
                if b > i + CHUNK + MAX_NUMBER:
                    raise JsonError(f"a number at character {i} has more than {MAX_NUMBER} characters", "number")
                j = b
        values = _json("[" + text[i:j] + "]", i - 1)
        if split and not values:
            raise JsonError(f"a list ends with a comma at character {i - 1}")
        parts.append(_array(values))
        i, split = j + 1, j < b
    if split:  # the last slice ended at a comma with nothing after it
        raise JsonError(f"a list ends with a comma at character {b}")
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _array(values: list) -> np.ndarray:
    try:
        return np.asarray(values)
    except OverflowError:  # integers beyond int64: kept exact
        return np.asarray(values, dtype=object)


def _resolve(obj: Any, arrays: dict[str, np.ndarray]) -> None:
    """Put the parsed lists back: arrays under a ``"data"`` key (or nested in its lists), plain
    lists anywhere else. Iterative (the structure is small, but may be deep)."""
    stack: list[tuple[Any, bool]] = [(obj, False)]
    while stack:
        o, in_data = stack.pop()
        items = o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, list) else ()
        for k, v in list(items):
            child_data = (k == "data") if isinstance(o, dict) else in_data
            if isinstance(v, str):
                if v.startswith("\x00") and v in arrays:
                    o[k] = arrays[v] if child_data else arrays[v].tolist()
            elif isinstance(v, (dict, list)):
                stack.append((v, child_data))


__all__ = ["CHUNK", "JsonError", "MIN_LIST", "STRUCTURE_LIMIT", "decode_text", "loads"]
