"""tern_wire: a Python client for the tern binary protocol, version 1.

Written from docs/wire-protocol.md alone (the section numbers below refer to it).

Layers, bottom up:

* frames (section 1): :func:`encode_frame`, :func:`parse_header`, :class:`Frame`;
* the archive format (section 4): archive types (:data:`STRING`, :func:`vec`, ...),
  :func:`encode` and :func:`decode`;
* items (section 5): DynamoDB-JSON values (``{"S": "x"}``, ``{"N": "1.5"}``, ``{"B": b""}``,
  ``{"BOOL": True}``, ``{"NULL": True}``, ``{"M": {...}}``, ``{"L": [...]}``,
  ``{"SS": [...]}``, ``{"NS": [...]}``, ``{"BS": [...]}``), :func:`canonicalize_number`,
  :func:`normalize_item`, :func:`encode_item`, :func:`decode_item`, :func:`item_size`;
* messages (section 6): one dataclass per request/response type, with its archive type;
* routing (section 7): :func:`partition_hash`, :func:`partition_of`;
* :class:`Connection` (one socket, pipelining by request id) and :class:`TernClient`
  (typed calls, routing single-key requests to the owning shard's port when the
  ``xxhash`` package is importable, else everything goes to the shared port).
"""

from __future__ import annotations

import dataclasses
import decimal
import enum
import re
import socket
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

try:  # section 7: xxh3_64, seed 0, default secret
    import xxhash as _xxhash

    HAVE_XXHASH = hasattr(_xxhash, "xxh3_64_intdigest")
except ImportError:  # pragma: no cover - depends on the machine
    _xxhash = None
    HAVE_XXHASH = False

# ---------------------------------------------------------------------------
# Section 1: frames
# ---------------------------------------------------------------------------

MAGIC = b"TERN"
PROTOCOL_VERSION = 1
HEADER_SIZE = 32
FRAME_BODY_MAX_BYTES = 25_165_824  # 24 MiB
IN_FLIGHT_PER_CONNECTION_MAX = 1024
NO_SHARD = 0xFFFFFFFF

FLAG_RESPONSE = 0x0001
FLAG_ERROR = 0x0002
FLAG_FOUND = 0x0004
FLAG_FORWARDED = 0x0008
KNOWN_FLAGS = FLAG_RESPONSE | FLAG_ERROR | FLAG_FOUND | FLAG_FORWARDED

_HEADER = struct.Struct("<4sBBHQIIII")
assert _HEADER.size == HEADER_SIZE


class Op(enum.IntEnum):
    """Section 3."""

    HELLO = 1
    CREATE_TABLE = 2
    DELETE_TABLE = 3
    DESCRIBE_TABLE = 4
    LIST_TABLES = 5
    PUT_ITEM = 6
    GET_ITEM = 7
    DELETE_ITEM = 8
    QUERY = 9
    SCAN = 10
    BATCH_GET_ITEM = 11
    BATCH_WRITE_ITEM = 12
    STATS = 13


def crc32(body: bytes) -> int:
    """IEEE CRC-32 (zlib's); 0 for an empty body."""
    return zlib.crc32(body) & 0xFFFFFFFF


@dataclass
class Frame:
    opcode: int
    flags: int
    request_id: int
    body: bytes
    shard_hint: int = NO_SHARD
    version: int = PROTOCOL_VERSION
    body_crc32: Optional[int] = None  # as carried; None = computed
    magic: bytes = MAGIC
    reserved: int = 0

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE) and bool(self.flags & FLAG_ERROR)

    @property
    def found(self) -> bool:
        return bool(self.flags & FLAG_FOUND)

    def encode(self) -> bytes:
        crc = crc32(self.body) if self.body_crc32 is None else self.body_crc32
        return (
            _HEADER.pack(
                self.magic,
                self.version,
                self.opcode,
                self.flags,
                self.request_id,
                len(self.body),
                crc,
                self.shard_hint,
                self.reserved,
            )
            + self.body
        )

    def error(self) -> "ErrorResponse":
        return decode(ERROR_RESPONSE, self.body)


def encode_frame(
    opcode: int,
    request_id: int,
    body: bytes = b"",
    flags: int = 0,
    shard_hint: int = NO_SHARD,
) -> bytes:
    return Frame(opcode, flags, request_id, bytes(body), shard_hint).encode()


@dataclass
class Header:
    magic: bytes
    version: int
    opcode: int
    flags: int
    request_id: int
    body_len: int
    body_crc32: int
    shard_hint: int
    reserved: int


def parse_header(data: bytes) -> Header:
    if len(data) < HEADER_SIZE:
        raise ProtocolError("short frame header")
    return Header(*_HEADER.unpack_from(data, 0))


def check_header(h: Header) -> None:
    """The checks the server applies to a header (section 1/2.3)."""
    if h.magic != MAGIC:
        raise ProtocolError("bad magic %r" % h.magic)
    if h.version != PROTOCOL_VERSION:
        raise ProtocolError("bad version %d" % h.version)
    if h.flags & ~KNOWN_FLAGS:
        raise ProtocolError("unknown flag bits 0x%04x" % h.flags)
    if h.reserved != 0:
        raise ProtocolError("reserved field is %d" % h.reserved)
    if h.body_len > FRAME_BODY_MAX_BYTES:
        raise ProtocolError("body_len %d too large" % h.body_len)


def decode_frame(data: bytes) -> Frame:
    """Decode one complete frame (header + body) from ``data``; checks the CRC."""
    h = parse_header(data)
    check_header(h)
    body = bytes(data[HEADER_SIZE : HEADER_SIZE + h.body_len])
    if len(body) != h.body_len or len(data) != HEADER_SIZE + h.body_len:
        raise ProtocolError("frame length does not match body_len")
    if crc32(body) != h.body_crc32:
        raise ProtocolError("body CRC mismatch")
    return Frame(h.opcode, h.flags, h.request_id, body, h.shard_hint, h.version, h.body_crc32, h.magic, h.reserved)


# ---------------------------------------------------------------------------
# Section 2: errors
# ---------------------------------------------------------------------------


class ErrorCode(enum.IntEnum):
    ValidationException = 1
    ResourceNotFoundException = 2
    ResourceInUseException = 3
    ConditionalCheckFailedException = 4
    TransactionCanceledException = 5
    ProvisionedThroughputExceededException = 6
    ThrottlingException = 7
    RequestLimitExceeded = 8
    LimitExceededException = 9
    ItemCollectionSizeLimitExceededException = 10
    InternalServerError = 11
    ServiceUnavailable = 12
    SerializationException = 13
    UnknownOperationException = 14


