"""`chatplan validate`: the planner against published runs, predicted next to measured, per figure."""

from __future__ import annotations

from chatplan.commands.options import FormatOpt, JsonOpt, output_format, print_json
from chatplan.errors import EXIT_REQUIREMENT, AlreadyReported


def validate(json_out: JsonOpt = False, fmt: FormatOpt = "rich") -> None:
    """Every published run of the field-validation set, planned with one set of constants: predicted vs
    measured with the relative error; exit 1 when a figure misses its bar."""
    import sys

    from chatplan.render import render_grid, validation_table
    from chatplan.validate import heldout, heldout_rows, sources, validate

    fmt = output_format(fmt)
    checks = validate()
    held = heldout()
    failed = [c for c in checks if not c.ok]
    if json_out:
        print_json({"checks": [c.to_dict() for c in checks], "sources": sources(), "ok": not failed,
                    "heldout": [c.to_dict() for c in held], "heldout_sources": sources(heldout_rows())})
    else:
        headers, rows, title = validation_table(checks)
        render_grid(headers, rows, fmt, title, note="sources: chatplan/field.json (FIELD.md)")
        headers, rows, _ = validation_table(held, bars=False)
        render_grid(headers, rows, fmt, "held-out runs: public nanochat reports, never fitted to (no bars)",
                    note="sources: chatplan/field_heldout.json")
    if failed:
        for c in failed:
            sys.stderr.write(f"chatplan: validate: {c.row} {c.figure} misses its bar\n")
        raise AlreadyReported(f"{len(failed)} figures miss their bars", EXIT_REQUIREMENT)
