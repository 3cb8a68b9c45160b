"""Typer options generated from PlanRequest's fields, by group, and the edge that loads files.

A command declares which groups it takes (`@plan_options("model", "fleet")`); the decorator adds
exactly those fields as options, collects them into a `PlanRequest`, and passes it as `request`.
The file options (`--gpu-catalog`, `--calibration`, `--tokenizer`) are not planner inputs: they are
loaded here, at the edge, into the values plan() takes (a Catalog, a Calibration, chars per token).
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from chatplan.errors import InvalidInput
from chatplan.request import GROUPS, PlanRequest, request_fields

_HINTS = typing.get_type_hints(PlanRequest)

FILE_OPTIONS: dict[str, tuple[Any, Any]] = {
    "gpu_catalog": (Path | None, typer.Option("--gpu-catalog", help="Extra GPU catalog (JSON/TOML); also "
                                                                    "$CHATPLAN_GPU_CATALOG.")),
    "calibration": (str | None, typer.Option("--calibration", help="Calibration file, or 'none' (default: "
                                                                   "$CHATPLAN_CALIBRATION, else the user's "
                                                                   "config dir).")),
    "tokenizer": (Path | None, typer.Option("--tokenizer", help="Tokenizer dir: use its measured chars/token.")),
}


def _option(f) -> Any:
    meta = f.metadata
    names = [meta["flag"]] + ([meta["short"]] if meta["short"] else [])
    if _HINTS[f.name] in (bool, bool | None):
        off = meta["flag"].replace("--", "--no-", 1)
        names = [f"{meta['flag']}/{off}"] if f.default is None else names
    return typer.Option(*names, help=meta["help"])


@dataclass(frozen=True)
class Edge:
    """What the file options resolved to."""

    gpu_catalog: Path | None = None
    calibration: str | None = None
    tokenizer: Path | None = None

    def catalog(self):
        from chatplan.catalog import load_catalog

        if self.gpu_catalog is not None and str(self.gpu_catalog) in ("", "."):
            raise InvalidInput(f"--gpu-catalog {str(self.gpu_catalog)!r} is not a file: give a JSON or TOML catalog")
        return load_catalog(self.gpu_catalog)

    def load_calibration(self, must_exist: bool = True):
        from chatplan.calibration import load_calibration

        return load_calibration(self.calibration, must_exist)


def plan_options(*groups: str, extra: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
                 files: tuple[str, ...] = tuple(FILE_OPTIONS)):
    """Add the options of these request groups (plus `extra` fields, minus `exclude`d ones, and the
    file options) to a command.

    The command receives `request: PlanRequest` and `edge: Edge` instead of the individual options.
    """
    groups = groups or GROUPS
    chosen = [f for f in request_fields() if (f.metadata["group"] in groups or f.name in extra)
              and f.name not in exclude]

    def decorate(func):
        sig = inspect.signature(func)
        hints = typing.get_type_hints(func, include_extras=True)  # the command's own options, resolved
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
               if p.name not in ("request", "edge")]
        extra = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                   annotation=Annotated[_HINTS[f.name], _option(f)]) for f in chosen]
        extra += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                    annotation=Annotated[typ, opt]) for name, (typ, opt) in FILE_OPTIONS.items()
                  if name in files]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name) for f in chosen}
            edge = Edge(**{name: kwargs.pop(name) for name in FILE_OPTIONS if name in files})
            if edge.tokenizer is not None:
                values["chars_per_token"] = measured_chars_per_token(edge.tokenizer, PlanRequest(**values))
            return func(request=PlanRequest(**values), edge=edge, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def measured_chars_per_token(tokenizer_dir: Path, request: PlanRequest) -> float:
    """The figure `chatplan tokenizer eval` saved beside the tokenizer, refused when that tokenizer's
    vocabulary is not the plan's (compared before any padding: a figure for 8,192 tokens says nothing
    about a 65,536-token plan)."""
    from chatplan.request import resolve
    from chatplan.tokenizer.evaluate import EVAL_FILE

    path = Path(tokenizer_dir) / EVAL_FILE
    try:
        doc = json.loads(path.read_text())
        value = float(doc["chars_per_token"])
    except (OSError, KeyError, ValueError, TypeError):
        raise InvalidInput(f"--tokenizer {str(tokenizer_dir)!r} has no measured chars/token ({path.name}); "
                           "run `chatplan tokenizer eval` first") from None
    vocab = doc.get("vocab_size")
    planned = resolve(request)[0].vocab_size
    if vocab is not None and vocab != planned:
        raise InvalidInput(f"--tokenizer {str(tokenizer_dir)!r} has {vocab:,} tokens but the plan's vocabulary is "
                           f"{planned:,}: measure a tokenizer of the plan's vocabulary, or pass --vocab-size {vocab}")
    return value


FORMATS = ("rich", "markdown", "plain")
FormatOpt = Annotated[str, typer.Option("--format", help="rich (terminal table), markdown or plain.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def output_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidInput(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


def print_json(doc: object) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