RETRYABLE_CODES = frozenset({6, 7, 8, 11, 12})


class ProtocolError(Exception):
    """The byte stream is not what the protocol allows (client-side detection)."""


class ArchiveError(ProtocolError):
    """An archive cannot be decoded."""


class ConnectionClosed(ProtocolError):
    """The peer closed the connection."""


class TernError(Exception):
    """An error response (section 2.1/2.2/2.3)."""

    def __init__(self, code: int, message: str, frame: Optional[Frame] = None):
        self.code = code
        self.message = message
        self.frame = frame
        try:
            self.name = ErrorCode(code).name
        except ValueError:  # codes we do not know are accepted, not retryable
            self.name = "Unknown(%d)" % code
        super().__init__("%s (%d): %s" % (self.name, code, message))

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES


# ---------------------------------------------------------------------------
# Section 4: the archive format
# ---------------------------------------------------------------------------

STRING_MAX_BYTES = (1 << 30) - 1


def _need(buf: bytes, at: int, n: int) -> None:
    if at < 0 or n < 0 or at + n > len(buf):
        raise ArchiveError("range [%d, %d) outside buffer of %d bytes" % (at, at + n, len(buf)))


class ArchiveType:
    """An archived type: ``size`` fixed bytes, plus out-of-line data.

    ``ser(out, v)`` is step 1 of section 4.7 (append the out-of-line data, return a
    resolver); ``fixed(v, r, at)`` is step 2 (the fixed-size bytes, placed at ``at``);
    ``read(buf, at)`` decodes the object whose fixed bytes start at ``at``.
    """

    size: int = 0
    name: str = "?"

    def ser(self, out: bytearray, v: Any) -> Any:
        return None

    def fixed(self, v: Any, r: Any, at: int) -> bytes:
        raise NotImplementedError

    def read(self, buf: bytes, at: int) -> Any:
        raise NotImplementedError


class _Prim(ArchiveType):
    def __init__(self, fmt: str, name: str):
        self._st = struct.Struct("<" + fmt)
        self.size = self._st.size
        self.name = name

    def fixed(self, v, r, at):
        return self._st.pack(v)

    def read(self, buf, at):
        _need(buf, at, self.size)
        return self._st.unpack_from(buf, at)[0]


class _Bool(ArchiveType):
    size = 1
    name = "bool"

    def fixed(self, v, r, at):
        return b"\x01" if v else b"\x00"

    def read(self, buf, at):
        _need(buf, at, 1)
        b = buf[at]
        if b > 1:
            raise ArchiveError("bool set to invalid byte %d at %d" % (b, at))
        return b == 1


U8 = _Prim("B", "u8")
U16 = _Prim("H", "u16")
U32 = _Prim("I", "u32")
U64 = _Prim("Q", "u64")
BOOL = _Bool()


def _utf8(v: Union[str, bytes]) -> bytes:
    # bytes are accepted so that tests can build invalid strings on purpose
    return v if isinstance(v, (bytes, bytearray)) else v.encode("utf-8")


def string_len_field(n: int) -> int:
    """Section 4.3: the u32 length word of an out-of-line string."""
    return 0x80 | (n & 0x3F) | ((n >> 6) << 8)


class _String(ArchiveType):
    """Section 4.3: inline (<= 8 bytes) or out of line."""

    size = 8
    name = "String"

    def ser(self, out, v):
        b = _utf8(v)
        if len(b) <= 8:
            return None
        if len(b) > STRING_MAX_BYTES:
            raise ValueError("string longer than 2^30 - 1 bytes")
        p = len(out)
        out += b
        return p

    def fixed(self, v, r, at):
        b = _utf8(v)
        if len(b) <= 8:
            return bytes(b) + b"\xff" * (8 - len(b))
        return struct.pack("<Ii", string_len_field(len(b)), r - at)

    def read(self, buf, at):
        _need(buf, at, 8)
        if buf[at] & 0xC0 != 0x80:
            raw = bytes(buf[at : at + 8])
            i = raw.find(b"\xff")
            if i >= 0:
                raw = raw[:i]
        else:
            word, off = struct.unpack_from("<Ii", buf, at)
            n = (word & 0x3F) | ((word >> 8) << 6)
            if n <= 8:
                raise ArchiveError("out-of-line string at %d with length %d <= 8" % (at, n))
            _need(buf, at + off, n)
            raw = bytes(buf[at + off : at + off + n])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ArchiveError("invalid UTF-8 in string at %d: %s" % (at, e)) from None


STRING = _String()


class _Vec(ArchiveType):
    """Section 4.4: Vec<T>, offset then length."""

    size = 8

    def __init__(self, elem: ArchiveType):
        self.elem = elem

    @property
    def name(self):
        return "Vec<%s>" % self.elem.name

    def ser(self, out, v):
        v = list(v)
        rs = [self.elem.ser(out, e) for e in v]
        p = len(out)
        for e, r in zip(v, rs):
            out += self.elem.fixed(e, r, len(out))
        return p

    def fixed(self, v, r, at):
        return struct.pack("<iI", r - at, len(v))

    def read(self, buf, at):
        _need(buf, at, 8)
        off, n = struct.unpack_from("<iI", buf, at)
        start = at + off
        _need(buf, start, n * self.elem.size)
        return [self.elem.read(buf, start + k * self.elem.size) for k in range(n)]


def vec(elem: ArchiveType) -> ArchiveType:
    return _Vec(elem)


class _Bytes(ArchiveType):
    """``Bytes`` = Vec<u8>, as Python ``bytes``."""

    size = 8
    name = "Bytes"

    def ser(self, out, v):
        p = len(out)
        out += bytes(v)
        return p

    def fixed(self, v, r, at):
        return struct.pack("<iI", r - at, len(v))

    def read(self, buf, at):
        _need(buf, at, 8)
        off, n = struct.unpack_from("<iI", buf, at)
        _need(buf, at + off, n)
        return bytes(buf[at + off : at + off + n])


BYTES = _Bytes()


