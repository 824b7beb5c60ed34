"""Data sets, on-device shuffling into minibatches, and augmentation."""

from functional_nn.data.augment import gaussian_noise, make_augment, random_flip, random_shift
from functional_nn.data.batching import epoch_batch_indices, num_batches, shuffled_batches
from functional_nn.data.datasets import (
    DATASETS,
    DataSplits,
    Split,
    digits_arrays,
    load_digits,
    load_idx_directory,
    load_npz_file,
    make_splits,
    noisy_function,
    noisy_function_arrays,
    spirals,
    spirals_arrays,
    split_indices,
    standardization_statistics,
    standardize,
)
from functional_nn.data.files import load_idx, load_npz, write_idx

__all__ = [
    "DATASETS",
    "DataSplits",
    "Split",
    "digits_arrays",
    "epoch_batch_indices",
    "gaussian_noise",
    "load_digits",
    "load_idx",
    "load_idx_directory",
    "load_npz",
    "load_npz_file",
    "make_augment",
    "make_splits",
    "noisy_function",
    "noisy_function_arrays",
    "num_batches",
    "random_flip",
    "random_shift",
    "shuffled_batches",
    "spirals",
    "spirals_arrays",
    "split_indices",
    "standardization_statistics",
    "standardize",
    "write_idx",
]
