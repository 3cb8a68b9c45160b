"""Print the README's accuracy table from `chatplan validate` (the README carries exactly this output).

    python scripts/accuracy_table.py            # print the table
    python scripts/accuracy_table.py --write    # replace the block between the markers in README.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from tabulate import tabulate

from chatplan.render import validation_table
from chatplan.validate import validate

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- accuracy:begin (scripts/accuracy_table.py) -->", "<!-- accuracy:end -->"


def table() -> str:
    headers, rows, _ = validation_table(validate())
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def block() -> str:
    return f"{BEGIN}\n{table()}\n{END}"


def main() -> None:
    if "--write" in sys.argv:
        text = README.read_text()
        start, stop = text.index(BEGIN), text.index(END) + len(END)
        README.write_text(text[:start] + block() + text[stop:])
    else:
        print(table())


if __name__ == "__main__":
    main()