class _Struct(ArchiveType):
    """Section 4.5: fields back to back. Python value: an instance of ``cls``
    (a dataclass with the same field names) or, without ``cls``, a tuple."""

    def __init__(self, name: str, fields: Sequence[Tuple[str, ArchiveType]], cls: Optional[type] = None):
        self.name = name
        self.fields = list(fields)
        self.cls = cls

    @property
    def size(self):
        return sum(t.size for _, t in self.fields)

    def offsets(self) -> Dict[str, int]:
        o, res = 0, {}
        for n, t in self.fields:
            res[n] = o
            o += t.size
        return res

    def _values(self, v):
        if self.cls is None:
            return list(v)
        return [getattr(v, n) for n, _ in self.fields]

    def ser(self, out, v):
        return [t.ser(out, fv) for (_, t), fv in zip(self.fields, self._values(v))]

    def fixed(self, v, rs, at):
        b = bytearray()
        for (_, t), fv, r in zip(self.fields, self._values(v), rs):
            b += t.fixed(fv, r, at + len(b))
        return bytes(b)

    def read(self, buf, at):
        _need(buf, at, self.size)
        vals, pos = [], at
        for _, t in self.fields:
            vals.append(t.read(buf, pos))
            pos += t.size
        return tuple(vals) if self.cls is None else self.cls(*vals)


class _Enum(ArchiveType):
    """Section 4.5: a tag byte, the variant's fields, ``00`` up to the common size.

    ``variants[tag]`` lists the field types of variant ``tag``; ``split(v)`` gives
    ``(tag, [field values])`` for a Python value, ``join(tag, fields)`` the reverse."""

    def __init__(self, name: str, variants, split: Callable, join: Callable):
        self.name = name
        self.variants = variants
        self.split = split
        self.join = join

    @property
    def size(self):
        return 1 + max(sum(t.size for t in fs) for fs in self.variants)

    def ser(self, out, v):
        tag, vals = self.split(v)
        return [t.ser(out, fv) for t, fv in zip(self.variants[tag], vals)]

    def fixed(self, v, rs, at):
        tag, vals = self.split(v)
        b = bytearray([tag])
        for t, fv, r in zip(self.variants[tag], vals, rs):
            b += t.fixed(fv, r, at + len(b))
        return bytes(b) + b"\x00" * (self.size - len(b))

    def read(self, buf, at):
        _need(buf, at, self.size)
        tag = buf[at]
        if tag >= len(self.variants):
            raise ArchiveError("invalid discriminant %d for enum %s at %d" % (tag, self.name, at))
        vals, pos = [], at + 1
        for t in self.variants[tag]:
            vals.append(t.read(buf, pos))
            pos += t.size
        return self.join(tag, vals)


def option(t: ArchiveType) -> ArchiveType:
    """Option<T>: None is ``00`` + size(T) zero bytes; Some is ``01`` + T."""
    return _Enum(
        "Option<%s>" % t.name,
        [[], [t]],
        lambda v: (0, []) if v is None else (1, [v]),
        lambda tag, vals: None if tag == 0 else vals[0],
    )


def unit_enum(cls: type) -> ArchiveType:
    """A field-less enum (just the tag byte), as an IntEnum ``cls``."""
    return _Enum(cls.__name__, [[] for _ in cls], lambda v: (int(v), []), lambda tag, vals: cls(tag))


def encode(t: ArchiveType, value: Any) -> bytes:
    """Section 4.7's encoder: out-of-line data depth-first, the root last."""
    out = bytearray()
    r = t.ser(out, value)
    out += t.fixed(value, r, len(out))
    return bytes(out)


def decode(t: ArchiveType, buf: bytes) -> Any:
    """Section 4.6: the root is the last ``size(T)`` bytes."""
    buf = bytes(buf)
    if len(buf) < t.size:
        raise ArchiveError("buffer of %d bytes is shorter than %s (%d)" % (len(buf), t.name, t.size))
    return t.read(buf, len(buf) - t.size)


# ---------------------------------------------------------------------------
# Section 5: items
# ---------------------------------------------------------------------------

VALUE_TAGS = ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS")
SCALAR_TAG_BYTES = {"S": b"S", "N": b"N", "B": b"B"}  # section 7's type tag
ITEM_SIZE_MAX = 409_600
ITEM_ENCODED_MAX_BYTES = 4_190_208
KEY_ITEM_ENCODED_MAX_BYTES = 3624
NESTING_MAX = 32


class _AttrMap(ArchiveType):
    """``Vec<Attr>`` (an Item's ``attrs`` or an M payload). Python value: a dict
    (wire order = insertion order) or a list of (name, value) pairs."""

    size = 8
    name = "Vec<Attr>"

    def __init__(self):
        self._vec: Optional[_Vec] = None  # set once ATTR exists

    @staticmethod
    def _pairs(v):
        return list(v.items()) if isinstance(v, dict) else [tuple(p) for p in v]

    def ser(self, out, v):
        return self._vec.ser(out, self._pairs(v))

    def fixed(self, v, r, at):
        return self._vec.fixed(self._pairs(v), r, at)

    def read(self, buf, at):
        return dict(self._vec.read(buf, at))

    def read_pairs(self, buf, at):
        return self._vec.read(buf, at)


def _value_split(v: dict):
    if not isinstance(v, dict) or len(v) != 1:
        raise ValueError("a value is a dict with exactly one type key, got %r" % (v,))
    (k, p), = v.items()
    tag = VALUE_TAGS.index(k)
    if k == "NULL":
        return tag, []
    return tag, [p]


def _value_join(tag: int, vals: list):
    k = VALUE_TAGS[tag]
    return {k: True} if k == "NULL" else {k: vals[0]}


_ATTRS = _AttrMap()
VALUE = _Enum("Value", [], _value_split, _value_join)
ATTR = _Struct("Attr", [("name", STRING), ("value", VALUE)])
_ATTRS._vec = _Vec(ATTR)
# Number is a struct of one String: the same 8 bytes.
VALUE.variants = [
    [STRING],  # S
    [STRING],  # N
    [BYTES],  # B
    [BOOL],  # BOOL
    [],  # NULL
    [_ATTRS],  # M
    [_Vec(VALUE)],  # L
    [_Vec(STRING)],  # SS
    [_Vec(STRING)],  # NS
    [_Vec(BYTES)],  # BS
]
ITEM = _ATTRS  # Item { attrs: Vec<Attr> } is 8 bytes: exactly the vector field
assert ATTR.size == 17 and VALUE.size == 9 and ITEM.size == 8

# ---- canonical numbers (section 5.2) ----

_NUM_INPUT = re.compile(r"^([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?$")
_NUM_CANONICAL = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$")


