"""The shard downloader against a real HTTP server on 127.0.0.1, with faults injected.

Every test checks bytes, not just outcomes: finished shards are byte-identical to what the server
holds, resumed transfers fetch only the missing bytes (the server logs what it actually wrote), and
no file that fails verification ever appears under its final name.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from httpserver import ROOT, Fault, ShardServer, make_shard, run_cli, sha256

from chatplan.data import download as dl
from chatplan.data.download import download_shards
from chatplan.dataplan import VALIDATION_SHARD, VALIDATION_SHARD_INDEX, shard_filename
from chatplan.errors import InvalidInput, RuntimeFailure

# Timeouts and backoff stay well under 0.5 s so the whole file runs in seconds.
FAST = dict(timeout=0.5, retries=3, backoff=0.02, backoff_max=0.1)
S0, S1, S2 = (shard_filename(i) for i in range(3))


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {shard_filename(i): make_shard(i) for i in (0, 1, 2, VALIDATION_SHARD_INDEX)}


@pytest.fixture
def server(files):
    with ShardServer(files) as s:
        yield s


@pytest.fixture
def hf(files):
    """Hugging Face's shape: the origin answers 302 (with X-Linked-Size/ETag) to a CDN on another
    port whose ETag is opaque, so the sha256 comes only from the redirect."""
    with ShardServer(files, prefix="/cdn/", name="cdn", digest="none") as cdn, \
         ShardServer({}, prefix="/resolve/main/", name="origin", redirect_to=cdn.url, linked=files) as origin:
        yield origin, cdn


def assert_identical(d: Path, files: dict[str, bytes], names) -> None:
    for name in names:
        assert (d / name).read_bytes() == files[name], name
        assert not (d / (name + ".part")).exists()
        assert not (d / (name + ".part.json")).exists()


def assert_no_corrupt_final(d: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        p = d / name
        assert not p.exists() or p.read_bytes() == data, f"corrupt {name} renamed into place"


def by_name(summary):
    return {r.name: r for r in summary.results}


class Retries(dl.Reporter):
    """Records every backoff the downloader decides on (the delay it is about to wait, and why): the
    tests assert on these instead of on the wall clock, which a shared 2-core box makes unreliable."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waits: list[tuple[str, int, float, str]] = []

    def retry(self, name: str, attempt: int, delay: float, reason: str) -> None:
        with self.lock:
            self.waits.append((name, attempt, delay, reason))


