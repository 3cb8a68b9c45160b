"""Print the README's accuracy table from `chatplan validate` (the README carries exactly this output).

    python scripts/accuracy_table.py            # print the table
    python scripts/accuracy_table.py --write    # replace the block between the markers in README.md
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from tabulate import tabulate

from chatplan.render import validation_table
from chatplan.validate import fitted_constants, heldout, leave_one_out, validate

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- accuracy:begin (scripts/accuracy_table.py) -->", "<!-- accuracy:end -->"


def table() -> str:
    headers, rows, _ = validation_table(validate())
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def heldout_table() -> str:
    """The held-out runs (chatplan/field_heldout.json), scored without bars, and their RMS per kind."""
    checks = heldout()
    headers, rows, _ = validation_table(checks, bars=False)
    text = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    summary = []
    for kind, figures in (("memory", ("allocated GiB", "device GiB")), ("time", ("train minutes",))):
        errs = [c.relative_error for c in checks if c.figure in figures]
        summary.append(f"{kind}: RMS {math.sqrt(sum(e * e for e in errs) / len(errs)):.1%} over {len(errs)} figures")
    return text + "\n\nHeld-out " + "; ".join(summary) + "."


def constants_table() -> str:
    """Every fitted constant, what fixed it, and the leave-one-out errors of the figures it moves."""
    loo = leave_one_out()
    rows = []
    for k in fitted_constants():
        own = [x for x in loo if x.row in k.field_rows and x.error is None
               and k.name in x.reason]
        rows.append([k.name, f"{k.value:.4g}", k.fixed_by,
                     "not cross-validated (one row)" if own or not k.field_rows else "-"])
    return tabulate(rows, headers=["fitted constant", "value", "fixed by", "leave-one-out"], tablefmt="github",
                    disable_numparse=True)


def loo_table() -> str:
    rows = [[x.row, x.figure, "-" if x.error is None else f"{x.error:+.1%}", x.reason] for x in leave_one_out()]
    return tabulate(rows, headers=["run", "figure", "leave-one-out error", "why"], tablefmt="github",
                    disable_numparse=True)


def block() -> str:
    return f"{BEGIN}\n{table()}\n\n{constants_table()}\n\n{loo_table()}\n\n{heldout_table()}\n{END}"


def main() -> None:
    if "--write" in sys.argv:
        text = README.read_text()
        start, stop = text.index(BEGIN), text.index(END) + len(END)
        README.write_text(text[:start] + block() + text[stop:])
    else:
        print(table())


if __name__ == "__main__":
    main()
