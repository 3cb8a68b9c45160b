"""The architecture's rules, checked on the source (ast) and in a fresh interpreter.

1. plan.json and report.json have one owner, `chatplan/contract.py`: no other module of `chatplan/` or
   `chatplan_train/` indexes (`doc["key"]`, read, write or delete) or `.get("key")`s a top-level key of those
   documents. The key set is taken from real documents (a plan, its run binding, a trainer report with the
   runner's additions), so it follows the contract. Dicts that merely use the same words (a metrics row, a
   torch param group, the `fit` grid) are listed in ALLOWED, each with its reason; an entry that no longer
   matches anything fails too, so the list cannot go stale.
2. The import graph of both packages (every import, in functions too; `if TYPE_CHECKING:` imports are
   type-only and left out) has no cycle, and its arrows point the right way: `chatplan/` never imports the
   trainer or torch when a module is imported; the planner core imports no CLI, presentation, I/O-heavy
   library, data or tokenizer code; the trainer reaches the planner only through the modules it shares.
3. `import chatplan; chatplan.plan(depth=20)` loads no heavy third-party module.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

import chatplan
from chatplan.contract import RunBinding, add_run_summary, bind, plan_document, read_plan

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("chatplan", "chatplan_train")
CONTRACT = "chatplan/contract.py"


def _sources() -> dict[str, Path]:
    """Dotted module name -> file, for every module of both packages."""
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT)
            mods[".".join(rel.with_suffix("").parts).removesuffix(".__init__")] = path
    return mods


MODULES = _sources()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _rel(module: str) -> str:
    return MODULES[module].relative_to(ROOT).as_posix()


# --- 1. the documents' keys are read in one module --------------------------------------------------

def _plan_keys() -> set[str]:
    """Top-level keys of a bound plan.json, both architectures."""
    binding = RunBinding(out_dir="runs/x", data_dir="data", data_source="sample", train_shards=0,
                         validation_shard="shard_01822.parquet", tokenizer_dir="tok", ranks_sha256=None)
    keys = set(chatplan.plan(depth=4).to_dict()) | {"run"}
    keys |= set(bind(plan_document(chatplan.plan(arch="nanochat-2026", depth=4)), binding))
    return keys


def _report_keys() -> set[str]:
    """Top-level keys of report.json: the trainer's build_report (memory rows included), the keys the trainer
    stores into its `report` afterwards (chatplan_train/loop.py), and the runner's additions."""
    from chatplan_train.report import build_report

    doc = read_plan(plan_document(chatplan.plan(depth=4, gpus="1xCPU")))
    report = build_report(doc, step_seconds=[0.5] * 5, tokens_per_step=1024, flops_per_token=doc.flops_per_token,
                          peak_flops=1e11, peak_method="catalog", world_size=1, wall_seconds=3.0, steps_done=5,
                          memory={"max_allocated_gib": 1.0, "max_reserved_gib": 1.5, "device_used_gib": 2.0},
                          final_val_bpb=1.5, final_loss=3.0)
    keys = set(add_run_summary(report, doc, 4.0, []))
    for name in MODULES:
        if name.startswith("chatplan_train"):
            for n in ast.walk(TREES[name]):
                if (isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store) and isinstance(n.value, ast.Name)
                        and n.value.id == "report" and isinstance(n.slice, ast.Constant)
                        and isinstance(n.slice.value, str)):
                    keys.add(n.slice.value)
    return keys


PLAN_KEYS = _plan_keys()
REPORT_KEYS = _report_keys()
DOCUMENT_KEYS = frozenset(PLAN_KEYS | REPORT_KEYS)
DICT_METHODS = ("get", "pop", "setdefault")


@dataclass(frozen=True)
class KeyAccess:
    path: str  # relative to the repository root
    line: int
    key: str
    how: str  # "read" | "store" | "del" | "get" | "pop" | "setdefault"
    text: str  # the source line, stripped

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.how} {self.key!r}: {self.text}"


def key_accesses(source: str, path: str, keys: frozenset[str] = DOCUMENT_KEYS) -> list[KeyAccess]:
    """Every `x["key"]` and `x.get("key")` (also pop / setdefault) of a key in `keys` in one source file."""
    lines = source.splitlines()
    found = []
    for n in ast.walk(ast.parse(source)):
        key = how = None
        if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) and n.slice.value in keys:
            key = n.slice.value
            how = {ast.Load: "read", ast.Store: "store", ast.Del: "del"}[type(n.ctx)]
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in DICT_METHODS
              and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value in keys):
            key, how = n.args[0].value, n.func.attr
        if key is not None:
            found.append(KeyAccess(path, n.lineno, key, how, lines[n.lineno - 1].strip()))
    return sorted(found, key=lambda a: (a.path, a.line, a.key))