class LoggedServer(ShardServer):
    """A ShardServer whose request log can be waited on: a handler logs a request only after writing its
    body, which can be after the client has read everything and returned."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.logged = threading.Condition()

    def _record(self, h, status: int, start: int = 0, sent: int = 0) -> None:
        super()._record(h, status, start, sent)
        with self.logged:
            self.logged.notify_all()

    def wait_for_requests(self, name: str, n: int, timeout: float = 60) -> list:
        with self.logged:
            assert self.logged.wait_for(lambda: len(self.requests(name)) >= n, timeout), self.requests(name)
        return self.requests(name)


def test_fresh_download_through_redirect_is_byte_identical_and_sha_checked(tmp_path, files, hf):
    origin, cdn = hf
    s = download_shards([0, 1, 2, VALIDATION_SHARD_INDEX], tmp_path, origin.url, workers=2, **FAST)
    assert s.ok and {r.status for r in s.results} == {"downloaded"}
    assert_identical(tmp_path, files, files)
    # The sha256 came from the 302's X-Linked-ETag (the CDN's ETag is opaque) and was checked.
    assert {r.name: r.sha256 for r in s.results} == {n: sha256(b) for n, b in files.items()}
    for name, data in files.items():
        assert [(r.status, r.sent) for r in cdn.requests(name)] == [(200, len(data))]
        assert [r.status for r in origin.requests(name)] == [302]
    assert s.fetched_bytes == sum(map(len, files.values()))


def test_connection_dropped_mid_body_resumes_only_missing_bytes(tmp_path, files, server):
    server.fault(S0, Fault("drop", at=100_000))
    s = download_shards([0], tmp_path, server.url, **FAST)
    assert_identical(tmp_path, files, [S0])
    first, second = server.requests(S0)
    assert (first.status, first.sent, first.range) == (200, 100_000, None)
    start = int(second.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 100_000  # what the client had received before the reset
    assert (second.status, second.start, second.sent) == (206, start, len(files[S0]) - start)
    assert second.if_range == server.etag(S0)
    r = by_name(s)[S0]
    assert (r.status, r.attempts, r.fetched) == ("resumed", 2, len(files[S0]))


def test_truncated_body_with_correct_content_length_resumes_at_the_exact_byte(tmp_path, files, server):
    server.fault(S1, Fault("truncate", at=70_001))
    s = download_shards([1], tmp_path, server.url, **FAST)
    assert_identical(tmp_path, files, [S1])
    assert [(r.status, r.range, r.sent) for r in server.requests(S1)] == [
        (200, None, 70_001), (206, "bytes=70001-", len(files[S1]) - 70_001)]
    assert server.sent(S1) == len(files[S1])  # not one byte served twice
    assert by_name(s)[S1].status == "resumed"


def test_503_twice_then_200_with_capped_retry_after(tmp_path, files, server):
    server.fault(S0, Fault("status", code=503, retry_after=30), Fault("status", code=503))
    waits = Retries()
    s = download_shards([0], tmp_path, server.url, reporter=waits, **FAST)
    assert_identical(tmp_path, files, [S0])
    assert [r.status for r in server.requests(S0)] == [503, 503, 200]
    assert by_name(s)[S0].attempts == 3
    # Retry-After: 30 was capped at backoff_max, and the second backoff (no Retry-After) stays under it
    assert [(name, attempt, reason) for name, attempt, _, reason in waits.waits] == [(S0, 1, "HTTP 503"),
                                                                                    (S0, 2, "HTTP 503")]
    first, second = (delay for *_, delay, _ in waits.waits)
    assert first == FAST["backoff_max"] and 0 < second <= FAST["backoff_max"]


def test_stall_past_the_timeout_is_abandoned_and_resumed(tmp_path, files, server):
    server.fault(S2, Fault("stall", at=50_000, seconds=5))
    waits = Retries()
    s = download_shards([2], tmp_path, server.url, reporter=waits, **{**FAST, "timeout": 0.3})
    # The read timeout ended the stalled transfer: the server did not end it (after 5 s it closes the
    # connection, which the client would see as a short body, not as a timeout).
    [(name, attempt, _, reason)] = waits.waits
    assert (name, attempt) == (S2, 1) and reason.startswith("ReadTimeout"), reason
    assert_identical(tmp_path, files, [S2])
    first, second = server.requests(S2)
    assert first.sent == 50_000
    assert (second.status, second.range, second.sent) == (206, "bytes=50000-", len(files[S2]) - 50_000)
    assert by_name(s)[S2].status == "resumed"


def test_404_fails_fast_while_other_shards_complete(tmp_path, files, server):
    waits = Retries()
    s = download_shards([0, 7], tmp_path, server.url, workers=2, reporter=waits,
                        **{**FAST, "backoff": 0.5, "backoff_max": 0.5})
    assert waits.waits == []  # no backoff was waited: a 404 is final
    missing = shard_filename(7)
    assert [r.status for r in server.requests(missing)] == [404]
    r = by_name(s)[missing]
    assert (r.status, r.attempts) == ("failed", 1) and "404" in r.error
    assert not (tmp_path / missing).exists() and not (tmp_path / (missing + ".part")).exists()
    assert_identical(tmp_path, files, [S0])
    assert [x.name for x in s.failed] == [missing]


def test_resume_through_redirect_sends_range_to_the_final_location(tmp_path, files, hf):
    origin, cdn = hf
    cdn.fault(S1, Fault("truncate", at=40_000))
    s = download_shards([1], tmp_path, origin.url, **FAST)
    assert_identical(tmp_path, files, [S1])
    assert [(r.status, r.range) for r in origin.requests(S1)] == [(302, None), (302, "bytes=40000-")]
    assert [(r.status, r.range, r.if_range, r.sent) for r in cdn.requests(S1)] == [
        (200, None, None, 40_000), (206, "bytes=40000-", cdn.etag(S1), len(files[S1]) - 40_000)]
    assert by_name(s)[S1].sha256 == sha256(files[S1])


def test_redirect_to_another_path_same_port_fresh_and_resumed(tmp_path, files):
    with ShardServer(files, prefix="/", name="both") as srv:
        srv.files = {f"cdn/{k}": v for k, v in files.items()}
        srv.linked = files
        srv.fault(f"cdn/{S0}", Fault("drop", at=60_000))
        original = srv._get

        def get(h):  # /resolve/<name> answers 302 to /cdn/<name> on the same port
            if h.path.startswith("/resolve/"):
                name = h.path.removeprefix("/resolve/")
                h.send_response(302)
                h.send_header("Location", f"/cdn/{name}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return srv._record(h, 302)
            return original(h)

        srv._get = get
        s = download_shards([0, 1], tmp_path, f"http://127.0.0.1:{srv.port}/resolve", **FAST)
    assert_identical(tmp_path, files, [S0, S1])
    cdn0 = [(r.status, r.range) for r in srv.log if r.path == f"/cdn/{S0}"]
    assert cdn0[0] == (200, None) and cdn0[1][0] == 206 and cdn0[1][1].startswith("bytes=")
    assert by_name(s)[S0].status == "resumed" and by_name(s)[S1].status == "downloaded"


def test_200_that_ignores_range_restarts_cleanly(tmp_path, files, server):
    server.fault(S0, Fault("truncate", at=30_000), Fault("ignore_range"))
    s = download_shards([0], tmp_path, server.url, **FAST)
    assert_identical(tmp_path, files, [S0])  # the full body replaced the prefix, not appended to it
    assert [(r.status, r.range, r.sent) for r in server.requests(S0)] == [
        (200, None, 30_000), (200, "bytes=30000-", len(files[S0]))]
    r = by_name(s)[S0]
    assert (r.status, r.fetched) == ("downloaded", 30_000 + len(files[S0]))


def test_file_changed_between_attempts_if_range_gives_the_new_file(tmp_path, files, server):
    new = make_shard(100)
    server.fault(S0, Fault("truncate", at=30_000), Fault("replace", data=new))
    old_etag = server.etag(S0)
    download_shards([0], tmp_path, server.url, **FAST)
    assert (tmp_path / S0).read_bytes() == new  # never a splice of old prefix + new suffix
    first, second = server.requests(S0)
    assert (second.if_range, second.status, second.sent) == (old_etag, 200, len(new))


def test_file_changed_and_server_ignores_if_range_restarts_from_zero(tmp_path, files):
    new = make_shard(101)
    with ShardServer(files, digest="none", honor_if_range=False) as srv:
        srv.fault(S0, Fault("truncate", at=30_000), Fault("replace", data=new))
        s = download_shards([0], tmp_path, srv.url, **FAST)
        log = [(r.status, r.range) for r in srv.requests(S0)]
    assert (tmp_path / S0).read_bytes() == new
    # 206 with a different ETag is refused; the next request starts over without Range.
    assert log == [(200, None), (206, "bytes=30000-"), (200, None)]
    assert by_name(s)[S0].status == "downloaded"


def test_new_cdn_etag_for_the_same_sha256_still_resumes(tmp_path, files):
    # A CDN edge relabels identical bytes (new ETag) and ignores If-Range; the origin's sha256 is the
    # same, so the 206 is accepted instead of throwing the prefix away.
    with ShardServer(files, prefix="/cdn/", name="cdn", digest="none", honor_if_range=False) as cdn, \
         ShardServer({}, prefix="/r/", redirect_to=cdn.url, linked=files) as origin:
        cdn.fault(S0, Fault("truncate", at=40_000), Fault("replace", data=files[S0]))
        s = download_shards([0], tmp_path, origin.url, **FAST)
        log = [(r.status, r.range, r.sent) for r in cdn.requests(S0)]
    assert log == [(200, None, 40_000), (206, "bytes=40000-", len(files[S0]) - 40_000)]
    assert by_name(s)[S0].status == "resumed"
    assert_identical(tmp_path, files, [S0])


def test_short_body_with_consistent_length_is_never_renamed(tmp_path, files):
    # No sha256 announced: only the size and parquet-footer checks stand between us and corruption.
    with ShardServer(files, digest="none") as srv:
        srv.fault(S0, *[Fault("short", at=90_000)] * 2)
        srv.fault(S1, Fault("short", at=90_000))
        s = download_shards([0, 1], tmp_path, srv.url, **{**FAST, "retries": 1})
        assert [r.sent for r in srv.requests(S0)] == [90_000, 90_000]
    r = by_name(s)
    assert r[S0].status == "failed" and "not a valid shard" in r[S0].error
    assert not (tmp_path / S0).exists() and not (tmp_path / (S0 + ".part")).exists()
    assert r[S1].status == "downloaded"
    assert_identical(tmp_path, files, [S1])


def test_corrupt_byte_is_caught_by_sha256_only(tmp_path, files):
    # Same length, valid parquet footer, one flipped byte in a data page: only the sha256 can tell.
    for digest in ("etag", "repr-digest"):
        d = tmp_path / digest
        with ShardServer(files, digest=digest) as srv:
            srv.fault(S0, Fault("corrupt", at=5_000))
            s = download_shards([0], d, srv.url, **FAST)
            assert [r.status for r in srv.requests(S0)] == [200, 200]
        assert_identical(d, files, [S0])
        assert by_name(s)[S0].attempts == 2 and by_name(s)[S0].sha256 == sha256(files[S0])


def test_retries_exhausted_leave_partial_for_the_next_run(tmp_path, files, server):
    server.fault(S0, Fault("truncate", at=20_000), *[Fault("status", code=502)] * 2)
    s = download_shards([0], tmp_path, server.url, **{**FAST, "retries": 2})
    r = by_name(s)[S0]
    assert (r.status, r.attempts) == ("failed", 3) and "HTTP 502" in r.error
    assert not (tmp_path / S0).exists()
    assert (tmp_path / (S0 + ".part")).read_bytes() == files[S0][:20_000]
    s = download_shards([0], tmp_path, server.url, **FAST)  # a new run picks up where it stopped
    assert_identical(tmp_path, files, [S0])
    assert server.requests(S0)[-1].range == "bytes=20000-"
    assert by_name(s)[S0].status == "resumed"


def test_present_and_valid_shards_are_skipped_invalid_ones_refetched(tmp_path, files, server):
    download_shards([0, 1], tmp_path, server.url, **FAST)
    (tmp_path / S1).write_bytes(b"PAR1 not really parquet")
    n = len(server.log)
    s = download_shards([0, 1], tmp_path, server.url, **FAST)
    assert [r.path for r in server.log[n:]] == [f"/data/{S1}"]
    assert by_name(s)[S0].status == "skipped" and by_name(s)[S1].status == "downloaded"
    assert_identical(tmp_path, files, [S0, S1])


def test_many_shards_many_faults_four_workers(tmp_path, files, server):
    server.fault(S0, Fault("drop", at=10_000), Fault("status", code=500))
    server.fault(S1, Fault("stall", at=1_000, seconds=3))
    server.fault(S2, Fault("ignore_range"), Fault("truncate", at=5_000))
    s = download_shards([0, 1, 2, VALIDATION_SHARD_INDEX], tmp_path, server.url, workers=4, **FAST)
    assert s.ok
    assert_identical(tmp_path, files, files)


def test_disk_full_is_one_line_and_partial_is_kept(tmp_path, files, server, monkeypatch):
    class FullDisk:
        """A file that accepts 64 kB, then reports ENOSPC like a full disk."""

        def __init__(self, path, mode):
            self.f = open(path, mode)

        def write(self, b):
            if self.f.tell() + len(b) > 65_536:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(dl, "_open_part", FullDisk)
    with pytest.raises(RuntimeFailure) as e:
        download_shards([0], tmp_path, server.url, **FAST)
    msg = str(e.value)
    assert "\n" not in msg and "disk full" in msg and S0 in msg and e.value.exit_code == 3
    part = (tmp_path / (S0 + ".part")).read_bytes()
    assert 0 < len(part) <= 65_536 and files[S0].startswith(part)
    assert (tmp_path / (S0 + ".part.json")).exists() and not (tmp_path / S0).exists()
    assert len(server.requests(S0)) == 1  # disk errors are not retried
    monkeypatch.undo()
    download_shards([0], tmp_path, server.url, **FAST)  # space freed: resumes from the partial
    assert_identical(tmp_path, files, [S0])
    assert server.requests(S0)[-1].range == f"bytes={len(part)}-"


def test_complete_part_not_yet_renamed_is_verified_without_a_request(tmp_path, files, server):
    # Killed between fsync and rename: the part file is whole; no request is needed.
    download_shards([0], tmp_path, server.url, **FAST)
    n = len(server.log)
    (tmp_path / S0).rename(tmp_path / (S0 + ".part"))
    meta = {"url": f"{server.url}/{S0}", "etag": server.etag(S0), "last_modified": None,
            "size": len(files[S0]), "sha256": sha256(files[S0])}
    (tmp_path / (S0 + ".part.json")).write_text(json.dumps(meta))
    s = download_shards([0], tmp_path, server.url, **FAST)
    assert len(server.log) == n and by_name(s)[S0].status == "resumed"
    assert_identical(tmp_path, files, [S0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(indices=[1823]), "outside the dataset"),
    (dict(indices=[-1]), "outside the dataset"),
    (dict(base_url="ftp://example.com/x"), "http"),
    (dict(workers=0), "workers"),
    (dict(timeout=0), "timeouts"),
    (dict(retries=-1), "retries"),
])
def test_invalid_arguments_exit_2(tmp_path, kwargs, match):
    args = dict(indices=[0], dir=tmp_path, base_url="http://127.0.0.1:9/x") | kwargs
    with pytest.raises(InvalidInput, match=match) as e:
        download_shards(**args)
    assert e.value.exit_code == 2


def test_unwritable_directory_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidInput, match="not writable"):
        download_shards([0], blocker / "sub", "http://127.0.0.1:9/x")


# -- killed midway -------------------------------------------------------------------------------

KILL_SCRIPT = """
import sys
from chatplan.data import download as dl