def canonicalize_number(text: Union[str, int, decimal.Decimal]) -> str:
    """Section 5.2's canonicalization; ValueError for input tern refuses."""
    if isinstance(text, bool) or isinstance(text, float):
        raise TypeError("pass numbers as str, int or Decimal")
    s = str(text)
    m = _NUM_INPUT.match(s)
    if not m or not (m.group(2) or m.group(3)):
        raise ValueError("not a number: %r" % s)
    sign, ip, fp, ex = m.group(1), m.group(2), m.group(3) or "", m.group(4)
    digits = ip + fp
    e = len(ip) + (int(ex) if ex else 0)  # |v| = 0.digits x 10^e
    stripped = digits.lstrip("0")
    e -= len(digits) - len(stripped)
    sig = stripped.rstrip("0")
    n = len(sig)
    if n == 0:
        return "0"
    if n > 38:
        raise ValueError("%r has %d significant digits (max 38)" % (s, n))
    if not (-129 <= e <= 126):
        raise ValueError("%r is out of range" % s)
    if e <= 0:
        body = "0." + "0" * (-e) + sig
    elif e < n:
        body = sig[:e] + "." + sig[e:]
    else:
        body = sig + "0" * (e - n)
    return ("-" if sign == "-" else "") + body


def is_canonical_number(text: str) -> bool:
    if not _NUM_CANONICAL.match(text) or text == "-0":
        return False
    try:
        return canonicalize_number(text) == text
    except ValueError:
        return False


def number_key(text: str) -> decimal.Decimal:
    """Numeric sort key of a number's text (Decimal comparisons are exact)."""
    return decimal.Decimal(text)


def significant_digits(canonical: str) -> int:
    d = canonical.lstrip("-").replace(".", "").strip("0")
    return len(d)


# ---- normalization: sorting names and sets, canonical numbers (section 5.3) ----


def _name_key(name: str) -> bytes:
    return name.encode("utf-8")


def normalize_value(v: dict) -> dict:
    """A value in the form the server accepts: numbers canonical, sets sorted
    (SS/BS bytewise, NS numerically), M entries sorted by name. ValueError for
    what cannot be made valid (duplicate or empty sets, unknown types)."""
    if not isinstance(v, dict) or len(v) != 1:
        raise ValueError("a value is a dict with exactly one type key, got %r" % (v,))
    (k, p), = v.items()
    if k == "S":
        if not isinstance(p, str):
            raise TypeError("S wants str")
        return {"S": p}
    if k == "N":
        return {"N": canonicalize_number(p)}
    if k == "B":
        return {"B": bytes(p)}
    if k == "BOOL":
        return {"BOOL": bool(p)}
    if k == "NULL":
        if p is not True:
            raise ValueError("NULL must be True")
        return {"NULL": True}
    if k == "M":
        return {"M": normalize_item(p)}
    if k == "L":
        return {"L": [normalize_value(e) for e in p]}
    if k in ("SS", "NS", "BS"):
        if k == "SS":
            members = [str(x) for x in p]
            members.sort(key=_name_key)
        elif k == "BS":
            members = sorted(bytes(x) for x in p)
        else:
            members = sorted((canonicalize_number(x) for x in p), key=number_key)
        if not members:
            raise ValueError("%s must not be empty" % k)
        if len(set(members)) != len(members):
            raise ValueError("%s has duplicate members" % k)
        return {k: members}
    raise ValueError("unknown value type %r" % k)


def normalize_item(item: Union[dict, Iterable[Tuple[str, dict]]]) -> dict:
    pairs = list(item.items()) if isinstance(item, dict) else list(item)
    names = [n for n, _ in pairs]
    if any(not n for n in names):
        raise ValueError("attribute names must be non-empty")
    if len(set(names)) != len(names):
        raise ValueError("duplicate attribute names")
    return {n: normalize_value(v) for n, v in sorted(pairs, key=lambda p: _name_key(p[0]))}


def encode_item(item, canonical: bool = True) -> bytes:
    """An item archive (section 5). ``canonical=False`` encodes exactly what is given
    (order and number texts), e.g. to send invalid items on purpose."""
    if canonical:
        item = normalize_item(item)
    return encode(ITEM, item)


def decode_item(blob: bytes) -> dict:
    return decode(ITEM, blob)


def decode_item_pairs(blob: bytes) -> List[Tuple[str, dict]]:
    blob = bytes(blob)
    if len(blob) < ITEM.size:
        raise ArchiveError("item blob shorter than 8 bytes")
    return ITEM.read_pairs(blob, len(blob) - ITEM.size)


def encode_value(v: dict) -> bytes:
    return encode(VALUE, v)


# ---- DynamoDB size (section 5.4) ----


def value_size(v: dict) -> int:
    (k, p), = v.items()
    if k == "S":
        return len(p.encode("utf-8"))
    if k == "N":
        n = significant_digits(p)
        return 1 if n == 0 else (n + 1) // 2 + 1
    if k == "B":
        return len(p)
    if k in ("BOOL", "NULL"):
        return 1
    if k == "M":
        return 3 + sum(1 + len(n.encode("utf-8")) + value_size(x) for n, x in p.items())
    if k == "L":
        return 3 + sum(1 + value_size(x) for x in p)
    if k == "SS":
        return sum(len(x.encode("utf-8")) for x in p)
    if k == "NS":
        return sum(value_size({"N": x}) for x in p)
    if k == "BS":
        return sum(len(x) for x in p)
    raise ValueError(k)


def item_size(item: dict) -> int:
    return sum(len(n.encode("utf-8")) + value_size(v) for n, v in item.items())


def compare_scalar(a: dict, b: dict) -> int:
    """DynamoDB order of two scalar values of one type: S/B bytewise, N numerically."""
    (ka, pa), = a.items()
    (kb, pb), = b.items()
    if ka != kb:
        raise ValueError("different types")
    if ka == "N":
        x, y = number_key(pa), number_key(pb)
    elif ka == "S":
        x, y = pa.encode("utf-8"), pb.encode("utf-8")
    else:
        x, y = bytes(pa), bytes(pb)
    return (x > y) - (x < y)


def scalar_sort_key(v: dict):
    (k, p), = v.items()
    return number_key(p) if k == "N" else (p.encode("utf-8") if k == "S" else bytes(p))


# ---------------------------------------------------------------------------
# Section 6: messages
# ---------------------------------------------------------------------------


class ScalarType(enum.IntEnum):
    S = 0
    N = 1
    B = 2


