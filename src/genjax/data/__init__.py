"""Data: in-memory datasets, deterministic batching, on-device preprocessing."""

from genjax.data.pipeline import eval_batches, make_train_iterator, steps_per_epoch
from genjax.data.preprocessing import PREPROCESSORS, preprocess, to_uint8
from genjax.data.sources import (
  SHIPPED_DATASETS,
  Dataset,
  DatasetNotFoundError,
  load_dataset,
)

__all__ = [
  "PREPROCESSORS",
  "SHIPPED_DATASETS",
  "Dataset",
  "DatasetNotFoundError",
  "eval_batches",
  "load_dataset",
  "make_train_iterator",
  "preprocess",
  "steps_per_epoch",
  "to_uint8",
]
