"""`chatplan fit`: peak device memory per GPU for batch 1..256 across GPU types."""

from __future__ import annotations

from chatplan.commands.options import Edge, FormatOpt, JsonOpt, output_format, plan_options, print_json
from chatplan.request import PlanRequest

# fit shows memory only: the model, the fleet's shape, the total batch and the precision decide it
FIT_GROUPS = ("model", "fleet", "precision")
# memory per GPU does not depend on how the GPUs are grouped into nodes, nor on the link between them
FIT_EXCLUDE = ("device_batch_size", "inter_node_gbps", "gpus_per_node", "nodes")


@plan_options(*FIT_GROUPS, extra=("total_batch_size",), exclude=FIT_EXCLUDE, files=("gpu_catalog",))
def fit(request: PlanRequest, edge: Edge, json_out: JsonOpt = False, fmt: FormatOpt = "rich") -> None:
    """What fits where: peak device memory per GPU for batch 1..256 across GPU types."""
    from chatplan.render import fit_table, render_grid
    from chatplan.search import fit_grid

    fmt = output_format(fmt)
    grid = fit_grid(request, edge.catalog())
    if json_out:
        print_json(grid)
        return
    headers, rows, title, note = fit_table(grid)
    render_grid(headers, rows, fmt, title, note=note)