class TableStatus(enum.IntEnum):
    CREATING = 0
    ACTIVE = 1
    DELETING = 2


class ReturnValues(enum.IntEnum):
    NONE = 0
    ALL_OLD = 1


SCALAR_TYPE = unit_enum(ScalarType)
TABLE_STATUS = unit_enum(TableStatus)
RETURN_VALUES = unit_enum(ReturnValues)


@dataclass
class ErrorResponse:
    code: int
    message: str


@dataclass
class HelloRequest:
    client_name: str = "tern_wire.py"


@dataclass
class ShardInfo:
    shard: int
    core: int
    port: int


@dataclass
class HelloResponse:
    node_id: str
    protocol_version: int
    shared_port: int
    shards: List[ShardInfo]
    partition_map: List[int]


@dataclass
class KeyAttr:
    name: str
    ty: ScalarType


@dataclass
class KeySchema:
    partition: KeyAttr
    sort: Optional[KeyAttr] = None


@dataclass
class TableDescription:
    name: str
    key_schema: KeySchema
    status: TableStatus
    item_count: int
    size_bytes: int
    creation_time_ms: int


@dataclass
class CreateTableRequest:
    name: str
    key_schema: KeySchema


@dataclass
class TableRequest:
    name: str


@dataclass
class TableResponse:
    table: TableDescription


@dataclass
class ListTablesRequest:
    exclusive_start_table_name: Optional[str] = None
    limit: Optional[int] = None


@dataclass
class ListTablesResponse:
    table_names: List[str]
    last_evaluated_table_name: Optional[str]


@dataclass
class StatsRequest:
    shard: Optional[int] = None


@dataclass
class Counter:
    name: str
    value: int


@dataclass
class ShardStats:
    shard: int
    counters: List[Counter]

    def as_dict(self) -> Dict[str, int]:
        return {c.name: c.value for c in self.counters}


@dataclass
class StatsResponse:
    shards: List[ShardStats]


@dataclass
class PutItemRequest:
    table: str
    item: bytes
    return_values: ReturnValues = ReturnValues.NONE


@dataclass
class GetItemRequest:
    table: str
    key: bytes
    consistent_read: bool = False


@dataclass
class DeleteItemRequest:
    table: str
    key: bytes
    return_values: ReturnValues = ReturnValues.NONE


@dataclass
class WriteItemResponse:
    attributes: Optional[bytes]


SORT_KEY_OPS = ("Eq", "Lt", "Le", "Gt", "Ge", "Between", "BeginsWith")


@dataclass
class SortKeyCondition:
    """``op`` is one of SORT_KEY_OPS; ``values`` one operand (two for Between),
    DynamoDB-JSON scalar values like ``{"N": "1970"}``."""

    op: str
    values: Tuple[dict, ...]

    @classmethod
    def eq(cls, v):
        return cls("Eq", (v,))

    @classmethod
    def lt(cls, v):
        return cls("Lt", (v,))

    @classmethod
    def le(cls, v):
        return cls("Le", (v,))

    @classmethod
    def gt(cls, v):
        return cls("Gt", (v,))

    @classmethod
    def ge(cls, v):
        return cls("Ge", (v,))

    @classmethod
    def between(cls, low, high):
        return cls("Between", (low, high))

    @classmethod
    def begins_with(cls, prefix):
        return cls("BeginsWith", (prefix,))


SORT_KEY_CONDITION = _Enum(
    "SortKeyCondition",
    [[VALUE], [VALUE], [VALUE], [VALUE], [VALUE], [VALUE, VALUE], [VALUE]],
    lambda c: (SORT_KEY_OPS.index(c.op), list(c.values)),
    lambda tag, vals: SortKeyCondition(SORT_KEY_OPS[tag], tuple(vals)),
)


@dataclass
class QueryRequest:
    table: str
    partition_key: dict
    sort_key: Optional[SortKeyCondition] = None
    scan_forward: bool = True
    limit: Optional[int] = None
    exclusive_start_key: Optional[bytes] = None
    consistent_read: bool = False


@dataclass
class ScanRequest:
    table: str
    limit: Optional[int] = None
    exclusive_start_key: Optional[bytes] = None
    segment: int = 0
    total_segments: int = 1
    consistent_read: bool = False


@dataclass
class PageResponse:
    items: List[bytes]
    count: int
    scanned_count: int
    last_evaluated_key: Optional[bytes]


@dataclass
class KeysAndAttributes:
    table: str
    keys: List[bytes]
    consistent_read: bool = False


@dataclass
class BatchGetItemRequest:
    tables: List[KeysAndAttributes]


@dataclass
class TableItems:
    table: str
    items: List[bytes]


@dataclass
class BatchGetItemResponse:
    responses: List[TableItems]
    unprocessed_keys: List[KeysAndAttributes]


@dataclass
class WriteRequest:
    """``kind`` "Put" (``data`` an encoded item) or "Delete" (an encoded key)."""

    kind: str
    data: bytes

    @classmethod
    def put(cls, item):
        return cls("Put", item if isinstance(item, (bytes, bytearray)) else encode_item(item))

    @classmethod
    def delete(cls, key):
        return cls("Delete", key if isinstance(key, (bytes, bytearray)) else encode_item(key))


WRITE_REQUEST = _Enum(
    "WriteRequest",
    [[BYTES], [BYTES]],
    lambda w: (("Put", "Delete").index(w.kind), [w.data]),
    lambda tag, vals: WriteRequest(("Put", "Delete")[tag], vals[0]),
)


@dataclass
class TableWriteRequests:
    table: str
    requests: List[WriteRequest]


@dataclass
class BatchWriteItemRequest:
    tables: List[TableWriteRequests]


@dataclass
class BatchWriteItemResponse:
    unprocessed_items: List[TableWriteRequests]


def _struct(cls, *fields):
    return _Struct(cls.__name__, fields, cls)


