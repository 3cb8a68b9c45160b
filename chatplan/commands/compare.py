"""`chatplan compare`: fleets (GPU types x counts) for one model, ranked by cost or time."""

from __future__ import annotations

from typing import Annotated

import typer

from chatplan.commands.options import Edge, FormatOpt, JsonOpt, output_format, plan_options, print_json
from chatplan.errors import InvalidInput
from chatplan.request import PlanRequest
from chatplan.search import DEFAULT_COUNTS


# rows show fleet, batch, time and cost: the data plan's options would change nothing shown
@plan_options("model", "horizon", "fleet", "precision", "money", "quality", "eval", exclude=("gpus", "nodes"),
              files=("gpu_catalog", "calibration"))
def compare(
    request: PlanRequest,
    edge: Edge,
    by: Annotated[str, typer.Option("--by", help="Rank by cost or time.")] = "cost",
    max_hours: Annotated[float | None, typer.Option("--max-hours", help="Fleets done in time rank first.")]
    = None,
    counts: Annotated[str, typer.Option("--counts", help="GPU counts to try, comma separated.")]
    = ",".join(map(str, DEFAULT_COUNTS)),
    gpu_types: Annotated[str | None, typer.Option("--gpu-types", help="GPU types, comma separated (default: all)")]
    = None,
    json_out: JsonOpt = False,
    fmt: FormatOpt = "rich",
) -> None:
    """Fleets (GPU types x counts) for one model, ranked by cost or time: every row is plan(depth, fleet)."""
    from chatplan.render import compare_table, render_grid
    from chatplan.search import compare_fleets

    fmt = output_format(fmt)
    try:
        count_list = tuple(int(c) for c in counts.split(","))
    except ValueError:
        raise InvalidInput(f"--counts {counts!r} must be comma-separated integers, e.g. 1,8,16") from None
    names = [g.strip() for g in gpu_types.split(",")] if gpu_types else None
    rows = compare_fleets(request, edge.catalog(), edge.load_calibration(), by=by, gpu_names=names,
                          counts=count_list, max_hours=max_hours)
    docs = [r.to_dict() for r in rows]
    if json_out:
        print_json({"by": by, "max_hours": max_hours, "rows": docs})
        return
    headers, table, title = compare_table(docs, by, max_hours)
    render_grid(headers, table, fmt, title,
                note="CORE (forecast): fitted to published nanochat runs; * = extrapolates beyond them (band widened)")
