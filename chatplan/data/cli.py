"""`chatplan data download` and `chatplan data sample` (registered by chatplan/cli.py).

Errors are raised as chatplan.errors exceptions; the top-level CLI turns them into one stderr line
and the exit code (2 invalid input, 3 runtime failure).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from chatplan import paths
from chatplan.data import download as dl
from chatplan.errors import InvalidInput, RuntimeFailure

app = typer.Typer(help="Fetch the pretraining shards (FineWeb-Edu or ClimbMix), or write the offline sample corpus.",
                  no_args_is_help=True, add_completion=False)


def _check_count(n: object, source: str, dataset) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= dataset.num_train_shards:
        raise InvalidInput(f"{source} gives {n!r} training shards; valid counts are 1..{dataset.num_train_shards:,} "
                           f"(the validation shard {dataset.validation_shard} is always added)")
    return n


def shard_count(shards: int | None, for_depth: int | None, tier: str | None, plan_file: Path | None,
                arch: str | None = None) -> int:
    """The number of training shards to fetch, from exactly one of the four ways to ask."""
    from chatplan.arch import get_arch

    dataset = get_arch(arch).dataset
    given = [flag for flag, v in (("--shards", shards), ("--for-depth", for_depth), ("--tier", tier),
                                  ("--plan", plan_file)) if v is not None]
    if len(given) != 1:
        raise InvalidInput("give exactly one of --shards N, --for-depth D, --tier 100|300|1000|speedrun, --plan FILE"
                           + (f" (got {' and '.join(given)})" if given else ""))
    if shards is not None:
        return _check_count(shards, f"--shards {shards}", dataset)
    if tier is not None:
        from chatplan.request import get_tier

        if get_tier(tier).data_source == "sample":
            raise InvalidInput(f"--tier {tier} trains on the embedded sample corpus, nothing to download: "
                               "run `chatplan data sample --dir D`")
    if plan_file is not None:
        from chatplan.contract import load_plan

        return _check_count(load_plan(plan_file).download_shards, f"plan {plan_file}", dataset)
    from chatplan.plan import plan  # only now: the planner is not needed for --shards

    p = plan(depth=for_depth, arch=arch) if for_depth is not None else plan(tier=tier, arch=arch)
    what = f"--for-depth {for_depth}" if for_depth is not None else f"--tier {tier}"
    return _check_count(p.data.download_shards, f"the plan for {what}", dataset)


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n} B"


ShardsOpt = Annotated[int | None, typer.Option("--shards", help="Training shards 0..N-1 to fetch.")]
DepthOpt = Annotated[int | None, typer.Option("--for-depth", help="The planner's count for depth D.")]
TierOpt = Annotated[str | None, typer.Option("--tier", help="The planner's count for tier 100|300|1000|speedrun.")]
PlanOpt = Annotated[Path | None, typer.Option("--plan", help="data.download_shards of a plan JSON.")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars on stderr.")]


@app.command()
def download(
    shards: ShardsOpt = None,
    for_depth: DepthOpt = None,
    tier: TierOpt = None,
    plan_file: PlanOpt = None,
    arch: Annotated[str | None, typer.Option("--arch", help="Whose corpus: nanochat-2025 (FineWeb-Edu, default) or "
                                                            "nanochat-2026 (ClimbMix).")] = None,
    dir: Annotated[Path | None, typer.Option("--dir", help="Where shards go (default: $CHATPLAN_HOME/<the "
                                                           "corpus's folder>).")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Dataset URL: files are "
                                                                    "<url>/shard_NNNNN.parquet.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Parallel downloads.")] = dl.DEFAULT_WORKERS,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds without progress before a retry.")]
    = dl.DEFAULT_TIMEOUT,
    retries: Annotated[int, typer.Option("--retries", help="Retries per shard after the first try.")]
    = dl.DEFAULT_RETRIES,
    backoff: Annotated[float, typer.Option("--backoff", help="First retry delay in seconds (doubles).")]
    = dl.DEFAULT_BACKOFF,
    backoff_max: Annotated[float, typer.Option("--backoff-max", help="Longest retry delay in seconds.")]
    = dl.DEFAULT_BACKOFF_MAX,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    progress: ProgressOpt = True,
) -> None:
    """Download training shards 0..N-1 plus the fixed validation shard, resumably and verified."""
    from chatplan.arch import get_arch
    from chatplan.request import get_tier

    if arch is None and tier is not None and get_tier(tier).arch is not None:
        arch = get_tier(tier).arch  # a tier names its architecture, and so its corpus
    if arch is None and plan_file is not None:
        from chatplan.contract import load_plan

        arch = load_plan(plan_file).arch.name
    dataset = get_arch(arch).dataset
    n = shard_count(shards, for_depth, tier, plan_file, arch)
    indices = list(range(n)) + [dataset.validation_shard_index]
    base_url = base_url or dataset.base_url
    dl.check_base_url(base_url)  # before touching the disk
    kwargs = dict(num_shards=dataset.num_train_shards + 1, dir=dir or paths.data_dir(dataset.local_dir),
                  base_url=base_url, workers=workers, timeout=timeout, retries=retries,
                  backoff=backoff, backoff_max=backoff_max)
    if progress:
        from rich.console import Console

        from chatplan.data.progress import RichReporter

        with RichReporter(Console(stderr=True)) as reporter:
            summary = dl.download_shards(indices, reporter=reporter, **kwargs)
    else:
        summary = dl.download_shards(indices, **kwargs)
    d = summary.to_dict()
    if as_json:
        print(json.dumps(d, indent=1))
    else:
        rate = f" ({d['mb_per_s']:.1f} MB/s)" if d["mb_per_s"] else ""
        print(f"{len(summary.complete)} of {d['shards']} shards complete in {summary.dir}: "
              f"{d['downloaded']} downloaded, {d['resumed']} resumed, {d['skipped']} already present; "
              f"{_human_bytes(d['fetched_bytes'])} fetched in {d['seconds']:.1f} s{rate}")
    if summary.failed:
        listed = ", ".join(f"{r.name} ({r.error})" for r in summary.failed[:8])
        more = f", and {len(summary.failed) - 8} more" if len(summary.failed) > 8 else ""
        raise RuntimeFailure(f"{len(summary.failed)} of {d['shards']} shards failed after all retries: "
                             f"{listed}{more}; run again to resume")


@app.command()
def sample(
    dir: Annotated[Path | None, typer.Option("--dir", help="Where the sample shards go (default: "
                                                           "$CHATPLAN_HOME/sample).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write the offline sample corpus (stdlib docs) as real-layout shards; reuses a matching dir."""
    from chatplan.data.sample import write_sample_corpus

    info = write_sample_corpus(dir or paths.sample_dir())
    if as_json:
        print(json.dumps(info.to_dict(), indent=1))
        return
    verb = "wrote" if info.written else "already up to date:"
    print(f"{verb} sample corpus in {info.dir}: {len(info.train_paths)} train shards "
          f"({info.train_chars:,} chars, {info.train_docs:,} documents) + {info.validation_path.name} "
          f"({info.validation_chars:,} chars, {info.validation_docs:,} documents)")
