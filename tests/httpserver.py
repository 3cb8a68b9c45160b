"""Test helpers: a real threaded HTTP/1.1 server on 127.0.0.1 that serves parquet shards with
Range / If-Range support, injects faults on demand, and logs every request with the body bytes it
actually wrote; plus generated shards and a CLI runner for the data/tokenizer sub-apps.

Faults are queued per file name and consumed one per request that reaches the file:
  Fault("status", code=503, retry_after=1)   reply with that status, no body
  Fault("drop", at=N)      normal headers, N body bytes, then a TCP reset
  Fault("truncate", at=N)  correct Content-Length, N body bytes, then a clean close
  Fault("stall", at=N, seconds=S)  N body bytes, then silence for S seconds, then close
  Fault("short", at=N)     a 200 whose Content-Length and body are both just the first N bytes
  Fault("corrupt", at=N)   full length, byte N flipped (only a sha256 check can notice)
  Fault("ignore_range")    a 200 with the full body even when Range was asked
  Fault("replace", data=B) the file becomes B (new ETag and Last-Modified) before this request
"""

from __future__ import annotations

import base64
import collections
import hashlib
import io
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Fault:
    kind: str
    at: int = 0
    code: int = 503
    retry_after: float | None = None
    seconds: float = 0.0
    data: bytes = b""


@dataclass(frozen=True)
class Req:
    server: str
    path: str
    range: str | None
    if_range: str | None
    status: int
    start: int  # first body byte served (0 for a 200)
    sent: int  # body bytes actually written to the socket


