"""Resumable, verified, parallel download of FineWeb-Edu shards (SPEC §7).

One shard at a time per worker thread, all sharing one httpx client:

  1. skip the shard if `shard_NNNNN.parquet` is already there and its parquet footer is readable
     with a string `text` column;
  2. otherwise stream the body into `shard_NNNNN.parquet.part`. The response's validator (a strong
     ETag, else Last-Modified), size and expected sha256 go into a small `*.part.json` sidecar
     *before* the first body byte is written, so a partial file is always paired with what it is
     a prefix of;
  3. a later attempt, or a later run after a crash or SIGKILL, resumes with `Range: bytes=N-` and
     `If-Range: <validator>`. A 200 (the server ignored the range or the file changed), a 206 whose
     validator or sha256 differs from the sidecar's, or a Content-Range that does not start at N
     all restart from zero: bytes of two different files are never spliced;
  4. verify, then atomically rename into place: size equals the announced total, sha256 matches
     when the server announced one, the parquet footer is readable with the `text` column. A file
     that fails is deleted (it is known bad) and fetched again; a corrupt file is never renamed
     into place.

Redirects are followed (huggingface.co answers 302 to a CDN); httpx re-sends Range and If-Range to
the final location, and every attempt starts again from the base URL because CDN links expire.

SHA-256 is taken, first match wins, from: `Repr-Digest: sha-256=:<base64>:` (RFC 9530) or
`Digest: SHA-256=<base64>` (RFC 3230) on any response of the redirect chain; `X-Linked-ETag` that is
64 hex digits (Hugging Face's LFS sha256, on the 302); a strong `ETag` of 64 hex digits on the
final response. `Content-Digest` is not used: on a 206 it covers only the range.

Retries with exponential backoff and jitter (`Retry-After` honoured, capped) on connection errors,
timeouts (including a stalled body), protocol errors (a body cut short), 408/429 and 5xx. Never on
404 or other 4xx: those fail the shard at once. A local write error (disk full, permission denied,
read-only file system) stops every worker and raises one RuntimeFailure line; partial files are
kept for the next run.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import random
import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from chatplan.data.shards import shard_problem
from chatplan.dataplan import DATASET_BASE_URL, NUM_SHARDS, shard_filename
from chatplan.errors import InvalidInput, RuntimeFailure

DEFAULT_WORKERS = 4
DEFAULT_TIMEOUT = 30.0  # seconds without progress (connect, or between body chunks) before a retry
DEFAULT_RETRIES = 6  # retries after the first attempt, per shard
DEFAULT_BACKOFF = 1.0  # first retry waits ~1 s, then 2, 4, ... (with jitter)
DEFAULT_BACKOFF_MAX = 60.0
MAX_WORKERS = 64
PART_SUFFIX = ".part"
META_SUFFIX = ".part.json"
USER_AGENT = "chatplan-data/1"

_HEX64 = re.compile(r'^"?([0-9a-fA-F]{64})"?$')


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ShardResult:
    name: str
    status: str  # "downloaded" | "resumed" | "skipped" | "failed" | "cancelled"
    size: int  # bytes of the final file (0 unless it is in place)
    fetched: int  # body bytes received over the network, all attempts together
    attempts: int  # HTTP requests made (0 when skipped)
    sha256: str | None = None  # set when the server announced one and the file matched it
    error: str | None = None  # why it failed


@dataclass(frozen=True)
class DownloadSummary:
    dir: str
    results: tuple[ShardResult, ...]
    seconds: float

    def _with(self, *statuses: str) -> list[ShardResult]:
        return [r for r in self.results if r.status in statuses]

    @property
    def complete(self) -> list[ShardResult]:
        return self._with("downloaded", "resumed", "skipped")

    @property
    def failed(self) -> list[ShardResult]:
        return self._with("failed", "cancelled")

    @property
    def fetched_bytes(self) -> int:
        return sum(r.fetched for r in self.results)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        counts = {s: len(self._with(s)) for s in ("downloaded", "resumed", "skipped", "failed", "cancelled")}
        return {
            "dir": self.dir, "shards": len(self.results), **counts,
            "fetched_bytes": self.fetched_bytes, "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.fetched_bytes / 1e6 / self.seconds, 2) if self.seconds > 0 else None,
            "results": [asdict(r) for r in self.results],
        }


class Reporter:
    """Progress hooks, called from worker threads; the CLI subclasses this with Rich."""

    def begin(self, names: list[str]) -> None: ...
    def attempt(self, name: str, offset: int, total: int | None) -> None: ...  # bytes restart here
    def advance(self, name: str, nbytes: int) -> None: ...
    def retry(self, name: str, attempt: int, delay: float, reason: str) -> None: ...
    def finish(self, result: ShardResult) -> None: ...


@dataclass(frozen=True)
class DownloadConfig:
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float | None = None  # defaults to `timeout`
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    backoff_max: float = DEFAULT_BACKOFF_MAX


# ---------------------------------------------------------------------------------------------
# Outcomes of one attempt (internal control flow)


class _Retry(Exception):
    """Transient: keep the partial file, back off, resume."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class _Restart(_Retry):
    """The partial file is useless (corrupt, changed, rejected range): delete it, then retry."""


