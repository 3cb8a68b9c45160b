"""metrics.jsonl (rank 0) and the console: a Rich progress bar with ETA on a terminal, plain lines
otherwise. A resumed run drops what the interrupted one logged past its checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path


class Metrics:
    """metrics.jsonl (rank 0) and the console: Rich progress bar with ETA on a TTY, else plain lines."""

    def __init__(self, path: Path, enabled: bool, total: int, start: int, resume: bool):
        self.enabled, self.total = enabled, total
        self.file = None
        self.progress = None
        self.every = 1 if total <= 100 else max(1, total // 100)
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume and path.exists():  # drop what the interrupted run logged past its checkpoint
            kept = [line for line in path.read_text().splitlines() if _row_before(line, start)]
            path.write_text("".join(line + "\n" for line in kept))
        elif not resume:
            path.unlink(missing_ok=True)
        self.file = open(path, "a", buffering=1)
        if sys.stdout.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[info]}"))
            self.task = self.progress.add_task("train", total=total, completed=start, info="")
            self.progress.start()

    def log(self, row: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, flush=True)

    def step(self, row: dict) -> None:
        self.log(row)
        if not self.enabled:
            return
        info = (f"loss {row['loss']:.4f} | lr x{row['lr_mult']:.3f} | {row['ms']:.0f} ms | "
                f"{row['tok_per_s']:,.0f} tok/s" + (f" | MFU {row['mfu']:.1%}" if row.get("mfu") else ""))
        if self.progress is not None:
            self.progress.update(self.task, completed=row["step"] + 1, info=info)
        elif (row["step"] + 1) % self.every == 0 or row["step"] == 0 or row["step"] + 1 == self.total:
            print(f"step {row['step'] + 1:>6}/{self.total} | {info}", flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.file is not None:
            self.file.close()


def _row_before(line: str, step: int) -> bool:
    """A metrics row logged before `step` (rows without a step are kept; a line cut short by a
    kill -9 is dropped)."""
    try:
        return json.loads(line).get("step", -1) < step
    except (ValueError, AttributeError):
        return False
