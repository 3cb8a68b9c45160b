"""Rich progress for downloads: total bytes, rate, ETA, shards done, one line per active shard.

Lives apart from download.py so the downloader stays usable (and testable) without a terminal.
"""

from __future__ import annotations

import threading

from chatplan.data.download import Reporter, ShardResult


class RichReporter(Reporter):
    def __init__(self, console):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = console
        self.progress = Progress(
            TextColumn("{task.description:<22}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console,
        )
        self.lock = threading.Lock()
        self.tasks: dict[str, int] = {}
        self.fetched: dict[str, int] = {}  # bytes received per shard, all attempts
        self.need: dict[str, int] = {}  # bytes this shard will have cost once complete
        self.total_shards = self.done = self.skipped = 0
        self.overall = None

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def begin(self, names: list[str]) -> None:
        self.total_shards = len(names)
        self.overall = self.progress.add_task(self._label(), total=None)

    def _label(self) -> str:
        return f"shards {self.done}/{self.total_shards}"

    def _update_overall(self) -> None:
        # Shards not started yet are estimated at the mean size of those seen, so the ETA covers them.
        started = len(self.need)
        pending = self.total_shards - self.skipped - started
        total = None
        if started:
            total = sum(self.need.values()) + pending * sum(self.need.values()) / started
        self.progress.update(self.overall, total=total, completed=sum(self.fetched.values()),
                             description=self._label())

    def attempt(self, name: str, offset: int, total: int | None) -> None:
        with self.lock:
            got = self.fetched.setdefault(name, 0)
            self.need[name] = got + (total - offset if total is not None else 0)
            remaining = None if total is None else total - offset
            if name in self.tasks:
                self.progress.reset(self.tasks[name], total=remaining)
            else:
                self.tasks[name] = self.progress.add_task(name, total=remaining)
            self._update_overall()

    def advance(self, name: str, nbytes: int) -> None:
        with self.lock:
            self.fetched[name] = self.fetched.get(name, 0) + nbytes
            self.progress.advance(self.tasks[name], nbytes)
            self._update_overall()

    def retry(self, name: str, attempt: int, delay: float, reason: str) -> None:
        self.progress.console.print(f"{name}: {reason}; retry {attempt} in {delay:.1f} s", style="yellow",
                                    highlight=False, markup=False)

    def finish(self, result: ShardResult) -> None:
        with self.lock:
            self.done += 1
            if result.status == "skipped":
                self.skipped += 1
            if result.status == "failed":
                self.progress.console.print(f"{result.name}: failed: {result.error}", style="red",
                                            highlight=False, markup=False)
            if result.name in self.tasks:
                self.progress.remove_task(self.tasks.pop(result.name))
            self.need[result.name] = self.fetched.get(result.name, 0)
            if result.status == "skipped":
                self.need.pop(result.name)
            self._update_overall()
