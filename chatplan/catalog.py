"""GPU catalog (data, not code) and fleet parsing ("8xH100", "16xH100", "1xA100-40GB").

The catalog ships as `gpus.json` in the package; a user file (same format, JSON or TOML) given with
`--gpu-catalog PATH` or `$CHATPLAN_GPU_CATALOG` adds GPUs or overrides figures by name. Loading
happens at the CLI edge; `plan()` receives a `Catalog` and reads no files itself.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from chatplan.errors import InvalidInput

CATALOG_ENV = "CHATPLAN_GPU_CATALOG"
BUILTIN_CATALOG = Path(__file__).with_name("gpus.json")
DEFAULT_GPUS_PER_NODE = 8
FIGURES = ("memory_gib", "peak_flops", "matmul_efficiency", "memory_bandwidth", "price_per_hour",
           "intra_node_gbps")


@dataclass(frozen=True)
class GPU:
    name: str
    aliases: tuple[str, ...]
    description: str
    memory_gib: float  # what torch reports as total memory (torch-visible), GiB
    peak_flops: float  # dense bf16 FLOP/s (fp32 accumulate on GeForce cards); never sparse
    matmul_efficiency: float  # best achievable large bf16 matmul / peak (public MAMF measurements)
    memory_bandwidth: float  # HBM/GDDR bytes/s, for the memory-bound share of a step
    price_per_hour: float  # default $ per GPU-hour
    intra_node_gbps: float  # GB/s (gigaBYTES) each way between GPUs of one node; note --inter-node-gbps is Gb/s
    device_type: str = "cuda"
    compute_capability: float | None = None  # CUDA compute capability (bf16 >= 8.0, fp8 >= 8.9); None: n/a
    # per figure: {"source": str, "verified": bool, "derived"?: bool, "assumed"?: date}
    provenance: dict[str, dict] = field(default_factory=dict, compare=False, hash=False)

    def price_note(self) -> str:
        p = self.provenance.get("price_per_hour", {})
        if p.get("assumed"):
            return f"assumed, {p['assumed']}"
        return "the nanochat tiers' basis: $3 per GPU-hour" if p.get("verified") else "user"

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "memory_gib": self.memory_gib,
                "peak_flops": self.peak_flops, "matmul_efficiency": self.matmul_efficiency,
                "memory_bandwidth": self.memory_bandwidth, "price_per_hour": self.price_per_hour,
                "intra_node_gbps": self.intra_node_gbps, "device_type": self.device_type,
                "compute_capability": self.compute_capability}


@functools.lru_cache(maxsize=1024)
def _normalise(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


@dataclass(frozen=True)
class Catalog:
    gpus: tuple[GPU, ...]
    reference_gpu: str = "H100-SXM"  # the GPU the MFU anchor was measured on
    sources: tuple[str, ...] = ()  # files it was loaded from

    def names(self) -> list[str]:
        return [g.name for g in self.gpus]

    @cached_property
    def _index(self) -> dict[str, GPU]:
        index: dict[str, GPU] = {}
        for gpu in self.gpus:
            for key in (gpu.name, *gpu.aliases):
                index.setdefault(_normalise(key), gpu)
        return index

    def get(self, name: str) -> GPU:
        """Case-insensitive lookup by name or alias, ignoring '-', '_' and spaces."""
        index = self._index
        gpu = index.get(_normalise(name))
        if gpu is None:
            import difflib  # only to name close matches of an unknown GPU

            close = difflib.get_close_matches(_normalise(name), list(index), n=5, cutoff=0.5)
            names = list(dict.fromkeys(index[c].name for c in close))[:3]
            hint = f"; did you mean {' or '.join(names)}?" if names else ""
            raise InvalidInput(f"unknown GPU {name!r}{hint} (known: {', '.join(self.names())})")
        return gpu

    @property
    def reference(self) -> GPU:
        return self.get(self.reference_gpu)


def _figure(name: str, figure: str, value: object) -> float:
    """A catalog figure as a finite number: positive, except prices, which may be 0."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(f"GPU {name!r}: {figure} must be a number, got {value!r}") from None
    low_ok = number >= 0 if figure == "price_per_hour" else number > 0
    if not (low_ok and math.isfinite(number)):
        raise InvalidInput(f"GPU {name!r}: {figure} must be a finite number "
                           f"{'>= 0' if figure == 'price_per_hour' else '> 0'}, got {value!r}")
    return number


def _gpu_from_record(rec: dict, base: GPU | None) -> GPU:
    values: dict = {} if base is None else {f: getattr(base, f) for f in FIGURES}
    provenance = {} if base is None else dict(base.provenance)
    name = rec["name"]
    for f in FIGURES:
        if f in rec:
            entry = rec[f]
            if isinstance(entry, dict):
                values[f] = _figure(name, f, entry.get("value"))
                provenance[f] = {k: v for k, v in entry.items() if k != "value"}
            else:
                values[f] = _figure(name, f, entry)
                provenance[f] = {"source": "user catalog", "verified": False}
    missing = [f for f in FIGURES if f not in values]
    if missing:
        raise InvalidInput(f"GPU {name!r} in the catalog lacks {', '.join(missing)}")
    device_type = rec.get("device_type", base.device_type if base else "cuda")
    if device_type not in ("cuda", "cpu"):
        raise InvalidInput(f"GPU {name!r}: device_type must be cuda or cpu, got {device_type!r}")
    capability = rec.get("compute_capability", base.compute_capability if base else None)
    if capability is not None:
        capability = _figure(name, "compute_capability", capability)
    return GPU(
        name=rec["name"],
        compute_capability=capability,
        aliases=_aliases(name, rec.get("aliases", base.aliases if base else ())),
        description=rec.get("description", base.description if base else rec["name"]),
        device_type=device_type,
        provenance=provenance,
        **values,
    )


