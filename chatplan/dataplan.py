"""Data plan (SPEC §7): how many FineWeb-Edu shards a horizon needs, how much to download."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from chatplan.errors import InvalidInput

DATASET_BASE_URL = "https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main"
NUM_SHARDS = 1_823  # shard_00000 ... shard_01822
VALIDATION_SHARD_INDEX = NUM_SHARDS - 1  # fixed: the last file of the dataset (SPEC §7)
MAX_TRAIN_SHARDS = NUM_SHARDS - 1  # 1,822 shards hold training text
DEFAULT_CHARS_PER_TOKEN = 4.8  # measured for the 65,536-token tokenizer on FineWeb-Edu
DEFAULT_CHARS_PER_SHARD = 250e6
SHARD_DOWNLOAD_BYTES = 100e6  # ~100 MB compressed per shard
DOWNLOAD_MARGIN_PERCENT = 110  # recommend 10 % more than needed, rounded up to a multiple of 10
# What the published nanochat recipes downloaded, shown beside our recommendation.
PUBLISHED_DOWNLOADS = {20: 240, 26: 450, 32: 800}


def shard_filename(index: int) -> str:
    return f"shard_{index:05d}.parquet"


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


def data_plan(
    tokens: int,
    depth: int | None = None,
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN,
    chars_per_shard: float = DEFAULT_CHARS_PER_SHARD,
) -> DataPlan:
    if not (chars_per_token > 0 and math.isfinite(chars_per_token)):
        raise InvalidInput(f"chars per token must be a positive finite number, got {chars_per_token}")
    if not (chars_per_shard >= 1 and math.isfinite(chars_per_shard)):
        raise InvalidInput(f"chars per shard must be a finite number >= 1, got {chars_per_shard}")
    characters = tokens * chars_per_token
    needed = math.ceil(characters / chars_per_shard)
    # needed x 1.10 rounded up to a multiple of 10, in integers (100 x 1.1 is 110.00000000000001)
    recommended = -(-needed * DOWNLOAD_MARGIN_PERCENT // 1000) * 10
    warning = None
    epochs = characters / (MAX_TRAIN_SHARDS * chars_per_shard)
    if needed > MAX_TRAIN_SHARDS:
        warning = (f"needs {needed:,} training shards but the dataset has {MAX_TRAIN_SHARDS:,}: "
                   f"the run repeats the data for {epochs:.2f} epochs")
    download = min(recommended, MAX_TRAIN_SHARDS)
    return DataPlan(
        train_shards_needed=needed,
        download_shards=download,
        published_download=PUBLISHED_DOWNLOADS.get(depth) if depth is not None else None,
        validation_shard=VALIDATION_SHARD,
        characters=characters,
        download_bytes=(download + 1) * SHARD_DOWNLOAD_BYTES,
        epochs=epochs,
        chars_per_token=chars_per_token,
        chars_per_shard=chars_per_shard,
        warning=warning,
    )
