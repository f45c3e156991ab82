"""The JSON parser every API endpoint uses: DRF's, less the stack overflow.

Python's json module recurses once per nesting level, so a 64 KiB body of "[[[[…" raises
RecursionError deep inside it (a 500, a logged traceback). The depth is measured on the raw bytes
first, with strings taken out, and anything deeper than any request of ours needs is refused as
400 INVALID_JSON before it is parsed.
"""

import io
import re

from rest_framework import parsers

from .errors import ApiError

MAX_JSON_DEPTH = 32
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_OPENING = frozenset(b"[{")


def nesting_depth(raw: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest (brackets inside strings don't count)."""
    brackets = _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in _OPENING:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def too_deep_error() -> ApiError:
    return ApiError(status_code=400, code="INVALID_JSON", message=f"JSON nests deeper than {MAX_JSON_DEPTH} levels")


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read()
        if nesting_depth(raw) > MAX_JSON_DEPTH:
            raise too_deep_error()
        return super().parse(io.BytesIO(raw), media_type, parser_context)