class _Fail(Exception):
    """Permanent for this shard (404, other 4xx): no retries."""


class _Fatal(Exception):
    """Local I/O failure (disk full, permissions): stop every worker, keep partial files."""


class _Stopped(Exception):
    """Another worker hit a fatal error or the user interrupted."""


# ---------------------------------------------------------------------------------------------
# Validation of the request


def check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"base URL {base_url!r} must be an http:// or https:// URL with a host")
    return base_url.rstrip("/")


def check_indices(indices: Iterable[int], num_shards: int = NUM_SHARDS) -> list[int]:
    out = sorted(set(indices))
    bad = [i for i in out if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_shards]
    if bad:
        raise InvalidInput(f"shard index {bad[0]!r} is outside the dataset (0..{num_shards - 1})")
    return out


def prepare_dir(path: str | os.PathLike) -> Path:
    """Create the target directory and prove it is writable now (exit 2 instead of failing later)."""
    d = Path(path).expanduser()
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".chatplan-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InvalidInput(f"data directory {d} is not writable: {e.strerror or e}") from None
    return d


# ---------------------------------------------------------------------------------------------
# Headers


def _b64_to_hex(value: str) -> str | None:
    try:
        raw = base64.b64decode(value.strip().strip(":"), validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


def expected_sha256(responses) -> str | None:
    """The sha256 a server announces for the full file, searching the whole redirect chain."""
    for r in responses:
        for item in r.headers.get("repr-digest", "").split(","):
            algo, _, value = item.strip().partition("=")
            if algo.strip().lower() == "sha-256" and (h := _b64_to_hex(value)):
                return h
        for item in r.headers.get("digest", "").split(","):
            algo, _, value = item.strip().partition("=")
            if algo.strip().lower() == "sha-256" and (h := _b64_to_hex(value)):
                return h
    for r in responses:
        if m := _HEX64.match(r.headers.get("x-linked-etag", "").strip()):
            return m.group(1).lower()
    etag = responses[-1].headers.get("etag", "").strip()
    if not etag.startswith("W/") and (m := _HEX64.match(etag)):
        return m.group(1).lower()
    return None


def _validator(r) -> dict:
    """What If-Range can compare: a strong ETag if there is one, else Last-Modified."""
    etag = r.headers.get("etag")
    return {"etag": etag if etag and not etag.startswith("W/") else None,
            "last_modified": r.headers.get("last-modified")}


def _retry_after(r) -> float | None:
    try:
        return max(0.0, float(r.headers.get("retry-after", "")))
    except ValueError:
        return None  # an HTTP-date: ignore, our own backoff applies


def _content_range(r) -> tuple[int, int | None]:
    """(first byte, total length or None) of a 206 response."""
    m = re.match(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", r.headers.get("content-range", ""))
    if not m:
        raise _Restart(f"206 with unusable Content-Range {r.headers.get('content-range')!r}")
    return int(m.group(1)), (None if m.group(3) == "*" else int(m.group(3)))


def _int_header(responses, name: str) -> int | None:
    for r in reversed(responses):
        v = r.headers.get(name)
        if v is not None and v.strip().isdigit():
            return int(v)
    return None


# ---------------------------------------------------------------------------------------------
# Files


def _open_part(path: Path, mode: str):
    """Open the partial file (a seam: tests replace it to simulate a full disk)."""
    return open(path, mode)


def _disk_error(e: OSError, path: Path) -> _Fatal:
    what = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EROFS: "read-only file system"}.get(e.errno, e.strerror or str(e))
    return _Fatal(f"cannot write {path}: {what}; partial files are kept in {path.parent} "
                  "and the next run resumes them")


def _load_meta(path: Path) -> dict | None:
    try:
        m = json.loads(path.read_text())
        return m if isinstance(m, dict) else None
    except (OSError, ValueError):
        return None


def _save_meta(path: Path, meta: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path)
    except OSError as e:
        raise _disk_error(e, path) from None


def _remove(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink(missing_ok=True)
        except OSError as e:
            raise _disk_error(e, p) from None


def _sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# One shard


class _Shard:
    def __init__(self, index: int, d: Path, base_url: str, client, cfg: DownloadConfig,
                 reporter: Reporter, stop: threading.Event):
        self.name = shard_filename(index)
        self.url = f"{base_url}/{self.name}"
        self.final = d / self.name
        self.part = d / (self.name + PART_SUFFIX)
        self.meta_path = d / (self.name + META_SUFFIX)
        self.client, self.cfg, self.reporter, self.stop = client, cfg, reporter, stop
        self.fetched = 0
        self.attempts = 0

    def run(self) -> ShardResult:
        if self.final.exists() and shard_problem(self.final) is None:
            return ShardResult(self.name, "skipped", self.final.stat().st_size, 0, 0)
        resumed, error = False, None
        while True:
            if self.stop.is_set():
                return self._result("cancelled", error="stopped before completion")
            try:
                resumed = self._attempt()
                sha = self._verify()
                try:
                    os.replace(self.part, self.final)
                except OSError as e:
                    raise _disk_error(e, self.final) from None
                _remove(self.meta_path)
                return self._result("resumed" if resumed else "downloaded",
                                    size=self.final.stat().st_size, sha256=sha)
            except _Fail as e:
                return self._result("failed", error=str(e))
            except _Stopped:
                return self._result("cancelled", error="stopped before completion")
            except _Retry as e:
                error = str(e)
                if isinstance(e, _Restart):
                    _remove(self.part, self.meta_path)
                if self.attempts > self.cfg.retries:
                    return self._result("failed", error=f"{error} (after {self.attempts} attempts)")
                delay = self._delay(e.retry_after)
                self.reporter.retry(self.name, self.attempts, delay, error)
                if self.stop.wait(delay):
                    return self._result("cancelled", error="stopped before completion")

    def _result(self, status: str, size: int = 0, sha256: str | None = None,
                error: str | None = None) -> ShardResult:
        return ShardResult(self.name, status, size, self.fetched, self.attempts, sha256, error)

    def _delay(self, retry_after: float | None) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half random (no thundering herd)."""
        base = min(self.cfg.backoff_max, self.cfg.backoff * 2 ** (self.attempts - 1))
        delay = base / 2 + random.uniform(0, base / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cfg.backoff_max))
        return delay

    def _resume_point(self) -> tuple[int, dict | None]:
        """Bytes already held and the sidecar describing them; (0, None) if they can't be trusted."""
        have = self.part.stat().st_size if self.part.exists() else 0
        meta = _load_meta(self.meta_path) if have else None
        if have and (meta is None or meta.get("url") != self.url
                     or not (meta.get("etag") or meta.get("last_modified"))
                     or (meta.get("size") is not None and have > meta["size"])):
            return 0, None  # no proof of what these bytes are a prefix of: start over
        return have, meta

    def _attempt(self) -> bool:
        """One HTTP request; returns True when it continued earlier bytes (a resume)."""
        import httpx

        have, meta = self._resume_point()
        if meta and meta.get("size") is not None and have == meta["size"]:
            return True  # complete but not renamed (killed between fsync and rename): just verify
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = meta["etag"] or meta["last_modified"]
        self.attempts += 1
        try:
            with self.client.stream("GET", self.url, headers=headers) as r:
                offset = self._accept(r, have, meta)
                self._receive(r, offset)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
            raise _Retry(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
        except (httpx.TooManyRedirects, httpx.UnsupportedProtocol, httpx.ProxyError) as e:
            raise _Fail(f"{type(e).__name__}: {e}") from None
        return offset > 0

    def _accept(self, r, have: int, meta: dict | None) -> int:
        """Check status and validators; write the sidecar for a fresh body. Returns the offset."""
        chain = [*r.history, r]
        status = r.status_code
        if status == 416:
            raise _Restart("HTTP 416: the server refused our range")
        if status in (408, 429) or status >= 500:
            raise _Retry(f"HTTP {status}", _retry_after(r))
        if status not in (200, 206):
            raise _Fail(f"HTTP {status} {r.reason_phrase} for {r.url.copy_with(query=None)}")  # no signature
        sha = expected_sha256(chain)
        validator = _validator(r)
        if status == 206:
            if not have:
                raise _Restart("206 to a request without Range")
            start, total = _content_range(r)
            if start != have:
                raise _Restart(f"asked for bytes from {have}, got a range from {start}")
            # A content hash beats an ETag: CDN edges may label the same bytes differently.
            if meta.get("sha256") and sha:
                changed = sha != meta["sha256"]
            else:
                changed = bool(meta.get("etag") and validator["etag"] and validator["etag"] != meta["etag"])
            if meta.get("size") is not None and total is not None and total != meta["size"]:
                changed = True
            if changed:
                raise _Restart("the file changed on the server since the partial download")
            return have
        # 200: a full body, whether the server ignored Range or If-Range no longer matched.
        total = _int_header([r], "content-length")
        if total is None:
            total = _int_header(chain, "x-linked-size")
        # Old bytes go first, then the new sidecar: a kill in between must not leave a prefix of the
        # old file described as a prefix of the new one.
        _remove(self.part)
        _save_meta(self.meta_path, {"url": self.url, **validator, "size": total, "sha256": sha})
        return 0

    def _receive(self, r, offset: int) -> None:
        meta = _load_meta(self.meta_path) or {}
        self.reporter.attempt(self.name, offset, meta.get("size"))
        try:
            f = _open_part(self.part, "ab" if offset else "wb")
        except OSError as e:
            raise _disk_error(e, self.part) from None
        with f:
            # No chunk_size: httpx would buffer up to it and lose those bytes when the connection
            # drops. Writing what each read delivers keeps everything received for the resume.
            for chunk in r.iter_raw():
                if self.stop.is_set():
                    raise _Stopped()
                try:
                    f.write(chunk)
                except OSError as e:
                    raise _disk_error(e, self.part) from None
                self.fetched += len(chunk)
                self.reporter.advance(self.name, len(chunk))
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise _disk_error(e, self.part) from None

    def _verify(self) -> str | None:
        """Size, sha256 (when announced), parquet footer: anything wrong deletes the file (restart)."""
        meta = _load_meta(self.meta_path) or {}
        size = self.part.stat().st_size
        if meta.get("size") is not None and size < meta["size"]:
            raise _Retry(f"body ended at {size:,} of {meta['size']:,} bytes")  # resumable
        if meta.get("size") is not None and size > meta["size"]:
            raise _Restart(f"{size:,} bytes, more than the announced {meta['size']:,}")
        sha = None
        if meta.get("sha256"):
            sha = _sha256_file(self.part)
            if sha != meta["sha256"]:
                raise _Restart(f"sha256 {sha[:12]}... does not match the server's {meta['sha256'][:12]}...")
        problem = shard_problem(self.part)
        if problem:
            raise _Restart(f"not a valid shard: {problem}")
        return sha


# ---------------------------------------------------------------------------------------------
# Many shards


def download_shards(indices: Iterable[int], dir: str | os.PathLike, base_url: str = DATASET_BASE_URL,
                    workers: int = DEFAULT_WORKERS, timeout: float = DEFAULT_TIMEOUT,
                    retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                    backoff_max: float = DEFAULT_BACKOFF_MAX, connect_timeout: float | None = None,
                    reporter: Reporter | None = None, num_shards: int = NUM_SHARDS) -> DownloadSummary:
    """Download the given shard indices into `dir` (exactly these: callers add the validation one);
    `num_shards` is the dataset's file count (training shards + the validation shard).

    Returns a summary; shards that fail after all retries are listed there, not raised. Raises
    InvalidInput for bad arguments and RuntimeFailure for local disk errors (partials kept).
    """
    import httpx

    idx = check_indices(indices, num_shards)
    base = check_base_url(base_url)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise InvalidInput(f"workers must be an integer in 1..{MAX_WORKERS}, got {workers!r}")
    if not timeout > 0 or (connect_timeout is not None and not connect_timeout > 0):
        raise InvalidInput(f"timeouts must be positive seconds, got {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidInput(f"retries must be a non-negative integer, got {retries!r}")
    if not 0 <= backoff <= backoff_max:
        raise InvalidInput(f"backoff must satisfy 0 <= backoff ({backoff!r}) <= max ({backoff_max!r})")
    d = prepare_dir(dir)
    cfg = DownloadConfig(timeout, connect_timeout, retries, backoff, backoff_max)
    reporter = reporter or Reporter()
    stop = threading.Event()
    fatal: list[str] = []
    results: dict[int, ShardResult] = {}
    t0 = time.perf_counter()
    reporter.begin([shard_filename(i) for i in idx])

    client = httpx.Client(
        follow_redirects=True,
        timeout=httpx.Timeout(timeout, connect=connect_timeout or timeout),
        limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        headers={"User-Agent": USER_AGENT},
    )

    def work(i: int) -> ShardResult:
        shard = _Shard(i, d, base, client, cfg, reporter, stop)
        try:
            result = shard.run()
        except _Fatal as e:
            fatal.append(str(e))
            stop.set()
            result = shard._result("cancelled", error=str(e))
        reporter.finish(result)
        return result

    with client, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shard") as pool:
        futures = {pool.submit(work, i): i for i in idx}
        pending = set(futures)
        try:
            while pending:  # wait with a timeout so Ctrl-C reaches the main thread
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for f in done:
                    results[futures[f]] = f.result()
        except KeyboardInterrupt:
            stop.set()  # workers stop at the next chunk; partial files stay for the next run
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if fatal:
        raise RuntimeFailure(fatal[0])
    return DownloadSummary(str(d), tuple(results[i] for i in idx), time.perf_counter() - t0)