ERROR_RESPONSE = _struct(ErrorResponse, ("code", U16), ("message", STRING))
HELLO_REQUEST = _struct(HelloRequest, ("client_name", STRING))
SHARD_INFO = _struct(ShardInfo, ("shard", U32), ("core", U32), ("port", U16))
HELLO_RESPONSE = _struct(
    HelloResponse,
    ("node_id", STRING),
    ("protocol_version", U8),
    ("shared_port", U16),
    ("shards", vec(SHARD_INFO)),
    ("partition_map", vec(U32)),
)
KEY_ATTR = _struct(KeyAttr, ("name", STRING), ("ty", SCALAR_TYPE))
KEY_SCHEMA = _struct(KeySchema, ("partition", KEY_ATTR), ("sort", option(KEY_ATTR)))
TABLE_DESCRIPTION = _struct(
    TableDescription,
    ("name", STRING),
    ("key_schema", KEY_SCHEMA),
    ("status", TABLE_STATUS),
    ("item_count", U64),
    ("size_bytes", U64),
    ("creation_time_ms", U64),
)
CREATE_TABLE_REQUEST = _struct(CreateTableRequest, ("name", STRING), ("key_schema", KEY_SCHEMA))
TABLE_REQUEST = _struct(TableRequest, ("name", STRING))
TABLE_RESPONSE = _struct(TableResponse, ("table", TABLE_DESCRIPTION))
LIST_TABLES_REQUEST = _struct(
    ListTablesRequest, ("exclusive_start_table_name", option(STRING)), ("limit", option(U32))
)
LIST_TABLES_RESPONSE = _struct(
    ListTablesResponse, ("table_names", vec(STRING)), ("last_evaluated_table_name", option(STRING))
)
STATS_REQUEST = _struct(StatsRequest, ("shard", option(U32)))
COUNTER = _struct(Counter, ("name", STRING), ("value", U64))
SHARD_STATS = _struct(ShardStats, ("shard", U32), ("counters", vec(COUNTER)))
STATS_RESPONSE = _struct(StatsResponse, ("shards", vec(SHARD_STATS)))
PUT_ITEM_REQUEST = _struct(PutItemRequest, ("table", STRING), ("item", BYTES), ("return_values", RETURN_VALUES))
GET_ITEM_REQUEST = _struct(GetItemRequest, ("table", STRING), ("key", BYTES), ("consistent_read", BOOL))
DELETE_ITEM_REQUEST = _struct(
    DeleteItemRequest, ("table", STRING), ("key", BYTES), ("return_values", RETURN_VALUES)
)
WRITE_ITEM_RESPONSE = _struct(WriteItemResponse, ("attributes", option(BYTES)))
QUERY_REQUEST = _struct(
    QueryRequest,
    ("table", STRING),
    ("partition_key", VALUE),
    ("sort_key", option(SORT_KEY_CONDITION)),
    ("scan_forward", BOOL),
    ("limit", option(U32)),
    ("exclusive_start_key", option(BYTES)),
    ("consistent_read", BOOL),
)
SCAN_REQUEST = _struct(
    ScanRequest,
    ("table", STRING),
    ("limit", option(U32)),
    ("exclusive_start_key", option(BYTES)),
    ("segment", U32),
    ("total_segments", U32),
    ("consistent_read", BOOL),
)
PAGE_RESPONSE = _struct(
    PageResponse,
    ("items", vec(BYTES)),
    ("count", U32),
    ("scanned_count", U32),
    ("last_evaluated_key", option(BYTES)),
)
KEYS_AND_ATTRIBUTES = _struct(
    KeysAndAttributes, ("table", STRING), ("keys", vec(BYTES)), ("consistent_read", BOOL)
)
BATCH_GET_ITEM_REQUEST = _struct(BatchGetItemRequest, ("tables", vec(KEYS_AND_ATTRIBUTES)))
TABLE_ITEMS = _struct(TableItems, ("table", STRING), ("items", vec(BYTES)))
BATCH_GET_ITEM_RESPONSE = _struct(
    BatchGetItemResponse, ("responses", vec(TABLE_ITEMS)), ("unprocessed_keys", vec(KEYS_AND_ATTRIBUTES))
)
TABLE_WRITE_REQUESTS = _struct(TableWriteRequests, ("table", STRING), ("requests", vec(WRITE_REQUEST)))
BATCH_WRITE_ITEM_REQUEST = _struct(BatchWriteItemRequest, ("tables", vec(TABLE_WRITE_REQUESTS)))
BATCH_WRITE_ITEM_RESPONSE = _struct(BatchWriteItemResponse, ("unprocessed_items", vec(TABLE_WRITE_REQUESTS)))

# The sizes section 6 states.
_SIZES = {
    ERROR_RESPONSE: 10, HELLO_REQUEST: 8, HELLO_RESPONSE: 27, SHARD_INFO: 10, KEY_ATTR: 9,
    KEY_SCHEMA: 19, TABLE_DESCRIPTION: 52, CREATE_TABLE_REQUEST: 27, TABLE_REQUEST: 8,
    TABLE_RESPONSE: 52, LIST_TABLES_REQUEST: 14, LIST_TABLES_RESPONSE: 17, STATS_REQUEST: 5,
    STATS_RESPONSE: 8, SHARD_STATS: 12, COUNTER: 16, PUT_ITEM_REQUEST: 17, GET_ITEM_REQUEST: 17,
    DELETE_ITEM_REQUEST: 17, WRITE_ITEM_RESPONSE: 9, SORT_KEY_CONDITION: 19, QUERY_REQUEST: 53,
    SCAN_REQUEST: 31, PAGE_RESPONSE: 25, KEYS_AND_ATTRIBUTES: 17, BATCH_GET_ITEM_REQUEST: 8,
    TABLE_ITEMS: 16, BATCH_GET_ITEM_RESPONSE: 16, WRITE_REQUEST: 9, TABLE_WRITE_REQUESTS: 16,
    BATCH_WRITE_ITEM_REQUEST: 8, BATCH_WRITE_ITEM_RESPONSE: 8,
}
for _t, _n in _SIZES.items():
    assert _t.size == _n, (_t.name, _t.size, _n)

