"""API key format: `ank_` + 36 random base62 characters + a 6-character base62 CRC32 checksum.

- The first 6 random characters are kept in clear as the visible prefix; the other 30 carry
  178 bits of entropy that are never stored (the floor is 160).
- The checksum (as GitHub's tokens have) lets a mistyped or truncated key be refused without a
  database query, and lets secret scanners recognise our keys: `ank_(test_)?[A-Za-z0-9]{42}`.
- Only SHA-256 of the whole key is stored. A fast hash is right for a high-entropy random secret:
  nobody can brute-force 178 bits, so key stretching would only cost latency on every request.
"""

import hashlib
import re
import secrets
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LIVE_PREFIX = "ank_"
TEST_PREFIX = "ank_test_"
RANDOM_LENGTH = 36
CHECKSUM_LENGTH = 6
# Random characters kept in clear (after the `ank_`/`ank_test_` prefix) for display and lookup.
VISIBLE_RANDOM = 6
KEY_PATTERN = re.compile(r"^ank_(?:test_)?[0-9A-Za-z]{42}$")


def _base62(number, width):
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(BASE62[digit])
    return "".join(reversed(chars))


def _checksum(body):
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate_key(*, test=False):
    body = (TEST_PREFIX if test else LIVE_PREFIX) + "".join(
        secrets.choice(BASE62) for _ in range(RANDOM_LENGTH)
    )
    return body + _checksum(body)


def is_well_formed(key):
    """Shape and checksum only: no database needed."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        return False
    body, checksum = key[:-CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    return secrets.compare_digest(_checksum(body), checksum)


# A key anywhere in a text (a URL's query, a log line): the prefix and a body of key characters.
KEY_IN_TEXT = re.compile(r"(?<![0-9A-Za-z_])ank_(?:test_)?[0-9A-Za-z]{20,}")


def hash_key(key):
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def is_test_key(key):
    return key.startswith(TEST_PREFIX)


def visible_prefix(key):
    return key[: len(TEST_PREFIX if is_test_key(key) else LIVE_PREFIX) + VISIBLE_RANDOM]