def make_shard(seed: int, docs: int = 300, words: int = 150) -> bytes:
    """A deterministic, real-layout parquet shard (text column, zstd, row groups of 64 docs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(5000)]
    texts = [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(docs)]
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buf, row_group_size=64, compression="zstd",
                   use_dictionary=False, write_statistics=False)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients hanging up (timeouts, resets) are part of the tests


class ShardServer:
    """Serves `files` (name -> bytes) under `prefix`; or, with `redirect_to`, answers every request
    with a 302 to `redirect_to + name` like huggingface.co (carrying X-Linked-Size/ETag)."""

    def __init__(self, files: dict[str, bytes] | None = None, prefix: str = "/data/", *,
                 name: str = "origin", redirect_to: str | None = None, linked: dict[str, bytes] | None = None,
                 digest: str = "etag", honor_if_range: bool = True, rate: float | None = None):
        self.files = dict(files or {})
        self.prefix = prefix
        self.name = name
        self.redirect_to = redirect_to
        self.linked = linked if linked is not None else self.files  # what X-Linked-* describe
        self.digest = digest  # "etag" (sha256 ETag), "repr-digest", "digest", "none" (opaque ETag)
        self.honor_if_range = honor_if_range
        self.rate = rate  # bytes/s throttle, None = as fast as possible
        self.faults: dict[str, list[Fault]] = {}
        self.versions: dict[str, int] = {}
        self.log: list[Req] = []
        self.lock = threading.Lock()
        # Requests being answered: a client can read the whole answer before the handler thread has
        # logged it, so `requests()` waits for the answers under way to be logged (never a sleep).
        self.answering: collections.Counter[str] = collections.Counter()  # path -> answers not yet logged
        self.logged = threading.Condition(self.lock)
        self.closing = threading.Event()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{prefix.rstrip('/')}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self) -> ShardServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def fault(self, name: str, *faults: Fault) -> None:
        with self.lock:
            self.faults.setdefault(name, []).extend(faults)

    def requests(self, name: str) -> list[Req]:
        def ours(path: str) -> bool:
            return path.endswith("/" + name)

        with self.logged:
            self.logged.wait_for(lambda: not any(n for p, n in self.answering.items() if ours(p)), timeout=5.0)
            return [r for r in self.log if ours(r.path)]

    def sent(self, name: str) -> int:
        return sum(r.sent for r in self.requests(name))

    def etag(self, name: str) -> str:
        data = self.files[name]
        if self.digest == "etag":
            return f'"{sha256(data)}"'
        return f'"v{self.versions.get(name, 0)}-{sha256(data)[:8]}"'

    def last_modified(self, name: str) -> str:
        return f"Mon, 0{1 + self.versions.get(name, 0)} Jan 2024 00:00:00 GMT"

    # -- request handling ---------------------------------------------------------------------

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                with server.logged:
                    server.answering[self.path] += 1
                self.unlogged = True  # until _record has logged this answer
                try:
                    server._get(self)
                finally:
                    if self.unlogged:  # an answer that raised before it was logged
                        with server.logged:
                            server.answering[self.path] -= 1
                            server.logged.notify_all()

        return Handler

    def _record(self, h, status: int, start: int = 0, sent: int = 0) -> None:
        with self.logged:
            self.log.append(Req(self.name, h.path, h.headers.get("Range"), h.headers.get("If-Range"),
                                status, start, sent))
            self.answering[h.path] -= 1
            h.unlogged = False
            self.logged.notify_all()

    def _status(self, h, code: int, retry_after: float | None = None) -> None:
        body = f"{code}\n".encode()
        h.send_response(code)
        if retry_after is not None:
            h.send_header("Retry-After", str(retry_after))
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        self._record(h, code)

    def _get(self, h) -> None:
        if not h.path.startswith(self.prefix):
            return self._status(h, 404)
        name = h.path[len(self.prefix):]
        if self.redirect_to is not None:
            h.send_response(302)
            h.send_header("Location", f"{self.redirect_to.rstrip('/')}/{name}")
            if name in self.linked:
                h.send_header("X-Linked-Size", str(len(self.linked[name])))
                h.send_header("X-Linked-ETag", f'"{sha256(self.linked[name])}"')
            h.send_header("Content-Length", "0")
            h.end_headers()
            return self._record(h, 302)
        with self.lock:
            fault = self.faults[name].pop(0) if self.faults.get(name) else None
            if fault and fault.kind == "replace":
                self.files[name] = fault.data
                self.versions[name] = self.versions.get(name, 0) + 1
                fault = None
        if name not in self.files:
            return self._status(h, 404)
        if fault and fault.kind == "status":
            return self._status(h, fault.code, fault.retry_after)
        data = self.files[name]
        etag, lm = self.etag(name), self.last_modified(name)
        start = 0
        rng = h.headers.get("Range")
        if rng and not (fault and fault.kind in ("ignore_range", "short")):
            if_range = h.headers.get("If-Range")
            if not (self.honor_if_range and if_range is not None and if_range not in (etag, lm)):
                start = int(rng.removeprefix("bytes=").split("-")[0])
        if start >= len(data) > 0:
            return self._status(h, 416)
        body = data[start:]
        if fault and fault.kind == "short":
            body = data[:fault.at]
        if fault and fault.kind == "corrupt":
            body = bytearray(body)
            body[fault.at - start] ^= 0xFF
            body = bytes(body)
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("ETag", etag)
        h.send_header("Last-Modified", lm)
        if self.digest == "repr-digest":
            digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
            h.send_header("Repr-Digest", f"sha-256=:{digest}:")
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        limit = fault.at if fault and fault.kind in ("drop", "truncate", "stall") else len(body)
        sent = self._send(h, body[:limit])
        self._record(h, 206 if start else 200, start, sent)
        if fault and fault.kind in ("drop", "truncate", "stall"):
            h.close_connection = True
            if fault.kind == "stall":
                self.closing.wait(fault.seconds)
            elif fault.kind == "drop":
                time.sleep(0.05)  # let the client read what was sent, then reset the connection
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                h.connection.close()  # the real close (RST, no FIN) happens once rfile/wfile close

    def _send(self, h, body: bytes) -> int:
        sent, step = 0, 16_384
        t0 = time.perf_counter()
        try:
            while sent < len(body):
                if self.closing.is_set():
                    break
                h.wfile.write(body[sent:sent + step])
                sent += min(step, len(body) - sent)
                if self.rate:
                    ahead = sent / self.rate - (time.perf_counter() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        return sent


# -- CLI -----------------------------------------------------------------------------------------

# Runs a Typer sub-app the way the top-level CLI will: ChatplanError -> one stderr line + its code.
_RUNNER = """
import sys, importlib, click
from chatplan.errors import ChatplanError
app = importlib.import_module(sys.argv[1]).app
try:
    app(sys.argv[2:], prog_name="chatplan", standalone_mode=False)
except ChatplanError as e:
    print(f"chatplan: error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
except click.exceptions.ClickException as e:
    e.show()
    sys.exit(e.exit_code)
"""


def run_cli(module: str, *args: str, timeout: float = 60,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """`chatplan <sub> ...` through the sub-app module (e.g. "chatplan.data.cli")."""
    return subprocess.run([sys.executable, "-c", _RUNNER, module, *map(str, args)], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})