REQUEST_TYPES = {
    Op.HELLO: HELLO_REQUEST, Op.CREATE_TABLE: CREATE_TABLE_REQUEST, Op.DELETE_TABLE: TABLE_REQUEST,
    Op.DESCRIBE_TABLE: TABLE_REQUEST, Op.LIST_TABLES: LIST_TABLES_REQUEST, Op.PUT_ITEM: PUT_ITEM_REQUEST,
    Op.GET_ITEM: GET_ITEM_REQUEST, Op.DELETE_ITEM: DELETE_ITEM_REQUEST, Op.QUERY: QUERY_REQUEST,
    Op.SCAN: SCAN_REQUEST, Op.BATCH_GET_ITEM: BATCH_GET_ITEM_REQUEST,
    Op.BATCH_WRITE_ITEM: BATCH_WRITE_ITEM_REQUEST, Op.STATS: STATS_REQUEST,
}
RESPONSE_TYPES = {
    Op.HELLO: HELLO_RESPONSE, Op.CREATE_TABLE: TABLE_RESPONSE, Op.DELETE_TABLE: TABLE_RESPONSE,
    Op.DESCRIBE_TABLE: TABLE_RESPONSE, Op.LIST_TABLES: LIST_TABLES_RESPONSE,
    Op.PUT_ITEM: WRITE_ITEM_RESPONSE, Op.GET_ITEM: None,  # the item's bytes, or nothing
    Op.DELETE_ITEM: WRITE_ITEM_RESPONSE, Op.QUERY: PAGE_RESPONSE, Op.SCAN: PAGE_RESPONSE,
    Op.BATCH_GET_ITEM: BATCH_GET_ITEM_RESPONSE, Op.BATCH_WRITE_ITEM: BATCH_WRITE_ITEM_RESPONSE,
    Op.STATS: STATS_RESPONSE,
}


# ---------------------------------------------------------------------------
# Section 7: routing
# ---------------------------------------------------------------------------

PARTITIONS = 1024


def partition_hash_input(table: str, value: dict) -> bytes:
    (k, p), = value.items()
    if k == "S":
        kb = p.encode("utf-8")
    elif k == "N":
        kb = canonicalize_number(p).encode("ascii")
    elif k == "B":
        kb = bytes(p)
    else:
        raise ValueError("a key value is S, N or B")
    return table.encode("utf-8") + b"\x00" + SCALAR_TAG_BYTES[k] + kb


def partition_hash(table: str, value: dict) -> int:
    if not HAVE_XXHASH:
        raise RuntimeError("xxhash is not importable")
    return _xxhash.xxh3_64_intdigest(partition_hash_input(table, value))


def partition_of(table: str, value: dict) -> int:
    return partition_hash(table, value) >> 54


def segment_bounds(segment: int, total: int) -> Tuple[int, int]:
    """Section 6.6: the inclusive hash range of a Scan segment."""
    return (segment << 64) // total, (((segment + 1) << 64) // total) - 1


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------