class MidBody(dl.Reporter):  # tells the test, once, that the transfer is well into the body
    def __init__(self):
        self.got, self.told = 0, False

    def advance(self, name, nbytes):
        self.got += nbytes
        if self.got >= 150_000 and not self.told:
            self.told = True
            print("mid-body", flush=True)

dl.download_shards([0], sys.argv[1], sys.argv[2], workers=1, timeout=120, retries=0, backoff=0, backoff_max=0,
                   reporter=MidBody())
"""


def test_sigkill_midway_then_rerun_completes_with_identical_bytes(tmp_path):
    big = make_shard(7, docs=1200)  # ~600 kB
    files = {S0: big}
    # The server stalls after 200,000 bytes until it shuts down, so the kill lands mid-body however
    # slowly either side runs; the child says when it has received 150,000 bytes (an event, not a sleep).
    with LoggedServer(files) as srv:
        srv.fault(S0, Fault("stall", at=200_000, seconds=3600))
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path), srv.url], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "mid-body\n"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        part = tmp_path / (S0 + ".part")
        have = part.stat().st_size  # what reached the file (the last write may have been buffered)
        assert 100_000 <= have <= 200_000 and big.startswith(part.read_bytes())
        assert not (tmp_path / S0).exists()
        s = download_shards([0], tmp_path, srv.url, **FAST)
        killed, resume = sorted(srv.wait_for_requests(S0, 2), key=lambda r: r.range is not None)
    assert (tmp_path / S0).read_bytes() == big
    assert (killed.range, killed.status, killed.sent) == (None, 200, 200_000)
    assert (resume.range, resume.status, resume.sent) == (f"bytes={have}-", 206, len(big) - have)
    assert by_name(s)[S0].status == "resumed" and by_name(s)[S0].fetched == len(big) - have


# -- CLI -----------------------------------------------------------------------------------------

CLI = "chatplan.data.cli"


@pytest.mark.parametrize("args, needle", [
    (["--shards", "0"], "--shards 0"),
    (["--shards", "-3"], "--shards -3"),
    (["--shards", "1823"], "1..1,822"),
    (["--shards", "2", "--tier", "300"], "exactly one"),
    ([], "exactly one"),
    (["--tier", "tiny"], "chatplan data sample"),
    (["--tier", "5"], "unknown tier"),
    (["--shards", "2", "--base-url", "file:///tmp/x"], "http"),
])
def test_cli_invalid_input_exit_2(tmp_path, args, needle):
    r = run_cli(CLI, "download", "--dir", tmp_path, "--no-progress", *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chatplan: error:") and needle in lines[0]
    assert not list(tmp_path.iterdir())


def test_cli_unwritable_dir_exit_2(tmp_path):
    (tmp_path / "f").write_text("")
    r = run_cli(CLI, "download", "--shards", "1", "--dir", tmp_path / "f" / "d", "--base-url",
                "http://127.0.0.1:9/x", "--no-progress")
    assert r.returncode == 2 and "not writable" in r.stderr


def test_cli_downloads_with_validation_shard_and_exit_3_lists_failures(tmp_path, files):
    served = {k: v for k, v in files.items() if k != S2}  # shard 2 is missing: a 404
    with ShardServer(served) as srv:
        r = run_cli(CLI, "download", "--shards", "3", "--dir", tmp_path, "--base-url", srv.url,
                    "--workers", "2", "--timeout", "0.5", "--retries", "2", "--backoff", "0.02",
                    "--backoff-max", "0.1", "--json", "--no-progress")
        paths = sorted(x.path for x in srv.log)
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [
        f"chatplan: error: 1 of 4 shards failed after all retries: {S2} "
        f"(HTTP 404 Not Found for {srv.url}/{S2}); run again to resume"]
    summary = json.loads(r.stdout)
    assert (summary["downloaded"], summary["failed"]) == (3, 1)
    assert paths == sorted(f"/data/{n}" for n in (S0, S1, S2, VALIDATION_SHARD))  # 404: asked once
    assert_identical(tmp_path, files, [S0, S1, VALIDATION_SHARD])


def test_cli_plan_file_sets_the_count(tmp_path, files):
    plan = tmp_path / "plan.json"
    import chatplan

    doc = chatplan.plan(depth=2).to_dict()
    doc["data"]["download_shards"] = 2
    plan.write_text(json.dumps(doc))
    with ShardServer(files) as srv:
        r = run_cli(CLI, "download", "--plan", plan, "--dir", tmp_path / "d", "--base-url", srv.url,
                    "--timeout", "0.5", "--backoff", "0.02", "--backoff-max", "0.1")
    assert r.returncode == 0, r.stderr
    assert "3 of 3 shards complete" in r.stdout
    assert_identical(tmp_path / "d", files, [S0, S1, VALIDATION_SHARD])
    r2 = run_cli(CLI, "download", "--plan", plan, "--dir", tmp_path / "d", "--base-url", srv.url,
                 "--no-progress")  # server gone: everything is present, nothing is requested
    assert r2.returncode == 0 and "3 already present" in r2.stdout


def test_shard_count_follows_the_planner():
    import chatplan
    from chatplan.data.cli import shard_count

    assert shard_count(None, 20, None, None) == chatplan.plan(depth=20).data.download_shards == 240
    assert shard_count(None, None, "300", None) == chatplan.plan(tier="300").data.download_shards
    assert shard_count(5, None, None, None) == 5
