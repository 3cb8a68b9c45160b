"""Small file helpers shared by the planner's commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

from chatplan.errors import RuntimeFailure


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write to a temporary name beside `path`, then rename: a crash never leaves half a file.
    An unwritable place is one line and exit 3 (found only at write time)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RuntimeFailure(f"cannot write {str(path)!r}: {e.strerror or e}") from None
    return path


def write_json_atomic(path: str | os.PathLike, doc: object, indent: int = 2) -> Path:
    return write_text_atomic(path, json.dumps(doc, indent=indent) + "\n")