class Connection:
    """One TCP connection; requests may be pipelined (``submit`` / ``wait``)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._early: Dict[int, Frame] = {}
        self._next_id = 1
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def new_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            try:
                chunk = self.sock.recv(max(65536, n - len(self._buf)))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return False
            self._buf += chunk
        return True

    def recv_frame(self) -> Optional[Frame]:
        """The next frame, or None if the peer closed at a frame boundary."""
        if not self._fill(HEADER_SIZE):
            if self._buf:
                raise ConnectionClosed("connection closed inside a frame header")
            self.closed = True
            return None
        h = parse_header(bytes(self._buf[:HEADER_SIZE]))
        check_header(h)
        if not self._fill(HEADER_SIZE + h.body_len):
            raise ConnectionClosed("connection closed inside a frame body")
        data = bytes(self._buf[: HEADER_SIZE + h.body_len])
        del self._buf[: HEADER_SIZE + h.body_len]
        return decode_frame(data)

    def submit(self, opcode: int, body: bytes, shard_hint: int = NO_SHARD, request_id: Optional[int] = None) -> int:
        rid = self.new_id() if request_id is None else request_id
        self.send_raw(encode_frame(opcode, rid, body, 0, shard_hint))
        return rid

    def wait(self, rid: int) -> Frame:
        if rid in self._early:
            return self._early.pop(rid)
        while True:
            f = self.recv_frame()
            if f is None:
                raise ConnectionClosed("connection closed before the reply to request %d" % rid)
            if f.request_id == rid:
                return f
            self._early[f.request_id] = f

    def call(self, opcode: int, body: bytes, shard_hint: int = NO_SHARD) -> Frame:
        return self.wait(self.submit(opcode, body, shard_hint))

    def request(self, opcode: int, message: Any, shard_hint: int = NO_SHARD) -> Any:
        """Send a typed request, return the typed reply; TernError on an error frame."""
        f = self.call(opcode, encode(REQUEST_TYPES[opcode], message), shard_hint)
        return parse_reply(opcode, f)


def parse_reply(opcode: int, f: Frame) -> Any:
    if not f.is_response:
        raise ProtocolError("the reply lacks the RESPONSE flag")
    if f.is_error:
        e = decode(ERROR_RESPONSE, f.body)
        raise TernError(e.code, e.message, f)
    if f.opcode != opcode:
        raise ProtocolError("reply opcode %d for request opcode %d" % (f.opcode, opcode))
    if opcode == Op.GET_ITEM:
        if f.found:
            return f.body
        if f.body:
            raise ProtocolError("GetItem reply without FOUND has a body")
        return None
    return decode(RESPONSE_TYPES[opcode], f.body)


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------

Key = Union[bytes, dict]


class TernClient:
    """A typed client. Single-key requests (PutItem, GetItem, DeleteItem, Query) go to
    the port of the shard owning the partition key when ``xxhash`` is importable and
    ``route`` is true; everything else goes to the shared port."""

    def __init__(self, host: str, port: int, route: bool = True, timeout: float = 30.0):
        self.host, self.timeout = host, timeout
        self.shared = Connection(host, port, timeout)
        self._conns: Dict[int, Connection] = {port: self.shared}
        self.topology = self.hello()
        self.routing = "xxhash" if (route and HAVE_XXHASH) else "shared-port"
        self.routed_requests = 0
        self.shared_requests = 0
        self._schemas: Dict[str, KeySchema] = {}

    def close(self) -> None:
        for c in self._conns.values():
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- plumbing --

    def connection(self, port: int) -> Connection:
        c = self._conns.get(port)
        if c is None or c.closed:
            c = self._conns[port] = Connection(self.host, port, self.timeout)
        return c

    def shard_of(self, table: str, pk: dict) -> int:
        return self.topology.partition_map[partition_of(table, pk)]

    def _route(self, table: str, pk: Optional[dict]) -> Tuple[Connection, int]:
        if self.routing == "xxhash" and pk is not None:
            try:
                shard = self.shard_of(table, pk)
            except (ValueError, KeyError, TypeError, AttributeError):
                shard = None  # not a routable key value: let the server judge it
            if shard is not None:
                self.routed_requests += 1
                return self.connection(self.topology.shards[shard].port), shard
        self.shared_requests += 1
        return self.shared, NO_SHARD

    def _call(self, opcode: int, message: Any, table: Optional[str] = None, pk: Optional[dict] = None):
        if table is None:
            conn, hint = self.shared, NO_SHARD
            self.shared_requests += 1
        else:
            conn, hint = self._route(table, pk)
        return conn.request(opcode, message, hint)

    def schema(self, table: str) -> KeySchema:
        s = self._schemas.get(table)
        if s is None:
            s = self.describe_table(table).key_schema
        return s

    def _pk_of(self, table: str, item_or_key: Key) -> Optional[dict]:
        if self.routing != "xxhash":
            return None
        try:
            name = self.schema(table).partition.name
            d = decode_item(item_or_key) if isinstance(item_or_key, (bytes, bytearray)) else item_or_key
            return d.get(name)
        except (TernError, ProtocolError, ValueError, AttributeError):
            return None  # let the server report what is wrong

    @staticmethod
    def _blob(x: Key) -> bytes:
        return bytes(x) if isinstance(x, (bytes, bytearray)) else encode_item(x)

    # -- operations --

    def hello(self, client_name: str = "tern_wire.py") -> HelloResponse:
        return self.shared.request(Op.HELLO, HelloRequest(client_name))

    def create_table(self, name: str, partition: Tuple[str, str], sort: Optional[Tuple[str, str]] = None) -> TableDescription:
        ks = KeySchema(
            KeyAttr(partition[0], ScalarType[partition[1]]),
            None if sort is None else KeyAttr(sort[0], ScalarType[sort[1]]),
        )
        t = self._call(Op.CREATE_TABLE, CreateTableRequest(name, ks)).table
        self._schemas[name] = t.key_schema
        return t

    def delete_table(self, name: str) -> TableDescription:
        self._schemas.pop(name, None)
        return self._call(Op.DELETE_TABLE, TableRequest(name)).table

    def describe_table(self, name: str) -> TableDescription:
        t = self._call(Op.DESCRIBE_TABLE, TableRequest(name)).table
        self._schemas[name] = t.key_schema
        return t

    def list_tables(self, limit: Optional[int] = None, exclusive_start_table_name: Optional[str] = None) -> ListTablesResponse:
        return self._call(Op.LIST_TABLES, ListTablesRequest(exclusive_start_table_name, limit))

    def list_all_tables(self, limit: Optional[int] = None, max_pages: int = 1000) -> List[str]:
        names: List[str] = []
        start = None
        for _ in range(max_pages):
            r = self.list_tables(limit, start)
            names += r.table_names
            if r.last_evaluated_table_name is None:
                return names
            start = r.last_evaluated_table_name
        raise ProtocolError("ListTables did not finish in %d pages" % max_pages)

    def put_item(self, table: str, item: Key, return_values: ReturnValues = ReturnValues.NONE) -> Optional[bytes]:
        blob = self._blob(item)
        r = self._call(Op.PUT_ITEM, PutItemRequest(table, blob, return_values), table, self._pk_of(table, item))
        return r.attributes

    def get_item(self, table: str, key: Key, consistent_read: bool = False) -> Optional[bytes]:
        blob = self._blob(key)
        return self._call(Op.GET_ITEM, GetItemRequest(table, blob, consistent_read), table, self._pk_of(table, key))

    def delete_item(self, table: str, key: Key, return_values: ReturnValues = ReturnValues.NONE) -> Optional[bytes]:
        blob = self._blob(key)
        r = self._call(Op.DELETE_ITEM, DeleteItemRequest(table, blob, return_values), table, self._pk_of(table, key))
        return r.attributes

    def query(
        self,
        table: str,
        partition_key: dict,
        sort_key: Optional[SortKeyCondition] = None,
        scan_forward: bool = True,
        limit: Optional[int] = None,
        exclusive_start_key: Optional[Key] = None,
        consistent_read: bool = False,
        canonical: bool = True,
    ) -> PageResponse:
        """``canonical``: canonicalize N operands first (False sends them as given)."""
        esk = None if exclusive_start_key is None else self._blob(exclusive_start_key)
        if canonical:
            partition_key = normalize_value(partition_key)
            if sort_key is not None:
                sort_key = SortKeyCondition(sort_key.op, tuple(normalize_value(v) for v in sort_key.values))
        req = QueryRequest(table, partition_key, sort_key, scan_forward, limit, esk, consistent_read)
        return self._call(Op.QUERY, req, table, partition_key)

    def query_pages(self, table: str, partition_key: dict, max_pages: int = 1000, **kw) -> Iterator[PageResponse]:
        esk = kw.pop("exclusive_start_key", None)
        for _ in range(max_pages):
            p = self.query(table, partition_key, exclusive_start_key=esk, **kw)
            yield p
            if p.last_evaluated_key is None:
                return
            esk = p.last_evaluated_key
        raise ProtocolError("Query did not finish in %d pages" % max_pages)

    def scan(
        self,
        table: str,
        limit: Optional[int] = None,
        exclusive_start_key: Optional[Key] = None,
        segment: int = 0,
        total_segments: int = 1,
        consistent_read: bool = False,
    ) -> PageResponse:
        esk = None if exclusive_start_key is None else self._blob(exclusive_start_key)
        return self._call(Op.SCAN, ScanRequest(table, limit, esk, segment, total_segments, consistent_read))

    def scan_pages(self, table: str, max_pages: int = 1000, **kw) -> Iterator[PageResponse]:
        esk = kw.pop("exclusive_start_key", None)
        for _ in range(max_pages):
            p = self.scan(table, exclusive_start_key=esk, **kw)
            yield p
            if p.last_evaluated_key is None:
                return
            esk = p.last_evaluated_key
        raise ProtocolError("Scan did not finish in %d pages" % max_pages)

    def batch_get_item(self, requests: Dict[str, Sequence[Key]], consistent_read: bool = False) -> BatchGetItemResponse:
        tables = [KeysAndAttributes(t, [self._blob(k) for k in ks], consistent_read) for t, ks in requests.items()]
        return self._call(Op.BATCH_GET_ITEM, BatchGetItemRequest(tables))

    def batch_write_item(self, requests: Dict[str, Sequence[WriteRequest]]) -> BatchWriteItemResponse:
        tables = [TableWriteRequests(t, list(ws)) for t, ws in requests.items()]
        return self._call(Op.BATCH_WRITE_ITEM, BatchWriteItemRequest(tables))

    def stats(self, shard: Optional[int] = None) -> StatsResponse:
        return self._call(Op.STATS, StatsRequest(shard))


__all__ = [n for n in dir() if not n.startswith("_")]