# (file, key, a substring of the line, why this is not plan.json / report.json). Every entry must still match.
ALLOWED = [
    ("chatplan/render.py", "arch", "grid['arch']", "the `fit` grid of search.fit_grid, not a plan document"),
    ("chatplan/render.py", "fleet", 'd["fleet"]', "a `compare` row (search.FleetOption.to_dict)"),
    ("chatplan/render.py", "mfu", "d['mfu']", "a `compare` row (search.FleetOption.to_dict)"),
    ("chatplan/render.py", "forecast", 'd["forecast"]', "a `compare` row (search.FleetRow.to_dict)"),
    ("chatplan/request.py", "arch", 'changes["arch"] = tier.arch', "keyword changes for dataclasses.replace"),
    ("chatplan/runner/report.py", "samples", '(samples or {}).get("samples"',
     "the sampler's stdout (chatplan_train.sample), before it enters the report"),
    ("chatplan_train/metrics.py", "mfu", "row['mfu']", "a metrics.jsonl row"),
    ("chatplan_train/metrics.py", "mfu", 'row.get("mfu")', "a metrics.jsonl row"),
    ("chatplan_train/resume.py", "optimizer", 'mine["optimizer"]', "a checkpoint's rank state"),
    ("chatplan_train/resume.py", "data", 'mine["data"]', "a checkpoint's rank state"),
    ("chatplan_train/resume.py", "optimizer", 's["optimizer"]', "a checkpoint's rank state"),
    ("chatplan_train/resume.py", "data", 's["data"]', "a checkpoint's rank state"),
    ("chatplan/validate.py", "inputs", 'row["inputs"]', "a row of chatplan/field.json, not a plan document"),
    ("chatplan_train/loop.py", "weights_sha256_per_rank", 'report["weights_sha256_per_rank"] =',
     "a write, not a read: the trainer adds its weights digest to the report it writes"),
    ("chatplan_train/optim.py", "params", 'group["params"]', "a torch optimizer param group"),
    ("chatplan_train/loop.py", "packing", 'report["packing"] =',
     "a write: the trainer adds the 2026 loader's crop counts to the report it writes"),
    ("chatplan_train/optim_2026.py", "params", 'g["params"]',
     "a group of PlanDoc.optimizer (the contract checked it against the architecture), not the plan's `params`"),
    ("chatplan_train/report.py", "memory_gib", 'report["memory_gib"] = {',
     "a write, not a read: build_report is report.json's builder"),
    ("chatplan_train/report.py", "mfu", 'report["mfu"]["measurement_error"] = mfu_error',
     "a write: build_report adds the measurement error to the row it has just built"),
    ("chatplan_train/report.py", "tokens_per_second", 'pred.get("tokens_per_second")',
     "PlanDoc.predictions, the contract's checked dict (its names match the report's rows)"),
    ("chatplan_train/report.py", "step_seconds", 'pred.get("step_seconds")', "PlanDoc.predictions, as above"),
    ("chatplan_train/report.py", "mfu", 'pred.get("mfu")', "PlanDoc.predictions, as above"),
]


def _allowed(a: KeyAccess) -> bool:
    return any(a.path == path and a.key == key and text in a.text for path, key, text, _ in ALLOWED)


def package_key_accesses(extra: dict[str, str] | None = None) -> list[KeyAccess]:
    """Key accesses in every module but the contract; `extra` replaces the source of some files (for tests)."""
    found = []
    for name, path in MODULES.items():
        rel = _rel(name)
        if rel != CONTRACT:
            found += key_accesses((extra or {}).get(rel) or path.read_text(), rel)
    return found


def test_the_key_set_is_taken_from_real_documents():
    assert {"schema_version", "model", "parallelism", "precision", "predictions", "run"} <= PLAN_KEYS
    assert {"tokens_per_second", "step_seconds", "mfu", "memory_gib", "train_hours_full_horizon",
            "cost_usd_full_horizon", "steps_done", "final_val_bpb", "final_loss", "samples", "plan",
            "run_wall_seconds", "weights_sha256_per_rank"} <= REPORT_KEYS


def test_only_the_contract_indexes_plan_and_report_documents():
    bad = [a for a in package_key_accesses() if not _allowed(a)]
    assert not bad, ("plan.json / report.json keys read outside chatplan/contract.py (use PlanDoc, RunBinding or "
                     "the contract's report helpers, or add an ALLOWED entry with a reason if this is another "
                     "dict):\n" + "\n".join(map(str, bad)))


