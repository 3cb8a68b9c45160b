"""Data plan (SPEC §7, SPEC-2026 §11): how many shards a horizon needs, how much to download.

Generic over the architecture's `Dataset` (FineWeb-Edu for late 2025, ClimbMix for 2026): the
characters the training tokens correspond to (the loader's crop included), the shards they fill,
what to download, and whether the run repeats the data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

from chatplan.arch import DEFAULT_ARCH, get_arch
from chatplan.arch.base import Dataset

DOWNLOAD_MARGIN_PERCENT = 110  # recommend 10 % more than needed, rounded up to a multiple of 10

# The default architecture's corpus: what the data and tokenizer commands, the downloader and the
# sample corpus (which mimics its file layout) use when no architecture is named.
DEFAULT_DATASET = get_arch(DEFAULT_ARCH).dataset
DATASET_BASE_URL = DEFAULT_DATASET.base_url
NUM_SHARDS = DEFAULT_DATASET.num_train_shards + 1  # training shards, then the validation shard
VALIDATION_SHARD_INDEX = DEFAULT_DATASET.validation_shard_index
MAX_TRAIN_SHARDS = DEFAULT_DATASET.num_train_shards
DEFAULT_CHARS_PER_TOKEN = DEFAULT_DATASET.chars_per_token
SHARD_DOWNLOAD_BYTES = DEFAULT_DATASET.shard_download_bytes


def shard_filename(index: int) -> str:
    return DEFAULT_DATASET.shard_filename(index)


VALIDATION_SHARD = shard_filename(VALIDATION_SHARD_INDEX)


@dataclass(frozen=True)
class DataPlan:
    train_shards_needed: int
    download_shards: int  # recommended training shards to fetch (capped at what exists)
    published_download: int | None
    validation_shard: str
    characters: float  # characters the training tokens correspond to
    download_bytes: float  # recommended shards + the validation shard
    epochs: float  # passes over the available training text (> 1 means repetition)
    chars_per_token: float
    chars_per_shard: float
    warning: str | None

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1024)  # pure
def data_plan(
    tokens: int,
    dataset: Dataset,
    chars_per_token: float,
    chars_per_shard: float,
    depth: int | None = None,
) -> DataPlan:
    """`depth` only when the plan is a published recipe's horizon: then its download is shown beside."""
    # the loader drops what it crops (2026's best-fit packing keeps ~65 %): the corpus must hold more
    characters = tokens / dataset.kept_token_fraction * chars_per_token
    needed = math.ceil(characters / chars_per_shard)
    # needed x 1.10 rounded up to a multiple of 10, in integers (100 x 1.1 is 110.00000000000001)
    recommended = -(-needed * DOWNLOAD_MARGIN_PERCENT // 1000) * 10
    warning = None
    available = dataset.num_train_shards
    epochs = characters / (available * chars_per_shard)
    if needed > available:
        warning = (f"needs {needed:,} training shards but the dataset has {available:,}: "
                   f"the run repeats the data for {epochs:.2f} epochs")
    download = min(recommended, available)
    return DataPlan(
        train_shards_needed=needed,
        download_shards=download,
        published_download=dict(dataset.published_downloads).get(depth) if depth is not None else None,
        validation_shard=dataset.validation_shard,
        characters=characters,
        download_bytes=(download + 1) * dataset.shard_download_bytes,
        epochs=epochs,
        chars_per_token=chars_per_token,
        chars_per_shard=chars_per_shard,
        warning=warning,
    )
