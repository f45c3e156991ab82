"""How an image was made, written into the WEBP itself as XMP metadata.

The XMP packet goes into the RIFF container as an `XMP ` chunk with the VP8X header's XMP flag
set, so the pixels are never re-encoded: a backend's WEBP keeps its exact bytes.
"""

import struct
from xml.sax.saxutils import escape

NAMESPACE = "https://animeapi.dev/ns/generation/1.0/"

# VP8X flags (https://developers.google.com/speed/webp/docs/riff_container)
XMP_FLAG = 0x04
ALPHA_FLAG = 0x10


def build_xmp(parameters: dict) -> bytes:
    fields = "".join(
        f"<animeapi:{name}>{escape(str(value))}</animeapi:{name}>" for name, value in parameters.items()
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:animeapi="{NAMESPACE}">{fields}</rdf:Description>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode("utf-8")


def _chunks(data: bytes):
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WEBP file")
    offset = 12
    while offset + 8 <= len(data):
        fourcc = data[offset:offset + 4]
        size = struct.unpack("<I", data[offset + 4:offset + 8])[0]
        yield fourcc, data[offset + 8:offset + 8 + size]
        offset += 8 + size + (size & 1)


def _chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) & 1 else b"")


def _lossless_has_alpha(vp8l: bytes) -> bool:
    # VP8L header: 0x2f, then 14 bits width-1, 14 bits height-1, 1 bit "alpha is used".
    return len(vp8l) >= 5 and bool((struct.unpack("<I", vp8l[1:5])[0] >> 28) & 1)


def embed_xmp(webp: bytes, xmp: bytes, *, width: int, height: int) -> bytes:
    """Return `webp` with `xmp` as its XMP chunk (replacing any there was)."""
    chunks = [(fourcc, payload) for fourcc, payload in _chunks(webp) if fourcc != b"XMP "]
    if chunks and chunks[0][0] == b"VP8X":
        flags = chunks[0][1][0] | XMP_FLAG
        chunks[0] = (b"VP8X", bytes([flags]) + chunks[0][1][1:])
    else:
        # A simple (lossy VP8 / lossless VP8L) file gains the extended header that metadata needs.
        has_alpha = bool(chunks) and chunks[0][0] == b"VP8L" and _lossless_has_alpha(chunks[0][1])
        flags = XMP_FLAG | (ALPHA_FLAG if has_alpha else 0)
        header = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", header))
    body = b"WEBP" + b"".join(_chunk(fourcc, payload) for fourcc, payload in chunks) + _chunk(b"XMP ", xmp)
    return b"RIFF" + struct.pack("<I", len(body)) + body