def test_every_allow_list_entry_still_matches():
    found = package_key_accesses()
    stale = [e for e in ALLOWED if not any(a.path == e[0] and a.key == e[1] and e[2] in a.text for a in found)]
    assert not stale, f"ALLOWED entries that match nothing any more (remove them): {stale}"


def test_the_checker_flags_a_plan_read_added_to_the_runner():
    launch = "chatplan/runner/launch.py"
    source = (ROOT / launch).read_text() + '\n\ndef _world(doc):\n    return doc["parallelism"]["world_size"]\n'
    line = source.count("\n")
    bad = [a for a in package_key_accesses({launch: source}) if not _allowed(a) and a.path == launch]
    assert [(a.line, a.key, a.how) for a in bad] == [(line, "parallelism", "read")]


def test_the_checker_on_small_sources():
    src = ('def f(doc, report, key):\n'
           '    a = doc.get("run")\n'
           '    report["mfu"] = 1\n'
           '    b = doc[key], doc["world_size"], {"model": 1}, doc.get("nothing")\n'
           '    del doc["tier"]\n'
           '    return doc.raw.pop("chatplan_version"), doc.setdefault("warnings", [])\n')
    got = [(a.line, a.key, a.how) for a in key_accesses(src, "chatplan/x.py")]
    # a variable key, a nested key ("world_size" is not top-level) and a dict literal are not accesses
    assert got == [(2, "run", "get"), (3, "mfu", "store"), (5, "tier", "del"), (6, "chatplan_version", "pop"),
                   (6, "warnings", "setdefault")]


# --- 2. the import graph -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what is imported, dotted ("rich.console.Console", "chatplan.contract.read_plan")
    line: int
    top_level: bool  # runs when the module is imported (not inside a function)
    type_only: bool  # under `if TYPE_CHECKING:`

    @property
    def where(self) -> str:
        return f"{_rel(self.module)}:{self.line}"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, tree: ast.Module | None = None) -> list[Import]:
    is_package = MODULES[module].name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, top: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, child.lineno, top, typing_only) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    pkg = module.split(".") if is_package else module.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (child.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                found.extend(Import(module, f"{base}.{a.name}", child.lineno, top, typing_only) for a in child.names)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), top, True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), top, typing_only)
            else:
                in_def = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                visit(child, top and not in_def, typing_only)

    visit(tree or TREES[module], True, False)
    return found


IMPORTS = {m: imports_of(m) for m in MODULES}


