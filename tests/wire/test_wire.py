#!/usr/bin/env python3
"""Conformance checks of a tern server against docs/wire-protocol.md, using tern_wire.py.

    python3 tests/wire/test_wire.py --ternd PATH_TO_TERND

Starts the server itself (``--port 0 --cores 2 --no-pin --data-dir <temp>
--segment-size-mib 8``), prints one line per check (PASS/FAIL, INFO for observations
that the document does not pin down), and exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import tern_wire as tw  # noqa: E402
from tern_wire import (  # noqa: E402
    Op,
    ReturnValues,
    ScalarType,
    SortKeyCondition as C,
    TableStatus,
    TernError,
    WriteRequest,
)

HOST = "127.0.0.1"
VE, RNF, RIU, SER, UNK = 1, 2, 3, 13, 14


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------


def _short(x, n=300):
    r = repr(x)
    return r if len(r) <= n else r[:n] + "...(%d chars)" % len(r)


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print("PASS %s" % name, flush=True)
        else:
            self.failed += 1
            self.failures.append(name)
            print("FAIL %s%s" % (name, (": " + detail) if detail else ""), flush=True)
        return bool(cond)

    def eq(self, name, got, want):
        return self.check(name, got == want, "got %s, want %s" % (_short(got), _short(want)))

    def info(self, msg):
        print("INFO %s" % msg, flush=True)

    def error(self, name, fn, code):
        """``fn()`` must raise TernError with ``code``."""
        try:
            r = fn()
        except TernError as e:
            return self.check(name, e.code == code, "got code %d (%s): %s, want %d" % (e.code, e.name, e.message, code))
        except Exception as e:  # noqa: BLE001
            return self.check(name, False, "raised %s: %s" % (type(e).__name__, e))
        return self.check(name, False, "no error; returned %s" % _short(r))

    def section(self, name, fn, *args):
        print("---- %s" % name, flush=True)
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            self.check("%s: completed without exception" % name, False, "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))


# ---------------------------------------------------------------------------
# the document's examples
# ---------------------------------------------------------------------------


def parse_goldens(doc):
    blocks = {}
    for m in re.finditer(r"<!-- golden: ([\w-]+) -->\s*```text\n(.*?)```", doc, re.S):
        blocks[m.group(1)] = m.group(2)
    return blocks


def hex_block(block):
    data = bytearray()
    for line in block.splitlines():
        if not line.strip():
            continue
        m = re.match(r"^([0-9a-fA-F]{4})\s+([0-9a-fA-F ]+?)\s*\|", line)
        if not m:
            raise ValueError("unparsable golden line %r" % line)
        off = int(m.group(1), 16)
        if off != len(data):
            raise ValueError("golden line offset %04x, expected %04x" % (off, len(data)))
        data += bytes.fromhex(m.group(2))
    return bytes(data)


def K(y, artist="abba"):
    return {"artist": {"S": artist}, "year": {"N": y}}


SOS = {"artist": {"S": "abba"}, "title": {"S": "SOS"}, "year": {"N": "1975"}}
LONG_ITEM = {"artist": {"S": "abba"}, "song_title": {"S": "Dancing Queen"}}
NESTED_ITEM = {
    "doc": {"M": {"list": {"L": [{"N": "1"}, {"N": "-0.25"}, {"BOOL": True}, {"NULL": True}, {"SS": ["blue", "red"]}]}}},
    "id": {"S": "x"},
}


def golden_values():
    """name -> (kind, spec). Frames: (opcode, flags, request_id, shard_hint, type, value)."""
    e = tw.encode_item
    return {
        "put-item-request": ("frame", (Op.PUT_ITEM, 0, 1, 0, tw.PUT_ITEM_REQUEST, tw.PutItemRequest("music", e(K("1974")), ReturnValues.NONE))),
        "put-item-reply": ("frame", (Op.PUT_ITEM, tw.FLAG_RESPONSE, 1, tw.NO_SHARD, tw.WRITE_ITEM_RESPONSE, tw.WriteItemResponse(None))),
        "long-string-item": ("item", (LONG_ITEM, 65, 33)),
        "nested-item": ("item", (NESTED_ITEM, 120, 35)),
        "query-request": (
            "frame",
            (Op.QUERY, 0, 2, 0, tw.QUERY_REQUEST,
             tw.QueryRequest("music", {"S": "abba"}, C.between({"N": "1970"}, {"N": "1979"}), True, 10, e(K("1973")), False)),
        ),
        "page-response": (
            "frame",
            (Op.QUERY, tw.FLAG_RESPONSE, 2, tw.NO_SHARD, tw.PAGE_RESPONSE,
             tw.PageResponse([e(K("1974")), e(SOS)], 2, 2, e(K("1975")))),
        ),
        "get-unknown-table-request": ("frame", (Op.GET_ITEM, 0, 3, 0, tw.GET_ITEM_REQUEST, tw.GetItemRequest("nosuch", e(K("1974")), False))),
        "error-response": (
            "frame",
            (Op.GET_ITEM, tw.FLAG_RESPONSE | tw.FLAG_ERROR, 3, tw.NO_SHARD, tw.ERROR_RESPONSE,
             tw.ErrorResponse(2, "Requested resource not found: Table: nosuch not found")),
        ),
        "get-item-request": ("frame", (Op.GET_ITEM, 0, 4, 0, tw.GET_ITEM_REQUEST, tw.GetItemRequest("music", e(K("1975")), True))),
        "get-item-reply": ("frame", (Op.GET_ITEM, tw.FLAG_RESPONSE | tw.FLAG_FOUND, 4, tw.NO_SHARD, None, e(SOS))),
        "partition-hash": ("hash", ("music", {"S": "abba"})),
    }


def offline_checks(ck, doc):
    blocks = parse_goldens(doc)
    values = golden_values()
    ck.check("doc: golden blocks found", len(blocks) > 0, "no <!-- golden: --> blocks")
    ck.info("golden blocks in the document: %s" % ", ".join(blocks))
    golden_bytes = {}
    for name, block in blocks.items():
        if name not in values:
            ck.check("golden %s: known to this script" % name, False, "a golden example this script does not model")
            continue
        kind, spec = values[name]
        if kind == "hash":
            table, value = spec
            m_in = re.search(r"^input\s+([0-9a-fA-F ]+?)\s*\|", block, re.M)
            m_h = re.search(r"^xxh3_64\s.*?=\s*0x([0-9a-fA-F]+)", block, re.M)
            m_p = re.search(r"^partition\s.*=\s*(\d+)\s*$", block, re.M)
            want_in = bytes.fromhex(m_in.group(1))
            ck.eq("golden %s: hash input bytes" % name, tw.partition_hash_input(table, value), want_in)
            if tw.HAVE_XXHASH:
                h = tw.partition_hash(table, value)
                ck.eq("golden %s: xxh3_64" % name, h, int(m_h.group(1), 16))
                ck.eq("golden %s: partition" % name, h >> 54, int(m_p.group(1)))
            else:
                ck.info("golden %s: xxhash not importable, hash not checked" % name)
            continue
        try:
            data = hex_block(block)
        except ValueError as ex:
            ck.check("golden %s: parses" % name, False, str(ex))
            continue
        golden_bytes[name] = data
        if kind == "item":
            item, length, dsize = spec
            ck.eq("golden %s: encode_item bytes" % name, tw.encode_item(item).hex(), data.hex())
            ck.eq("golden %s: length" % name, len(data), length)
            dec = tw.decode_item(data)
            ck.eq("golden %s: decodes" % name, dec, tw.normalize_item(item))
            ck.eq("golden %s: DynamoDB size" % name, tw.item_size(dec), dsize)
            continue
        opcode, flags, rid, hint, typ, value = spec
        body = value if typ is None else tw.encode(typ, value)
        frame = tw.Frame(opcode, flags, rid, body, hint).encode()
        ck.eq("golden %s: encoder bytes" % name, frame.hex(), data.hex())
        try:
            f = tw.decode_frame(data)
            ok = (f.opcode, f.flags, f.request_id, f.shard_hint) == (opcode, flags, rid, hint)
            ck.check("golden %s: header decodes (crc ok)" % name, ok, _short(f))
            dec = f.body if typ is None else tw.decode(typ, f.body)
            ck.eq("golden %s: body decodes" % name, dec, value)
        except tw.ProtocolError as ex:
            ck.check("golden %s: decodes" % name, False, str(ex))
    for name in values:
        if name not in blocks:
            ck.check("golden %s: present in the document" % name, False, "missing")
    # the golden items inside the PageResponse decode too
    if "page-response" in golden_bytes:
        pr = tw.decode(tw.PAGE_RESPONSE, golden_bytes["page-response"][32:])
        ck.eq("golden page-response: items decode", [tw.decode_item(i) for i in pr.items], [K("1974"), SOS])

    # section 4.3's length examples
    for n, hexs in re.findall(r"(\d+) → `([0-9a-f ]{11})`", doc):
        ck.eq("doc 4.3: string length %s field" % n, struct.pack("<I", tw.string_len_field(int(n))).hex(" "), hexs)
        enc = tw.encode(tw.STRING, "x" * int(n))
        ck.eq("doc 4.3: string length %s decodes" % n, tw.decode(tw.STRING, enc), "x" * int(n))
    ck.eq("doc 4.3: empty string", tw.encode(tw.STRING, ""), b"\xff" * 8)
    ck.eq("doc 4.3: 8-byte string inline", tw.encode(tw.STRING, "abcdefgh"), b"abcdefgh")

    # section 5.2's canonicalization table
    sec = doc[doc.find("### 5.2"): doc.find("### 5.3")]
    rows = 0
    for left, right in re.findall(r"^\| (`[^|]*`) \| ([^|]*) \|$", sec, re.M):
        inputs = re.findall(r"`([^`]*)`", left)
        m = re.match(r"`([^`]*)`", right.strip())
        for inp in inputs:
            rows += 1
            if m:
                ck.eq("doc 5.2: canonical(%s)" % inp, tw.canonicalize_number(inp), m.group(1))
            else:
                try:
                    got = tw.canonicalize_number(inp)
                    ck.check("doc 5.2: %s refused" % inp, False, "canonicalized to %r" % got)
                except ValueError:
                    ck.check("doc 5.2: %s refused" % inp, True)
    ck.check("doc 5.2: table parsed", rows >= 10, "%d rows" % rows)
    for text in ["9" * 39, "1" + "0" * 38 + "1"]:
        try:
            tw.canonicalize_number(text)
            ck.check("doc 5.2: 39 significant digits refused", False)
        except ValueError:
            ck.check("doc 5.2: 39 significant digits refused", True)
    ck.eq("doc 5.2: largest", tw.canonicalize_number("9.9999999999999999999999999999999999999E+125"), "9" * 38 + "0" * 88)
    ck.eq("doc 5.2: smallest", tw.canonicalize_number("1E-130"), "0." + "0" * 129 + "1")
    ck.eq("doc 5.3: NS order", tw.normalize_value({"NS": ["10", "2", "0.5", "0", "-1", "-10"]})["NS"], ["-10", "-1", "0", "0.5", "2", "10"])
    ck.eq("doc 5.3: BS order (prefix first, unsigned)", tw.normalize_value({"BS": [b"\xff", b"ab", b"a", b"\x00"]})["BS"], [b"\x00", b"a", b"ab", b"\xff"])
    ck.eq("doc 5.4: PutItem example size", tw.item_size(K("1974")), 17)
    return golden_bytes


# ---------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------


class Server:
    def __init__(self, ternd):
        self.tmp = tempfile.mkdtemp(prefix="tern-wire-")
        self.data_dir = os.path.join(self.tmp, "data")
        os.mkdir(self.data_dir)
        self.err_path = os.path.join(self.tmp, "stderr.log")
        self.errf = open(self.err_path, "wb")
        self.cmd = [ternd, "--replicas", "1", "--port", "0", "--cores", "2", "--no-pin", "--data-dir", self.data_dir, "--segment-size-mib", "8"]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errf)
        self.lines = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        try:
            first = self.lines.get(timeout=30)
        except queue.Empty:
            raise RuntimeError("ternd printed nothing on stdout within 30 s")
        if first is None:
            raise RuntimeError("ternd exited before printing its ready line")
        self.ready = json.loads(first)
        self.shared_port = int(self.ready["shared_port"])
        self.shard_ports = [int(p) for p in self.ready["shard_ports"]]

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode("utf-8", "replace"))
        self.lines.put(None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.errf.close()

    def stderr_tail(self, n=2000):
        try:
            with open(self.err_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def raw_conn(port, timeout=30):
    return tw.Connection(HOST, port, timeout)


def wait_closed(conn, timeout=10.0):
    """True if the peer closes (EOF/reset) within ``timeout`` with no further frame."""
    conn.sock.settimeout(timeout)
    try:
        f = conn.recv_frame()
        return f is None
    except (tw.ConnectionClosed, ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def collect_until_close(conn, timeout=10.0, max_frames=100):
    """Frames received until the peer closes; (frames, closed)."""
    frames = []
    conn.sock.settimeout(timeout)
    for _ in range(max_frames):
        try:
            f = conn.recv_frame()
        except (tw.ConnectionClosed, ConnectionResetError, BrokenPipeError):
            return frames, True
        except socket.timeout:
            return frames, False
        if f is None:
            return frames, True
        frames.append(f)
    return frames, False


def check_error_frame(ck, name, f, opcode, rid, code):
    if not ck.check("%s: an error frame arrived" % name, f is not None and f.is_error, _short(f)):
        return None
    e = tw.decode(tw.ERROR_RESPONSE, f.body)
    ck.eq("%s: code" % name, e.code, code)
    ck.eq("%s: flags RESPONSE|ERROR" % name, f.flags, tw.FLAG_RESPONSE | tw.FLAG_ERROR)
    ck.eq("%s: opcode echoed" % name, f.opcode, opcode)
    ck.eq("%s: request_id" % name, f.request_id, rid)
    ck.eq("%s: shard_hint none" % name, f.shard_hint, tw.NO_SHARD)
    ck.check("%s: message <= 4096 bytes" % name, len(e.message.encode()) <= 4096)
    return e


def hello_ok(conn):
    try:
        r = conn.request(Op.HELLO, tw.HelloRequest("probe"))
        return isinstance(r, tw.HelloResponse) and r.protocol_version == 1
    except Exception:  # noqa: BLE001
        return False


def years(page):
    return [tw.decode_item(i)["year"]["N"] for i in page.items]


def field(page, name, ty):
    return [tw.decode_item(i)[name][ty] for i in page.items]


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------


class Suite:
    def __init__(self, ck, srv, doc, golden_bytes):
        self.ck, self.srv, self.doc, self.golden = ck, srv, doc, golden_bytes
        self.c = tw.TernClient(HOST, srv.shared_port)
        self.tables = set()

    def create(self, name, pk, sk=None):
        t = self.c.create_table(name, pk, sk)
        self.tables.add(name)
        return t

    # ---- Hello ----
    def hello(self):
        ck, c = self.ck, self.c
        h = c.topology
        ck.info("routing path: %s (xxhash importable: %s)" % (c.routing, tw.HAVE_XXHASH))
        ck.eq("hello: protocol_version", h.protocol_version, 1)
        ck.eq("hello: shared_port = ready line's", h.shared_port, self.srv.shared_port)
        ck.eq("hello: 2 shards (--cores 2)", len(h.shards), 2)
        ck.eq("hello: shards in shard order", [s.shard for s in h.shards], list(range(len(h.shards))))
        ck.eq("hello: shard ports = ready line's shard_ports", [s.port for s in h.shards], self.srv.shard_ports)
        ck.eq("hello: partition_map has 1024 entries", len(h.partition_map), 1024)
        ck.check("hello: partition_map entries name existing shards", all(0 <= p < len(h.shards) for p in h.partition_map))
        ck.check("hello: node_id is a string", isinstance(h.node_id, str))
        ck.info("hello: node_id=%r cores=%s partitions per shard=%s" % (
            h.node_id, [s.core for s in h.shards], [h.partition_map.count(i) for i in range(len(h.shards))]))
        for s in h.shards:
            with raw_conn(s.port) as conn:
                r = conn.request(Op.HELLO, tw.HelloRequest("per-shard"))
                ck.eq("hello: shard %d port gives the same topology" % s.shard,
                      (r.shared_port, r.shards, r.partition_map), (h.shared_port, h.shards, h.partition_map))

    # ---- golden frames replayed against the server ----
    def golden_replay(self):
        ck, c, g = self.ck, self.c, self.golden
        self.create("music", ("artist", "S"), ("year", "N"))
        with raw_conn(self.srv.shared_port) as conn:
            if "put-item-request" in g:
                conn.send_raw(g["put-item-request"])
                f = conn.recv_frame()
                ck.eq("replay put-item-request: reply = golden put-item-reply", f.encode().hex(), g.get("put-item-reply", b"").hex())
            c.put_item("music", SOS)
            c.put_item("music", K("1976"))
            if "get-item-request" in g:
                conn.send_raw(g["get-item-request"])
                f = conn.recv_frame()
                ck.eq("replay get-item-request: reply = golden get-item-reply", f.encode().hex(), g.get("get-item-reply", b"").hex())
            if "get-unknown-table-request" in g:
                conn.send_raw(g["get-unknown-table-request"])
                f = conn.recv_frame()
                ck.eq("replay get-unknown-table-request: reply = golden error-response", f.encode().hex(), g.get("error-response", b"").hex())
                ck.check("replay: connection usable after the error", hello_ok(conn))
            if "query-request" in g:
                conn.send_raw(g["query-request"])
                f = conn.recv_frame()
                p = tw.parse_reply(Op.QUERY, f)
                ck.eq("replay query-request: items after 1973 in 1970..1979", years(p), ["1974", "1975", "1976"])
                ck.eq("replay query-request: no last_evaluated_key", p.last_evaluated_key, None)
            # the golden page-response: the same query with limit 2
            req = tw.QueryRequest("music", {"S": "abba"}, C.between({"N": "1970"}, {"N": "1979"}), True, 2, tw.encode_item(K("1973")), False)
            if "page-response" in g:
                conn2 = raw_conn(self.srv.shared_port)
                try:
                    conn2.send_raw(tw.encode_frame(Op.QUERY, 2, tw.encode(tw.QUERY_REQUEST, req), 0, 0))
                    f2 = conn2.recv_frame()
                    ck.eq("replay query limit 2: reply = golden page-response", f2.encode().hex(), g["page-response"].hex())
                finally:
                    conn2.close()

    # ---- tables ----
    def tables_ddl(self):
        ck, c = self.ck, self.c
        now = time.time() * 1000
        t = self.create("albums", ("artist", "S"), ("year", "N"))
        ck.eq("create (sort key): name", t.name, "albums")
        ck.eq("create (sort key): status CREATING", t.status, TableStatus.CREATING)
        ck.eq("create (sort key): key schema", t.key_schema,
              tw.KeySchema(tw.KeyAttr("artist", ScalarType.S), tw.KeyAttr("year", ScalarType.N)))
        ck.eq("create (sort key): counts 0", (t.item_count, t.size_bytes), (0, 0))
        ck.check("create: creation_time_ms is now", abs(t.creation_time_ms - now) < 600_000, str(t.creation_time_ms))
        t2 = self.create("plain", ("id", "S"))
        ck.eq("create (no sort key): key schema", t2.key_schema, tw.KeySchema(tw.KeyAttr("id", ScalarType.S), None))
        ck.eq("create (no sort key): status CREATING", t2.status, TableStatus.CREATING)
        t3 = self.create("numkeys", ("n", "N"))
        ck.eq("create (N partition key): key schema", t3.key_schema, tw.KeySchema(tw.KeyAttr("n", ScalarType.N), None))
        t4 = self.create("blobs", ("id", "S"), ("b", "B"))
        ck.eq("create (B sort key): key schema", t4.key_schema.sort, tw.KeyAttr("b", ScalarType.B))
        for name, pk, sk in [("songs", ("artist", "S"), ("title", "S")), ("types", ("pk", "S"), None),
                             ("scanme", ("id", "S"), None), ("batch", ("id", "S"), None), ("batch2", ("k", "N"), None),
                             ("big", ("id", "S"), ("seq", "N")), ("routing", ("id", "S"), None),
                             ("limits", ("id", "S"), ("sk", "S")), ("LT-Upper.x_9", ("id", "B"), None)]:
            self.create(name, pk, sk)
        n255 = "t" * 255
        self.create(n255, ("id", "S"))
        ck.check("create: 255-character name accepted", True)
        ck.error("create existing -> ResourceInUseException", lambda: c.create_table("albums", ("artist", "S")), RIU)
        ck.error("create name of 2 chars -> ValidationException", lambda: c.create_table("ab", ("id", "S")), VE)
        ck.error("create name of 256 chars -> ValidationException", lambda: c.create_table("t" * 256, ("id", "S")), VE)
        ck.error("create name with a space -> ValidationException", lambda: c.create_table("bad name", ("id", "S")), VE)
        ck.error("create name with a '/' -> ValidationException", lambda: c.create_table("bad/name", ("id", "S")), VE)
        ck.error("create pk name = sk name -> ValidationException", lambda: c.create_table("samekey", ("k", "S"), ("k", "N")), VE)
        ck.error("create empty key name -> ValidationException", lambda: c.create_table("emptykey", ("", "S")), VE)
        ck.error("create 256-byte key name -> ValidationException", lambda: c.create_table("longkey", ("k" * 256, "S")), VE)
        self.create("okkey255", ("k" * 255, "S"))
        d = c.describe_table("albums")
        ck.eq("describe: status ACTIVE", d.status, TableStatus.ACTIVE)
        ck.eq("describe: name/key schema/creation time as created",
              (d.name, d.key_schema, d.creation_time_ms), (t.name, t.key_schema, t.creation_time_ms))
        ck.eq("describe: counts 0", (d.item_count, d.size_bytes), (0, 0))
        ck.error("describe unknown table -> ResourceNotFoundException", lambda: c.describe_table("nosuch"), RNF)

    def list_tables(self):
        ck, c = self.ck, self.c
        if len(self.tables) % 2:
            self.create("zz-even", ("id", "S"))
        expected = sorted(self.tables, key=lambda s: s.encode())
        r = c.list_tables()
        ck.eq("list: no limit = every table, bytewise order", r.table_names, expected)
        ck.eq("list: no limit, everything fits: no last_evaluated_table_name", r.last_evaluated_table_name, None)
        pages, start, names = [], None, []
        for _ in range(200):
            p = c.list_tables(2, start)
            pages.append(p)
            names += p.table_names
            if p.last_evaluated_table_name is None:
                break
            start = p.last_evaluated_table_name
        ck.eq("list limit 2: pages concatenate to every table", names, expected)
        ck.eq("list limit 2: page count (last page full, no extra empty page)", len(pages), math.ceil(len(expected) / 2))
        ck.check("list limit 2: each page <= 2", all(len(p.table_names) <= 2 for p in pages))
        ck.check("list limit 2: last_evaluated = last name of the page when more follow",
                 all(p.last_evaluated_table_name == p.table_names[-1] for p in pages[:-1]))
        ck.eq("list limit 2: last page has no last_evaluated_table_name", pages[-1].last_evaluated_table_name, None)
        r = c.list_tables(1, expected[2])
        ck.eq("list: limit 1 after the 3rd name", r.table_names, [expected[3]])
        r = c.list_tables(None, "b")
        ck.eq("list: start after a name that is no table", r.table_names, [n for n in expected if n.encode() > b"b"])
        r = c.list_tables(100)
        ck.eq("list: limit 100", r.table_names, expected)
        ck.error("list limit 0 -> ValidationException", lambda: c.list_tables(0), VE)
        ck.error("list limit 101 -> ValidationException", lambda: c.list_tables(101), VE)

    # ---- items ----
    def every_type(self):
        ck, c = self.ck, self.c
        item = {
            "pk": {"S": "every-type"},
            "s": {"S": "short"},
            "s_long_attribute_name": {"S": "a string longer than eight bytes: ünïcödé ✓"},
            "s_empty": {"S": ""},
            "n_frac": {"N": "+001.2300E-2"},
            "n_exp": {"N": "1.5e3"},
            "n_negzero": {"N": "-0"},
            "n_int": {"N": 42},
            "n_max": {"N": "9.9999999999999999999999999999999999999E+125"},
            "n_min": {"N": "-1E-130"},
            "b": {"B": b"\x00\x01\xfe\xff binary"},
            "b_empty": {"B": b""},
            "bool_t": {"BOOL": True},
            "bool_f": {"BOOL": False},
            "null": {"NULL": True},
            "m": {"M": {
                "z": {"N": "10.0"},
                "a": {"L": [{"S": "x"}, {"N": "-.5"}, {"M": {"deep": {"SS": ["b", "a", "c"]}}}, {"L": []}, {"M": {}}]},
                "long name inside the map": {"BS": [b"\x02", b"\x01\x00", b"\x01"]},
            }},
            "l": {"L": [{"NULL": True}, {"BOOL": False}, {"B": b"x"}, {"NS": ["10", "2", "-1", "0.5", "-10", "0"]}, {"S": "z" * 20}]},
            "ss": {"SS": ["red", "blue", "Blue", "a very long set member string"]},
            "ns": {"NS": ["10", "-1", "0.5", "2", "-10", "0", "1e2", "-0.001"]},
            "bs": {"BS": [b"\xff", b"\x00", b"\x00\x00", b"abc", b"ab"]},
            "ünï": {"S": "non-ASCII name"},
            "Zed": {"S": "upper-case name sorts first"},
        }
        norm = tw.normalize_item(item)
        blob = tw.encode_item(item)
        ck.eq("put every type: reply attributes None", c.put_item("types", item), None)
        got = c.get_item("types", {"pk": {"S": "every-type"}})
        ck.eq("get every type: reply bytes = put bytes", got, blob)
        dec = tw.decode_item(got) if got else {}
        ck.eq("get every type: decodes to the canonical item", dec, norm)
        ck.eq("get every type: names in bytewise order", list(dec), sorted(item, key=lambda n: n.encode()))
        ck.eq("every type: all ten types present",
              sorted({k for v in dec.values() for k in v} | {k for v in dec["m"]["M"].values() for k in v}),
              sorted(tw.VALUE_TAGS))
        want_n = {"n_frac": "0.0123", "n_exp": "1500", "n_negzero": "0", "n_int": "42",
                  "n_max": "9" * 38 + "0" * 88, "n_min": "-0." + "0" * 129 + "1"}
        ck.eq("every type: numbers canonical", {k: dec[k]["N"] for k in want_n}, want_n)
        ck.eq("every type: nested number canonical", dec["m"]["M"]["z"], {"N": "10"})
        ck.eq("every type: NS numeric order", dec["ns"]["NS"], ["-10", "-1", "-0.001", "0", "0.5", "2", "10", "100"])
        ck.eq("every type: SS bytewise order", dec["ss"]["SS"], ["Blue", "a very long set member string", "blue", "red"])
        ck.eq("every type: BS bytewise order", dec["bs"]["BS"], [b"\x00", b"\x00\x00", b"ab", b"abc", b"\xff"])
        ck.eq("every type: nested SS order", dec["m"]["M"]["a"]["L"][2]["M"]["deep"]["SS"], ["a", "b", "c"])
        got2 = c.get_item("types", {"pk": {"S": "every-type"}}, consistent_read=True)
        ck.eq("get every type consistent_read: same bytes", got2, blob)
        d = c.describe_table("types")
        ck.eq("describe after put: item_count", d.item_count, 1)
        ck.eq("describe after put: size_bytes = DynamoDB size of the item", d.size_bytes, tw.item_size(norm))
        # ALL_OLD on PutItem
        item2 = dict(item, s={"S": "changed"})
        old = c.put_item("types", item2, ReturnValues.ALL_OLD)
        ck.eq("put ALL_OLD over an item: the old bytes", old, blob)
        old2 = c.put_item("types", item, ReturnValues.ALL_OLD)
        ck.eq("put ALL_OLD again: the replaced bytes", old2, tw.encode_item(item2))
        ck.eq("put ALL_OLD of a new key: None", c.put_item("types", {"pk": {"S": "new"}}, ReturnValues.ALL_OLD), None)
        ck.eq("get missing key: None", c.get_item("types", {"pk": {"S": "absent"}}), None)
        # the miss reply's exact shape
        with raw_conn(self.srv.shared_port) as conn:
            f = conn.call(Op.GET_ITEM, tw.encode(tw.GET_ITEM_REQUEST, tw.GetItemRequest("types", tw.encode_item({"pk": {"S": "absent"}}))))
            ck.eq("get miss: flags RESPONSE, body empty, crc 0",
                  (f.flags, f.body, tw.parse_header(f.encode()).body_crc32), (tw.FLAG_RESPONSE, b"", 0))
        # a writer with another valid layout: leading bytes and gaps are accepted, stored as-is
        inner = tw.encode_item({"pk": {"S": "gappy"}, "v": {"S": "a value longer than 8"}})
        gappy = b"\x00junk\x00" + inner  # offsets are relative: the item stays valid
        try:
            ck.eq("put item with leading unclaimed bytes: accepted", c.put_item("types", gappy), None)
            ck.eq("get it: the same bytes back, junk included", c.get_item("types", {"pk": {"S": "gappy"}}), gappy)
        except TernError as e:
            ck.check("put item with leading unclaimed bytes: accepted", False, str(e))

    def delete_item(self):
        ck, c = self.ck, self.c
        it = {"id": {"S": "del-me"}, "v": {"N": "1"}, "w": {"S": "some longer string value"}}
        c.put_item("plain", it)
        old = c.delete_item("plain", {"id": {"S": "del-me"}}, ReturnValues.ALL_OLD)
        ck.eq("delete ALL_OLD: the deleted item's bytes", old, tw.encode_item(it))
        ck.eq("delete ALL_OLD: decodes", tw.decode_item(old) if old else None, tw.normalize_item(it))
        ck.eq("get after delete: None", c.get_item("plain", {"id": {"S": "del-me"}}), None)
        ck.eq("delete missing key ALL_OLD: None", c.delete_item("plain", {"id": {"S": "del-me"}}, ReturnValues.ALL_OLD), None)
        c.put_item("plain", it)
        ck.eq("delete NONE: None", c.delete_item("plain", {"id": {"S": "del-me"}}), None)
        ck.eq("delete NONE: item gone", c.get_item("plain", {"id": {"S": "del-me"}}), None)
        ck.error("delete on unknown table -> ResourceNotFoundException", lambda: c.delete_item("nosuch", {"id": {"S": "x"}}), RNF)

    # ---- Query ----
    def query(self):
        ck, c = self.ck, self.c
        ys = [str(y) for y in range(1970, 1980)]
        for y in ys:
            c.put_item("albums", {"artist": {"S": "abba"}, "year": {"N": y}, "title": {"S": "album of " + y}})
        nums = ["100", "-100", "10", "-10", "2", "-1", "0.5", "-0.5", "0", "0.001"]
        for n in nums:
            c.put_item("albums", {"artist": {"S": "nums"}, "year": {"N": n}})
        for y in ["1990", "1991"]:
            c.put_item("albums", {"artist": {"S": "other"}, "year": {"N": y}})
        A = {"S": "abba"}
        N = lambda x: {"N": x}  # noqa: E731
        cases = [
            ("no condition", None, ys),
            ("Eq", C.eq(N("1974")), ["1974"]),
            ("Lt", C.lt(N("1973")), ["1970", "1971", "1972"]),
            ("Le", C.le(N("1973")), ["1970", "1971", "1972", "1973"]),
            ("Gt", C.gt(N("1977")), ["1978", "1979"]),
            ("Ge", C.ge(N("1977")), ["1977", "1978", "1979"]),
            ("Between", C.between(N("1972"), N("1975")), ["1972", "1973", "1974", "1975"]),
            ("Between equal bounds", C.between(N("1975"), N("1975")), ["1975"]),
            ("Eq no match", C.eq(N("1969")), []),
            ("Gt non-canonical operand canonicalized by the client", C.gt(N("1.9775e3")), ["1978", "1979"]),
        ]
        for name, cond, want in cases:
            p = c.query("albums", A, cond)
            ck.eq("query %s" % name, years(p), want)
            ck.eq("query %s: count/scanned_count/no LEK" % name, (p.count, p.scanned_count, p.last_evaluated_key), (len(want), len(want), None))
            p = c.query("albums", A, cond, scan_forward=False)
            ck.eq("query %s descending" % name, years(p), want[::-1])
        p = c.query("albums", A, consistent_read=True)
        ck.eq("query consistent_read", years(p), ys)
        sorted_nums = sorted(nums, key=tw.number_key)
        ck.eq("query N sort key: numeric order", years(c.query("albums", {"S": "nums"})), sorted_nums)
        ck.eq("query N Lt 0", years(c.query("albums", {"S": "nums"}, C.lt(N("0")))), ["-100", "-10", "-1", "-0.5"])
        ck.eq("query N Between -1 2", years(c.query("albums", {"S": "nums"}, C.between(N("-1"), N("2")))),
              ["-1", "-0.5", "0", "0.001", "0.5", "2"])
        ck.eq("query partition with no items", (c.query("albums", {"S": "nobody"}).items, c.query("albums", {"S": "nobody"}).count), ([], 0))
        # returned items are the stored bytes
        p = c.query("albums", A, C.eq(N("1974")))
        ck.eq("query: item bytes = put bytes", p.items, [tw.encode_item({"artist": A, "year": N("1974"), "title": {"S": "album of 1974"}})])

        # paging
        def pages(limit, forward=True, cond=None):
            out = []
            for p in c.query_pages("albums", A, sort_key=cond, scan_forward=forward, limit=limit, max_pages=50):
                out.append(p)
            return out

        for limit, forward, cond, want in [
            (3, True, None, ys), (5, True, None, ys), (4, False, None, ys[::-1]), (1, True, None, ys),
            (2, True, C.between(N("1972"), N("1977")), ys[2:8]), (10, True, None, ys), (11, True, None, ys),
        ]:
            ps = pages(limit, forward, cond)
            label = "query paging limit %d%s%s" % (limit, "" if forward else " descending", " Between" if cond else "")
            ck.eq(label + ": items", [y for p in ps for y in years(p)], want)
            ck.eq(label + ": page sizes", [len(p.items) for p in ps],
                  [min(limit, len(want) - i) for i in range(0, len(want), limit)])
            lek_ok = all(p.last_evaluated_key is not None and tw.decode_item(p.last_evaluated_key) == {"artist": A, "year": N(years(p)[-1])}
                         for p in ps[:-1])
            ck.check(label + ": LEK = key of the page's last item", lek_ok)
            ck.check(label + ": LEK bytes = canonical key encoding",
                     all(p.last_evaluated_key == tw.encode_item({"artist": A, "year": N(years(p)[-1])}) for p in ps[:-1]))
            ck.eq(label + ": no LEK on the last page", ps[-1].last_evaluated_key, None)
        # exclusive_start_key in the middle, descending
        p = c.query("albums", A, scan_forward=False, exclusive_start_key=K("1975"))
        ck.eq("query descending after 1975", years(p), ["1974", "1973", "1972", "1971", "1970"])

        # S sort key: BeginsWith and byte order
        titles = ["Chiquitita", "Dancing Queen", "Dance (While the Music Still Goes On)", "Dancer", "Danc", "Mamma Mia",
                  "SOS", "dancing lower", "Dan", "Énergie"]
        for t in titles:
            c.put_item("songs", {"artist": A, "title": {"S": t}})
        st = sorted(titles, key=lambda s: s.encode())
        ck.eq("query S sort key: bytewise order", field(c.query("songs", A), "title", "S"), st)
        bw = [t for t in st if t.startswith("Danc")]
        ck.eq("query BeginsWith S", field(c.query("songs", A, C.begins_with({"S": "Danc"})), "title", "S"), bw)
        ck.eq("query BeginsWith S descending", field(c.query("songs", A, C.begins_with({"S": "Danc"}), scan_forward=False), "title", "S"), bw[::-1])
        ck.eq("query Lt S", field(c.query("songs", A, C.lt({"S": "Danc"})), "title", "S"), ["Chiquitita", "Dan"])
        ck.eq("query Gt S (UTF-8 bytes: É after ASCII)", field(c.query("songs", A, C.gt({"S": "dancing lower"})), "title", "S"), ["Énergie"])
        # B sort key
        bs = [b"\x00", b"\x00\x01", b"\x01", b"\xff", b"\x7f\x80", b"\x80"]
        for b in bs:
            c.put_item("blobs", {"id": {"S": "x"}, "b": {"B": b}})
        ck.eq("query B sort key: unsigned bytewise order", field(c.query("blobs", {"S": "x"}), "b", "B"), sorted(bs))
        ck.eq("query B Gt 7f", field(c.query("blobs", {"S": "x"}, C.gt({"B": b"\x7f"})), "b", "B"), [b"\x7f\x80", b"\x80", b"\xff"])
        ck.eq("query BeginsWith B", field(c.query("blobs", {"S": "x"}, C.begins_with({"B": b"\x00"})), "b", "B"), [b"\x00", b"\x00\x01"])
        # errors
        ck.error("query Between low > high -> ValidationException", lambda: c.query("albums", A, C.between(N("1975"), N("1972"))), VE)
        ck.error("query BeginsWith on N -> ValidationException", lambda: c.query("albums", A, C.begins_with(N("197"))), VE)
        ck.error("query operand S on N sort key -> ValidationException", lambda: c.query("albums", A, C.eq({"S": "1974"})), VE)
        ck.error("query non-canonical N operand -> ValidationException", lambda: c.query("albums", A, C.eq(N("1974.0")), canonical=False), VE)
        ck.error("query limit 0 -> ValidationException", lambda: c.query("albums", A, limit=0), VE)
        ck.error("query partition key N on S -> ValidationException", lambda: c.query("albums", N("1")), VE)
        ck.error("query partition key BOOL -> ValidationException", lambda: c.query("albums", {"BOOL": True}), VE)
        ck.error("query non-canonical N partition key -> ValidationException", lambda: c.query("numkeys", N("01"), canonical=False), VE)
        ck.error("query ESK of another partition -> ValidationException", lambda: c.query("albums", A, exclusive_start_key=K("1974", "other")), VE)
        ck.error("query condition on a table without sort key -> ValidationException", lambda: c.query("plain", {"S": "x"}, C.eq({"S": "y"})), VE)
        ck.error("query unknown table -> ResourceNotFoundException", lambda: c.query("nosuch", A), RNF)

    def big_pages(self):
        ck, c = self.ck, self.c

        def big_item(pk, seq, size):
            base = {"id": {"S": pk}, "seq": {"N": str(seq)}, "v": {"S": ""}}
            pad = size - tw.item_size(base)
            base["v"] = {"S": "x" * pad}
            assert tw.item_size(base) == size
            return base

        for i in range(1, 6):
            c.put_item("big", big_item("p1", i, 400_000))
        ps = list(c.query_pages("big", {"S": "p1"}, max_pages=10))
        ck.eq("query 1 MB page rule: 5 items of 400,000 -> pages of 3 and 2", [len(p.items) for p in ps], [3, 2])
        ck.check("query 1 MB page: LEK after the first page = key of item 3",
                 ps[0].last_evaluated_key is not None and tw.decode_item(ps[0].last_evaluated_key) == {"id": {"S": "p1"}, "seq": {"N": "3"}})
        # probe: a page whose cumulative size is exactly 1,048,576 after 3 items
        for i, size in enumerate([349_526, 349_525, 349_525, 349_525], 1):
            c.put_item("big", big_item("p2", i, size))
        ps = list(c.query_pages("big", {"S": "p2"}, max_pages=10))
        ck.info("1 MB rule at exactly 1,048,576 after 3 items: page sizes %s (3 = 'reaches' means >=)" % [len(p.items) for p in ps])
        ck.eq("query p2: all 4 items over the pages", sum(len(p.items) for p in ps), 4)
        # Scan pages by size as well
        sp = list(c.scan_pages("big", max_pages=20))
        ck.eq("scan big table: all 9 items", sum(len(p.items) for p in sp), 9)
        ck.check("scan big table: no page above 1 MB + one item", all(
            sum(tw.item_size(tw.decode_item(i)) for i in p.items[:-1]) < 1_048_576 for p in sp))

    # ---- Scan ----
    def scan(self):
        ck, c = self.ck, self.c
        ids = ["item-%03d" % i for i in range(60)]
        blobs = {}
        for i in ids:
            it = {"id": {"S": i}, "n": {"N": str(len(i))}}
            c.put_item("scanme", it)
            blobs[i] = tw.encode_item(it)

        def ids_of(pages):
            return [tw.decode_item(b)["id"]["S"] for p in pages for b in p.items]

        ps = list(c.scan_pages("scanme", max_pages=100))
        got = ids_of(ps)
        ck.eq("scan whole table: every item exactly once", sorted(got), ids)
        ck.check("scan: count = len(items), scanned_count = count", all(p.count == len(p.items) == p.scanned_count for p in ps))
        ck.eq("scan: item bytes = put bytes", sorted(b for p in ps for b in p.items), sorted(blobs.values()))
        if tw.HAVE_XXHASH:
            hs = [tw.partition_hash("scanme", {"S": i}) for i in got]
            ck.check("scan: index order = ascending partition hash", hs == sorted(hs))
        ps = list(c.scan_pages("scanme", limit=7, max_pages=100))
        ck.eq("scan limit 7 paging: every item exactly once", sorted(ids_of(ps)), ids)
        ck.check("scan limit 7: pages <= 7 items", all(len(p.items) <= 7 for p in ps))
        ck.check("scan limit 7: LEK = key of the page's last item", all(
            p.last_evaluated_key is None or tw.decode_item(p.last_evaluated_key) == {"id": tw.decode_item(p.items[-1])["id"]}
            for p in ps if p.items))
        ck.info("scan limit 7: page sizes %s" % [len(p.items) for p in ps])
        for total, limit in [(3, 5), (4, None), (7, 3)]:
            union, ok_range = [], True
            for s in range(total):
                seg = ids_of(c.scan_pages("scanme", limit=limit, segment=s, total_segments=total, max_pages=100))
                union += seg
                if tw.HAVE_XXHASH:
                    lo, hi = tw.segment_bounds(s, total)
                    ok_range &= all(lo <= tw.partition_hash("scanme", {"S": i}) <= hi for i in seg)
            ck.eq("parallel scan %d segments (limit %s): union = every item exactly once" % (total, limit), sorted(union), ids)
            if tw.HAVE_XXHASH:
                ck.check("parallel scan %d segments: items lie in their segment's hash range" % total, ok_range)
        seg0 = ids_of(c.scan_pages("scanme", segment=0, total_segments=2, max_pages=100))
        if seg0:
            ck.error("scan ESK outside the segment -> ValidationException",
                     lambda: c.scan("scanme", exclusive_start_key={"id": {"S": seg0[0]}}, segment=1, total_segments=2), VE)
        ck.error("scan segment = total_segments -> ValidationException", lambda: c.scan("scanme", segment=3, total_segments=3), VE)
        ck.error("scan total_segments 0 -> ValidationException", lambda: c.scan("scanme", segment=0, total_segments=0), VE)
        ck.error("scan total_segments 1,000,001 -> ValidationException", lambda: c.scan("scanme", segment=0, total_segments=1_000_001), VE)
        p = c.scan("scanme", segment=999_999, total_segments=1_000_000, limit=5)
        ck.check("scan total_segments 1,000,000 accepted", p.count <= 5)
        ck.error("scan limit 0 -> ValidationException", lambda: c.scan("scanme", limit=0), VE)
        ck.error("scan unknown table -> ResourceNotFoundException", lambda: c.scan("nosuch"), RNF)
        al = [tw.decode_item(b) for p in c.scan_pages("albums", limit=4, max_pages=100) for b in p.items]
        ck.eq("scan table with sort key: every item once", len(al), len({(a["artist"]["S"], a["year"]["N"]) for a in al}))
        ck.eq("scan table with sort key: item count", len(al), 22)

    # ---- batches ----
    def batches(self):
        ck, c = self.ck, self.c
        items = [{"id": {"S": "b-%02d" % i}, "v": {"N": str(i)}, "s": {"S": "batch item number %d" % i}} for i in range(25)]
        keys = [{"id": it["id"]} for it in items]
        if tw.HAVE_XXHASH:
            shards = {c.shard_of("batch", k["id"]) for k in keys}
            ck.eq("batch keys span both shards (by partition map)", shards, {0, 1})
        r = c.batch_write_item({"batch": [WriteRequest.put(it) for it in items]})
        ck.eq("batch write 25 puts: no unprocessed", r.unprocessed_items, [])
        r = c.batch_get_item({"batch": keys + [{"id": {"S": "missing"}}]})
        got = [b for t in r.responses if t.table == "batch" for b in t.items]
        ck.eq("batch get 26 keys: the 25 stored items (bytes), missing absent", sorted(got), sorted(tw.encode_item(i) for i in items))
        ck.eq("batch get: responses name only 'batch'", {t.table for t in r.responses}, {"batch"})
        ck.eq("batch get: no unprocessed keys", r.unprocessed_keys, [])
        r = c.batch_get_item({"batch": keys[:3]}, consistent_read=True)
        ck.eq("batch get consistent_read", sorted(b for t in r.responses for b in t.items), sorted(tw.encode_item(i) for i in items[:3]))
        b2 = [{"k": {"N": str(i)}, "x": {"BOOL": i % 2 == 0}} for i in range(1, 4)]
        r = c.batch_write_item({"batch": [WriteRequest.delete(k) for k in keys[:5]], "batch2": [WriteRequest.put(i) for i in b2]})
        ck.eq("batch write deletes + puts over 2 tables: no unprocessed", r.unprocessed_items, [])
        r = c.batch_get_item({"batch": keys[:10], "batch2": [{"k": {"N": str(i)}} for i in range(1, 5)]})
        by = {t.table: sorted(t.items) for t in r.responses}
        ck.eq("batch get 2 tables: deleted keys gone", by.get("batch"), sorted(tw.encode_item(i) for i in items[5:10]))
        ck.eq("batch get 2 tables: batch2 items", by.get("batch2"), sorted(tw.encode_item(i) for i in b2))
        # errors
        many = [WriteRequest.put({"id": {"S": "m-%02d" % i}}) for i in range(26)]
        ck.error("batch write 26 writes -> ValidationException", lambda: c.batch_write_item({"batch": many}), VE)
        ck.error("batch write 0 writes -> ValidationException", lambda: c.batch_write_item({}), VE)
        ck.error("batch write put+delete same key -> ValidationException",
                 lambda: c.batch_write_item({"batch": [WriteRequest.put(items[20]), WriteRequest.delete(keys[20])]}), VE)
        bad = tw.encode_item({"id": {"S": "bad"}, "n": {"N": "1.0"}}, canonical=False)
        ck.error("batch write with one invalid item -> ValidationException",
                 lambda: c.batch_write_item({"batch": [WriteRequest.put({"id": {"S": "good-1"}}), WriteRequest.put(bad)]}), VE)
        ck.eq("batch write rejected: nothing applied", c.get_item("batch", {"id": {"S": "good-1"}}), None)
        ck.error("batch write table twice -> ValidationException", lambda: c._call(Op.BATCH_WRITE_ITEM, tw.BatchWriteItemRequest([
            tw.TableWriteRequests("batch", [WriteRequest.put({"id": {"S": "t1"}})]),
            tw.TableWriteRequests("batch", [WriteRequest.put({"id": {"S": "t2"}})])])), VE)
        ck.error("batch write unknown table -> ResourceNotFoundException",
                 lambda: c.batch_write_item({"nosuch": [WriteRequest.put({"id": {"S": "x"}})]}), RNF)
        ck.error("batch write delete with a non-key -> ValidationException",
                 lambda: c.batch_write_item({"batch": [WriteRequest.delete({"id": {"S": "x"}, "v": {"N": "1"}})]}), VE)
        ck.error("batch get 101 keys -> ValidationException",
                 lambda: c.batch_get_item({"batch": [{"id": {"S": "k%03d" % i}} for i in range(101)]}), VE)
        r = c.batch_get_item({"batch": [{"id": {"S": "k%03d" % i}} for i in range(100)]})
        ck.check("batch get 100 keys accepted", isinstance(r, tw.BatchGetItemResponse))
        ck.error("batch get 0 keys -> ValidationException", lambda: c.batch_get_item({}), VE)
        ck.error("batch get duplicate keys -> ValidationException", lambda: c.batch_get_item({"batch": [keys[7], keys[7]]}), VE)
        ck.error("batch get unknown table -> ResourceNotFoundException", lambda: c.batch_get_item({"nosuch": [keys[0]]}), RNF)
        ck.error("batch get invalid key -> ValidationException", lambda: c.batch_get_item({"batch": [{"v": {"S": "x"}}]}), VE)

    # ---- Stats and routing ----
    def stats(self):
        ck, c = self.ck, self.c
        s = c.stats()
        ck.eq("stats: one entry per shard", [x.shard for x in s.shards], [0, 1])
        sec = self.doc[self.doc.find("### 6.4"): self.doc.find("### 6.5")]
        documented = re.findall(r"`([A-Z][A-Za-z]+)`", sec[sec.find("Today:"):])
        ck.check("stats: documented counter list parsed", len(documented) > 20, str(documented))
        for x in s.shards:
            names = [k.name for k in x.counters]
            missing = [n for n in documented if n not in names]
            ck.check("stats shard %d: every documented counter present" % x.shard, not missing, "missing %s" % missing)
            extra = [n for n in names if n not in documented]
            if extra:
                ck.info("stats shard %d: undocumented counters (ignored): %s" % (x.shard, extra))
            ck.eq("stats shard %d: counter names unique" % x.shard, len(names), len(set(names)))
        ck.info("stats Tables per shard: %s" % [x.as_dict().get("Tables") for x in s.shards])
        one = c.stats(1)
        ck.eq("stats shard 1: just shard 1", [x.shard for x in one.shards], [1])
        ck.error("stats shard 2 -> ValidationException", lambda: c.stats(2), VE)
        if not tw.HAVE_XXHASH:
            ck.info("routing check skipped: xxhash not importable")
            return
        before = {x.shard: x.as_dict().get("IndexItems", 0) for x in c.stats().shards}
        predicted = {0: 0, 1: 0}
        routed0 = c.routed_requests
        for i in range(40):
            pk = {"S": "route-%02d" % i}
            predicted[c.shard_of("routing", pk)] += 1
            c.put_item("routing", {"id": pk})
        ck.eq("routing: every PutItem went to a shard port", c.routed_requests - routed0, 40)
        after = {x.shard: x.as_dict().get("IndexItems", 0) for x in c.stats().shards}
        ck.eq("routing: per-shard IndexItems growth = partition-map prediction",
              {k: after[k] - before[k] for k in after}, predicted)
        # a request sent to the other shard's port is forwarded and answered normally
        pk = {"S": "route-00"}
        other = 1 - c.shard_of("routing", pk)
        with raw_conn(c.topology.shards[other].port) as conn:
            f = conn.call(Op.GET_ITEM, tw.encode(tw.GET_ITEM_REQUEST, tw.GetItemRequest("routing", tw.encode_item({"id": pk}))), other)
            ck.eq("routing: GetItem on the non-owning shard's port answered normally", tw.parse_reply(Op.GET_ITEM, f), tw.encode_item({"id": pk}))
            ck.check("routing: the reply carries no FORWARDED flag", not f.flags & tw.FLAG_FORWARDED, "flags 0x%x" % f.flags)

    # ---- validation errors: answered, connection usable ----
    def validation_errors(self):
        ck, c = self.ck, self.c
        with raw_conn(self.srv.shared_port) as conn:
            rid = conn.submit(Op.LIST_TABLES, tw.encode(tw.LIST_TABLES_REQUEST, tw.ListTablesRequest(None, 0)))
            f = conn.wait(rid)
            check_error_frame(ck, "invalid ListTables", f, Op.LIST_TABLES, rid, VE)
            ck.check("invalid ListTables: connection still usable", hello_ok(conn))
            raw = lambda d: tw.encode_item(d, canonical=False)  # noqa: E731
            bad_items = [
                ("non-canonical number", raw({"id": {"S": "x"}, "n": {"N": "1.0"}})),
                ("number with exponent", raw({"id": {"S": "x"}, "n": {"N": "1e3"}})),
                ("number -0", raw({"id": {"S": "x"}, "n": {"N": "-0"}})),
                ("number 10^126", raw({"id": {"S": "x"}, "n": {"N": "1" + "0" * 126}})),
                ("number 39 significant digits", raw({"id": {"S": "x"}, "n": {"N": "1" * 39}})),
                ("number below 1E-130", raw({"id": {"S": "x"}, "n": {"N": "0." + "0" * 130 + "1"}})),
                ("unsorted names", raw([("z", {"S": "1"}), ("id", {"S": "x"})])),
                ("duplicate names", raw([("id", {"S": "x"}), ("v", {"S": "1"}), ("v", {"S": "2"})])),
                ("empty name", raw([("", {"S": "1"}), ("id", {"S": "x"})])),
                ("empty SS", raw({"id": {"S": "x"}, "s": {"SS": []}})),
                ("unsorted SS", raw({"id": {"S": "x"}, "s": {"SS": ["b", "a"]}})),
                ("duplicate SS members", raw({"id": {"S": "x"}, "s": {"SS": ["a", "a"]}})),
                ("NS in text order", raw({"id": {"S": "x"}, "s": {"NS": ["10", "9"]}})),
                ("BS unsorted", raw({"id": {"S": "x"}, "s": {"BS": [b"\x01", b"\x00"]}})),
                ("unsorted M entries", raw({"id": {"S": "x"}, "m": {"M": [("b", {"S": "1"}), ("a", {"S": "2"})]}})),
                ("missing partition key", raw({"other": {"S": "x"}})),
                ("partition key of the wrong type", raw({"id": {"N": "1"}})),
                ("empty S partition key", raw({"id": {"S": ""}})),
            ]
            for name, blob in bad_items:
                rid = conn.submit(Op.PUT_ITEM, tw.encode(tw.PUT_ITEM_REQUEST, tw.PutItemRequest("plain", blob)))
                f = conn.wait(rid)
                e = tw.decode(tw.ERROR_RESPONSE, f.body) if f.is_error else None
                ck.check("PutItem %s -> ValidationException" % name, e is not None and e.code == VE,
                         "got %s" % (_short(e) if e else "success"))
            ck.check("after %d invalid PutItems: connection still usable" % len(bad_items), hello_ok(conn))
            ck.error("GetItem key with an extra attribute -> ValidationException",
                     lambda: conn.request(Op.GET_ITEM, tw.GetItemRequest("plain", tw.encode_item({"id": {"S": "x"}, "v": {"S": "y"}}))), VE)
            ck.error("GetItem key missing its sort key -> ValidationException",
                     lambda: conn.request(Op.GET_ITEM, tw.GetItemRequest("albums", tw.encode_item({"artist": {"S": "abba"}}))), VE)
            ck.error("GetItem key of the wrong type -> ValidationException",
                     lambda: conn.request(Op.GET_ITEM, tw.GetItemRequest("albums", tw.encode_item({"artist": {"S": "abba"}, "year": {"S": "1974"}}))), VE)
            ck.check("after invalid GetItems: connection still usable", hello_ok(conn))
        for op, fn in [("GetItem", lambda: c.get_item("nosuch", {"id": {"S": "x"}})),
                       ("PutItem", lambda: c.put_item("nosuch", {"id": {"S": "x"}})),
                       ("DeleteTable", lambda: c.delete_table("nosuch"))]:
            ck.error("%s unknown table -> ResourceNotFoundException" % op, fn, RNF)
        ck.check("client connection usable after the errors", hello_ok(c.shared))

    def limits(self):
        ck, c = self.ck, self.c
        base = {"id": {"S": "big1"}, "sk": {"S": "s"}, "v": {"S": ""}}
        n = 409_600 - tw.item_size(base)
        at = dict(base, v={"S": "x" * n})
        ck.eq("item of exactly 409,600 bytes: size", tw.item_size(at), 409_600)
        try:
            ck.eq("item of exactly 409,600 bytes accepted", c.put_item("limits", at), None)
        except TernError as e:
            ck.check("item of exactly 409,600 bytes accepted", False, str(e))
        ck.error("item of 409,601 bytes -> ValidationException", lambda: c.put_item("limits", dict(base, v={"S": "x" * (n + 1)})), VE)
        ck.eq("partition key of 2048 bytes accepted", c.put_item("plain", {"id": {"S": "k" * 2048}}), None)
        ck.error("partition key of 2049 bytes -> ValidationException", lambda: c.put_item("plain", {"id": {"S": "k" * 2049}}), VE)
        ck.eq("sort key of 1024 bytes accepted", c.put_item("limits", {"id": {"S": "a"}, "sk": {"S": "s" * 1024}}), None)
        ck.error("sort key of 1025 bytes -> ValidationException", lambda: c.put_item("limits", {"id": {"S": "a"}, "sk": {"S": "s" * 1025}}), VE)
        ck.eq("attribute name of 65535 bytes accepted", c.put_item("limits", {"id": {"S": "a"}, "sk": {"S": "n"}, "n" * 65535: {"NULL": True}}), None)
        ck.error("attribute name of 65536 bytes -> ValidationException",
                 lambda: c.put_item("limits", {"id": {"S": "a"}, "sk": {"S": "n"}, "n" * 65536: {"NULL": True}}), VE)

        def nested(levels, kind="L"):
            v = {"L": []} if kind == "L" else {"M": {}}
            for _ in range(levels - 1):
                v = {"L": [v]} if kind == "L" else {"M": {"m": v}}
            return {"id": {"S": "deep"}, "sk": {"S": "d"}, "d": v}

        ck.eq("L nested 32 deep accepted", c.put_item("limits", nested(32)), None)
        ck.eq("M nested 32 deep accepted", c.put_item("limits", nested(32, "M")), None)
        ck.error("L nested 33 deep -> ValidationException", lambda: c.put_item("limits", nested(33)), VE)
        ck.error("L nested 37 deep -> ValidationException (below the archive depth bound)", lambda: c.put_item("limits", nested(37)), VE)
        with raw_conn(self.srv.shared_port) as conn:
            rid = conn.submit(Op.PUT_ITEM, tw.encode(tw.PUT_ITEM_REQUEST, tw.PutItemRequest("limits", tw.encode_item(nested(38)))))
            frames, closed = collect_until_close(conn)
            f = frames[0] if frames else None
            check_error_frame(ck, "L nested 38 deep (archive depth)", f, Op.PUT_ITEM, rid, SER)
            ck.check("L nested 38 deep: connection closed", closed)

    # ---- unknown opcode ----
    def unknown_opcode(self):
        ck = self.ck
        with raw_conn(self.srv.shared_port) as conn:
            body = b"not an archive of anything \x00\xff" * 3
            conn.send_raw(tw.encode_frame(99, 500, body))
            f = conn.recv_frame()
            check_error_frame(ck, "unknown opcode 99", f, 99, 500, UNK)
            ck.check("unknown opcode: connection stays open, next request answered", hello_ok(conn))
            # pipelined: unknown opcode 0 and 255 then a Hello in one write
            data = (tw.encode_frame(0, 501, b"x" * 100) + tw.encode_frame(255, 502, b"")
                    + tw.encode_frame(Op.HELLO, 503, tw.encode(tw.HELLO_REQUEST, tw.HelloRequest("after"))))
            conn.send_raw(data)
            got = {}
            for _ in range(3):
                f = conn.recv_frame()
                got[f.request_id] = f
            check_error_frame(ck, "unknown opcode 0", got.get(501), 0, 501, UNK)
            check_error_frame(ck, "unknown opcode 255 (empty body)", got.get(502), 255, 502, UNK)
            ck.check("pipelined Hello after unknown opcodes answered", 503 in got and not got[503].is_error)
        # probe: unknown opcode with a wrong CRC (the document does not say which check wins)
        with raw_conn(self.srv.shared_port) as conn:
            conn.send_raw(tw.Frame(99, 0, 510, b"abc", tw.NO_SHARD, body_crc32=1).encode())
            frames, closed = collect_until_close(conn, timeout=3)
            codes = [tw.decode(tw.ERROR_RESPONSE, f.body).code for f in frames if f.is_error]
            ck.info("unknown opcode with a bad CRC: error codes %s, closed=%s" % (codes, closed))

    # ---- fatal errors ----
    def fatal(self, name, data, opcode, rid, code=SER, before=None, message=None, prefix=None):
        """Send ``data`` (after an optional good request ``before``), expect one error
        frame, replies to earlier requests, then the close."""
        ck = self.ck
        with raw_conn(self.srv.shared_port) as conn:
            pre = b""
            if before is not None:
                pre = tw.encode_frame(Op.HELLO, before, tw.encode(tw.HELLO_REQUEST, tw.HelloRequest("before")))
            after = tw.encode_frame(Op.HELLO, 9999, tw.encode(tw.HELLO_REQUEST, tw.HelloRequest("after")))
            try:
                conn.send_raw(pre + data + after)
            except (BrokenPipeError, ConnectionResetError):
                pass
            frames, closed = collect_until_close(conn)
            errs = [f for f in frames if f.is_error]
            e = check_error_frame(ck, name, errs[0] if errs else None, opcode, rid, code)
            ck.eq("%s: exactly one error frame" % name, len(errs), 1)
            if before is not None:
                ck.check("%s: the earlier request is still answered" % name,
                         any(f.request_id == before and not f.is_error for f in frames), _short(frames))
            ck.check("%s: the request after the bad frame is not answered" % name, all(f.request_id != 9999 for f in frames))
            ck.check("%s: then the connection closes" % name, closed)
            if e is not None and message is not None:
                ck.check("%s: message mentions %r" % (name, message), message.lower() in e.message.lower(), repr(e.message))
            if e is not None and prefix is not None:
                ck.check("%s: message starts with %r" % (name, prefix), e.message.startswith(prefix), repr(e.message))
            return e

    def fatal_errors(self):
        ck = self.ck
        lt = tw.encode(tw.LIST_TABLES_REQUEST, tw.ListTablesRequest(None, 5))
        good = tw.encode_frame(Op.LIST_TABLES, 601, lt)
        crc_bad = bytearray(good)
        crc_bad[20] ^= 0x01
        e = self.fatal("CRC mismatch", bytes(crc_bad), Op.LIST_TABLES, 601, before=600, message="crc")
        # a corrupted body byte (header CRC intact) is also a CRC mismatch
        body_bad = bytearray(good)
        body_bad[-1] ^= 0x40
        self.fatal("body byte flipped (CRC mismatch)", bytes(body_bad), Op.LIST_TABLES, 601, message="crc")

        def hdr(**kw):
            f = tw.Frame(Op.LIST_TABLES, 0, 700, lt, tw.NO_SHARD)
            for k, v in kw.items():
                setattr(f, k, v)
            return f.encode()

        self.fatal("malformed header: magic", hdr(magic=b"TERM"), 1, 0, before=699, prefix="malformed frame")
        self.fatal("malformed header: version 2", hdr(version=2), 1, 0, prefix="malformed frame")
        self.fatal("malformed header: unknown flag bit 0x0010", hdr(flags=0x0010), 1, 0, prefix="malformed frame")
        self.fatal("malformed header: flag bit 0x8000", hdr(flags=0x8000), 1, 0, prefix="malformed frame")
        self.fatal("malformed header: reserved 1", hdr(reserved=1), 1, 0, prefix="malformed frame")
        too_big = struct.pack("<4sBBHQIIII", b"TERN", 1, Op.LIST_TABLES, 0, 700, tw.FRAME_BODY_MAX_BYTES + 1, 0, tw.NO_SHARD, 0)
        self.fatal("malformed header: body_len 24 MiB + 1 (header only sent)", too_big, 1, 0, prefix="malformed frame")
        self.fatal("RESPONSE flag on a request", hdr(flags=tw.FLAG_RESPONSE), Op.LIST_TABLES, 700,
                   message="a response frame was sent to the server")
        self.fatal("ERROR flag on a request", hdr(flags=tw.FLAG_ERROR), Op.LIST_TABLES, 700,
                   message="a response frame was sent to the server")
        self.fatal("FORWARDED flag on a request", hdr(flags=tw.FLAG_FORWARDED), Op.LIST_TABLES, 700,
                   message="the FORWARDED flag is internal to the server")
        # FOUND on a request: not covered by the document; probe
        with raw_conn(self.srv.shared_port) as conn:
            conn.send_raw(hdr(flags=tw.FLAG_FOUND))
            frames, closed = collect_until_close(conn, timeout=3)
            ck.info("FOUND flag on a request: replies %s, closed=%s" % (
                [(f.flags, tw.decode(tw.ERROR_RESPONSE, f.body).code if f.is_error else None) for f in frames], closed))

        # bodies that are not valid archives
        item = tw.encode_item({"id": {"S": "x"}})
        put = bytearray(tw.encode(tw.PUT_ITEM_REQUEST, tw.PutItemRequest("plain", item)))
        put[-1] = 9
        self.fatal("PutItem return_values 9 (bad discriminant)", tw.encode_frame(Op.PUT_ITEM, 800, bytes(put)), Op.PUT_ITEM, 800, before=799)
        get = bytearray(tw.encode(tw.GET_ITEM_REQUEST, tw.GetItemRequest("plain", item)))
        get[-1] = 2
        self.fatal("GetItem consistent_read byte 2", tw.encode_frame(Op.GET_ITEM, 801, bytes(get)), Op.GET_ITEM, 801)
        self.fatal("Hello body shorter than the root", tw.encode_frame(Op.HELLO, 802, b"abc"), Op.HELLO, 802)
        self.fatal("DescribeTable with an empty body", tw.encode_frame(Op.DESCRIBE_TABLE, 803, b""), Op.DESCRIBE_TABLE, 803)
        oob = struct.pack("<Ii", tw.string_len_field(20), -100)  # out-of-line string pointing before the buffer
        self.fatal("string offset out of bounds", tw.encode_frame(Op.DESCRIBE_TABLE, 804, oob), Op.DESCRIBE_TABLE, 804)
        short_ool = b"abcde" + struct.pack("<Ii", tw.string_len_field(5), -5)
        self.fatal("out-of-line string of length 5", tw.encode_frame(Op.DESCRIBE_TABLE, 805, short_ool), Op.DESCRIBE_TABLE, 805)
        self.fatal("invalid UTF-8 table name", tw.encode_frame(Op.DESCRIBE_TABLE, 806, b"ab\xc3\x28cd\xff\xff"), Op.DESCRIBE_TABLE, 806)
        # an item whose attribute name bytes lie after the attribute vector (before the root)
        after = bytearray(struct.pack("<Ii", tw.string_len_field(10), 17) + b"\x04" + b"\x00" * 8)  # attr @0, name -> @17
        after += b"0123456789"  # @17
        after += struct.pack("<iI", -len(after), 1)  # root @27 -> attrs @0
        self.fatal("item with data placed after its holder",
                   tw.encode_frame(Op.PUT_ITEM, 807, tw.encode(tw.PUT_ITEM_REQUEST, tw.PutItemRequest("plain", bytes(after)))),
                   Op.PUT_ITEM, 807)
        bad_item = tw.encode(tw.PUT_ITEM_REQUEST, tw.PutItemRequest("plain", b"\x01\x02\x03"))
        self.fatal("PutItem whose item blob is not an archive", tw.encode_frame(Op.PUT_ITEM, 808, bad_item), Op.PUT_ITEM, 808)
        # swapped siblings inside an item: the value's bytes before the name's
        name, val = b"aaaaaaaaa1", b"bbbbbbbbb2"
        buf = bytearray(val + name)  # value @0, name @10
        attr_at = len(buf)
        buf += struct.pack("<Ii", tw.string_len_field(10), 10 - attr_at)  # name -> @10
        buf += b"\x00" + struct.pack("<Ii", tw.string_len_field(10), 0 - (attr_at + 9))  # S value -> @0
        buf += struct.pack("<iI", attr_at - len(buf), 1)
        swapped = bytes(buf)
        ck.eq("swapped-siblings item decodes (layout is in bounds)", tw.decode_item(swapped), {name.decode(): {"S": val.decode()}})
        self.fatal("item with swapped siblings", tw.encode_frame(Op.PUT_ITEM, 809, tw.encode(tw.PUT_ITEM_REQUEST, tw.PutItemRequest("plain", swapped))),
                   Op.PUT_ITEM, 809)
        # other connections are unaffected
        ck.check("after the fatal errors: the client's connection still usable", hello_ok(self.c.shared))

    def pipelining(self):
        ck, c = self.ck, self.c
        with raw_conn(self.srv.shared_port) as conn:
            rids = {}
            for i in range(200):
                k = "item-%03d" % (i % 80)  # 60 exist, 20 do not
                rids[conn.submit(Op.GET_ITEM, tw.encode(tw.GET_ITEM_REQUEST, tw.GetItemRequest("scanme", tw.encode_item({"id": {"S": k}}))))] = k
            order, ok = [], True
            for rid, k in rids.items():
                f = conn.wait(rid)
                order.append(rid)
                body = tw.parse_reply(Op.GET_ITEM, f)
                want = tw.encode_item({"id": {"S": k}, "n": {"N": str(len(k))}}) if int(k[-3:]) < 60 else None
                ok &= body == want
            ck.check("pipelined 200 GetItems on one connection: every reply right", ok)
            arrival = [f for f in conn._early]  # nothing left over
            ck.eq("pipelined: no stray replies", arrival, [])

    def delete_tables(self):
        ck, c = self.ck, self.c
        d = c.describe_table("albums")
        t = c.delete_table("albums")
        self.tables.discard("albums")
        ck.eq("delete table: status DELETING", t.status, TableStatus.DELETING)
        ck.eq("delete table: counts before deletion", (t.item_count, t.size_bytes), (d.item_count, d.size_bytes))
        ck.eq("delete table: name and key schema", (t.name, t.key_schema), (d.name, d.key_schema))
        ck.error("describe deleted table -> ResourceNotFoundException", lambda: c.describe_table("albums"), RNF)
        ck.error("delete deleted table -> ResourceNotFoundException", lambda: c.delete_table("albums"), RNF)
        ck.error("GetItem on deleted table -> ResourceNotFoundException", lambda: c.get_item("albums", K("1974")), RNF)
        ck.check("list tables: deleted table gone", "albums" not in c.list_all_tables())
        t = c.create_table("albums", ("artist", "S"), ("year", "N"))
        ck.eq("recreate deleted table: empty", (t.status, t.item_count), (TableStatus.CREATING, 0))
        ck.eq("recreated table: no old items", c.query("albums", {"S": "abba"}).items, [])
        gone = 0
        for name in sorted(self.tables):
            c.delete_table(name)
            gone += 1
        ck.eq("delete every other table", sorted(c.list_all_tables()), ["albums"])


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ternd", required=True, help="path to the ternd binary")
    ap.add_argument("--doc", default=os.path.join(HERE, "..", "..", "docs", "wire-protocol.md"))
    args = ap.parse_args()
    ck = Checker()
    with open(args.doc, encoding="utf-8") as f:
        doc = f.read()
    print("---- offline: the document's examples", flush=True)
    golden = offline_checks(ck, doc)
    if not os.access(args.ternd, os.X_OK):
        ck.check("ternd binary exists", False, args.ternd)
        print("SUMMARY %d passed, %d failed" % (ck.passed, ck.failed))
        return 1
    srv = None
    try:
        srv = Server(args.ternd)
        ck.info("ternd ready: shared_port=%d shard_ports=%s" % (srv.shared_port, srv.shard_ports))
        suite = Suite(ck, srv, doc, golden)
        try:
            for name in ["hello", "golden_replay", "tables_ddl", "every_type", "delete_item", "query", "big_pages",
                         "scan", "batches", "stats", "validation_errors", "limits", "unknown_opcode", "fatal_errors",
                         "pipelining", "list_tables", "delete_tables"]:
                ck.section(name, getattr(suite, name))
            ck.info("client routing: %s, %d requests routed to shard ports, %d to the shared port"
                    % (suite.c.routing, suite.c.routed_requests, suite.c.shared_requests))
        finally:
            suite.c.close()
        ck.check("server still running at the end", srv.proc.poll() is None)
    except Exception as e:  # noqa: BLE001
        ck.check("server session", False, "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
    finally:
        if srv is not None:
            srv.stop()
            if ck.failed:
                tail = srv.stderr_tail()
                if tail:
                    print("---- ternd stderr (tail)\n" + tail)
            srv.cleanup()
    print("SUMMARY %d passed, %d failed%s" % (ck.passed, ck.failed, (" (" + "; ".join(ck.failures[:20]) + ")") if ck.failed else ""))
    return 1 if ck.failed else 0


if __name__ == "__main__":
    sys.exit(main())