def _aliases(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
        raise InvalidInput(f"GPU {name!r}: aliases must be a list of names, got {value!r}")
    return tuple(value)


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidInput(f"cannot read GPU catalog {str(path)!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"GPU catalog {str(path)!r} is not text (JSON or TOML expected)") from None
    try:
        if path.suffix == ".toml":
            import tomllib  # only for user TOML files; the built-in catalog is JSON (fast start-up)

            return tomllib.loads(text)
        return json.loads(text)
    except ValueError as e:
        raise InvalidInput(f"GPU catalog {str(path)!r} is not valid: {e}") from None


def load_catalog(user_path: str | os.PathLike | None = None) -> Catalog:
    """The built-in catalog, extended or overridden by a user file (argument, else $CHATPLAN_GPU_CATALOG)."""
    doc = json.loads(BUILTIN_CATALOG.read_text())
    gpus = {g["name"]: _gpu_from_record(g, None) for g in doc["gpus"]}
    sources = [str(BUILTIN_CATALOG)]
    user_path = user_path or os.environ.get(CATALOG_ENV)
    if user_path:
        path = Path(user_path)
        user = _read(path)
        if not isinstance(user, dict):
            raise InvalidInput(f"GPU catalog {str(path)!r} must be an object with a list 'gpus'")
        records = user.get("gpus", user.get("gpu", []))
        if not isinstance(records, list):
            raise InvalidInput(f"GPU catalog {str(path)!r} must hold a list 'gpus'")
        for rec in records:
            if not isinstance(rec, dict) or "name" not in rec:
                raise InvalidInput(f"GPU catalog {str(path)!r}: every GPU needs a 'name'")
            gpus[rec["name"]] = _gpu_from_record(rec, gpus.get(rec["name"]))
        sources.append(str(path))
    return Catalog(gpus=tuple(gpus.values()), reference_gpu=doc.get("reference_gpu", "H100-SXM"),
                   sources=tuple(sources))


_builtin: Catalog | None = None


def builtin_catalog() -> Catalog:
    """The shipped catalog, loaded once (the Python API's default)."""
    global _builtin
    if _builtin is None:
        _builtin = load_catalog(user_path="")
    return _builtin


@dataclass(frozen=True)
class Fleet:
    gpu: GPU
    num_gpus: int
    nodes: int
    gpus_per_node: int  # processes per node (nproc_per_node)

    @property
    def label(self) -> str:
        return f"{self.num_gpus}x{self.gpu.name}"

    @property
    def rank_capacity_gib(self) -> float:
        """Memory one rank may use: a GPU's own, or its share of a CPU host's RAM (the processes
        of one node share it)."""
        if self.gpu.device_type == "cuda":
            return self.gpu.memory_gib
        return self.gpu.memory_gib / self.gpus_per_node

    def to_dict(self) -> dict:
        return {"gpu": self.gpu.name, "num_gpus": self.num_gpus, "nodes": self.nodes,
                "nproc_per_node": self.gpus_per_node, "device_type": self.gpu.device_type}


_FLEET_RE = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\S.*?)\s*$")


def parse_fleet(
    spec: str,
    catalog: Catalog,
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
    nodes: int | None = None,
) -> Fleet:
    """'8xH100' -> 8 H100 SXM on one node; '16xH100' -> two nodes of 8; '1xA100-40GB'."""
    m = _FLEET_RE.match(spec or "")
    if not m:
        raise InvalidInput(f"cannot read --gpus {spec!r}: expected COUNTxGPU, e.g. 8xH100 or 1xA100-40GB")
    count = int(m.group(1))
    if count < 1:
        raise InvalidInput(f"--gpus {spec!r} asks for {count} GPUs: the count must be at least 1")
    gpu = catalog.get(m.group(2))
    if gpus_per_node < 1:
        raise InvalidInput(f"--gpus-per-node must be at least 1, got {gpus_per_node}")
    per_node = min(count, gpus_per_node)
    if count % per_node:
        raise InvalidInput(f"{count} GPUs do not fill nodes of {gpus_per_node}: use a multiple of "
                           f"{gpus_per_node} or set --gpus-per-node")
    derived = count // per_node
    if nodes is not None and nodes != derived:
        raise InvalidInput(f"--nodes {nodes} disagrees with --gpus {spec} at {gpus_per_node} GPUs per node "
                           f"({derived} node{'s' if derived > 1 else ''})")
    return Fleet(gpu=gpu, num_gpus=count, nodes=derived, gpus_per_node=per_node)