def project_module(target: str) -> str | None:
    """The project module an import names (`chatplan.contract.read_plan` -> `chatplan.contract`)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def under(name: str, prefixes) -> str | None:
    """The prefix `name` is, or lies under, as a dotted path (`chatplan.data` covers `chatplan.data.shards`,
    not `chatplan.dataplan`)."""
    return next((p for p in prefixes if name == p or name.startswith(p + ".")), None)


def _graph() -> dict[str, dict[str, Import]]:
    """module -> {imported project module: the first import naming it}; type-only imports left out."""
    graph: dict[str, dict[str, Import]] = defaultdict(dict)
    for m, imps in IMPORTS.items():
        for imp in imps:
            dep = project_module(imp.target)
            if dep and dep != m and not imp.type_only:
                graph[m].setdefault(dep, imp)
    return graph


def _cycles(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycle():
    graph = _graph()
    cycles = _cycles(graph)
    lines = []
    for comp in cycles:
        edges = [f"    {m} -> {d}  ({imp.where}{'' if imp.top_level else ', in a function'})"
                 for m in comp for d, imp in sorted(graph[m].items()) if d in comp]
        lines.append(" <-> ".join(comp) + "\n" + "\n".join(edges))
    assert not cycles, "import cycles among the project's modules:\n" + "\n".join(lines)


def test_the_cycle_finder_sees_a_cycle_through_a_function_import():
    a = Import("chatplan.plan", "chatplan.search.plan_for_budget", 1, False, False)
    b = Import("chatplan.search", "chatplan.plan.plan_one", 1, True, False)
    assert _cycles({"chatplan.plan": {"chatplan.search": a}, "chatplan.search": {"chatplan.plan": b}}) == [
        ["chatplan.plan", "chatplan.search"]]


def test_imports_are_classified_top_level_lazy_and_type_only():
    src = ("from typing import TYPE_CHECKING\nimport torch\nif TYPE_CHECKING:\n    from chatplan.plan import Plan\n"
           "class C:\n    import rich\ndef f():\n    import typer\n")
    got = [(i.target, i.top_level, i.type_only) for i in imports_of("chatplan.contract", ast.parse(src))]
    assert got == [("typing.TYPE_CHECKING", True, False), ("torch", True, False), ("chatplan.plan.Plan", True, True),
                   ("rich", True, False), ("typer", False, False)]


def test_chatplan_never_imports_the_trainer_or_torch_at_import_time():
    bad = [f"{imp.where}: {imp.target}" for m, imps in IMPORTS.items() if m.split(".")[0] == "chatplan"
           for imp in imps if imp.top_level and not imp.type_only and under(imp.target, ("torch", "chatplan_train"))]
    assert not bad, "chatplan/ imports the trainer or torch at module level:\n" + "\n".join(bad)


# The planner core: pure, no I/O libraries, no presentation. `chatplan` (the package face, what
# `import chatplan` runs) belongs to it too.
CORE = ("chatplan.arch", "chatplan.request", "chatplan.plan", "chatplan.memory", "chatplan.timing",
        "chatplan.horizon", "chatplan.dataplan", "chatplan.catalog", "chatplan.contract", "chatplan.precision",
        "chatplan.facts", "chatplan.batch", "chatplan.search", "chatplan.checks", "chatplan.calibration",
        "chatplan.layout", "chatplan.paths", "chatplan.errors", "chatplan.files")
NOT_FOR_CORE = ("rich", "typer", "click", "tabulate", "httpx", "pyarrow", "torch", "numpy", "chatplan_train",
                "chatplan.cli", "chatplan.__main__", "chatplan.commands", "chatplan.runner", "chatplan.render",
                "chatplan.data", "chatplan.tokenizer")


def test_every_core_module_exists():
    assert all(c in MODULES for c in CORE), [c for c in CORE if c not in MODULES]


def test_the_planner_core_imports_no_cli_presentation_or_io():
    core = [m for m in MODULES if m == "chatplan" or under(m, CORE)]
    assert len(core) >= len(CORE) + 1
    bad = [f"{imp.where}: {imp.target}" for m in core for imp in IMPORTS[m] if under(imp.target, NOT_FOR_CORE)]
    assert not bad, "the planner core imports what it must not (anywhere, in functions too):\n" + "\n".join(bad)


# What the trainer may use of chatplan: the contract and what the model, optimizer, loader and sampler share
# with the planner. Imported today: arch.base, contract, data.shards, errors, layout, paths, precision, tokenizer.
TRAINER_MAY_IMPORT = ("chatplan.contract", "chatplan.arch", "chatplan.layout", "chatplan.precision",
                      "chatplan.paths", "chatplan.errors", "chatplan.data.shards", "chatplan.tokenizer",
                      "chatplan.files")


def _trainer_may_import(dep: str) -> bool:
    return dep == "chatplan.data" or under(dep, TRAINER_MAY_IMPORT) is not None


def test_the_trainer_reaches_the_planner_only_through_shared_modules():
    used: dict[str, list[str]] = defaultdict(list)
    for m, imps in IMPORTS.items():
        if m.split(".")[0] == "chatplan_train":
            for imp in imps:
                dep = project_module(imp.target)
                if dep and dep.split(".")[0] == "chatplan":
                    if imp.where not in used[dep]:
                        used[dep].append(imp.where)
    bad = {dep: where for dep, where in sorted(used.items()) if not _trainer_may_import(dep)}
    assert not bad, ("chatplan_train imports planner modules outside "
                     f"{', '.join(TRAINER_MAY_IMPORT)}, chatplan.data:\n"
                     + "\n".join(f"    {dep}: {', '.join(w)}" for dep, w in bad.items())
                     + f"\n(all imported: {', '.join(sorted(used))})")


def test_the_trainer_rule_is_by_module_not_by_prefix():
    assert _trainer_may_import("chatplan.data") and _trainer_may_import("chatplan.data.shards")
    assert _trainer_may_import("chatplan.arch.base") and _trainer_may_import("chatplan.tokenizer.core")
    assert not _trainer_may_import("chatplan.data.download") and not _trainer_may_import("chatplan.dataplan")
    assert not _trainer_may_import("chatplan") and not _trainer_may_import("chatplan.plan")


# --- 3. what `import chatplan` costs -----------------------------------------------------------------

HEAVY = ("torch", "rich", "typer", "click", "tabulate", "httpx", "pyarrow", "numpy", "chatplan_train")


def test_planning_loads_no_heavy_module():
    code = ("import json, sys\nimport chatplan\np = chatplan.plan(depth=20)\nassert p.depth == 20\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


if __name__ == "__main__":  # print what the rules see
    for a in package_key_accesses():
        print(("allowed  " if _allowed(a) else "VIOLATES ") + str(a))
    pytest.main([__file__, "-q"])
