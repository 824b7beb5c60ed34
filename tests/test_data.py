"""Data sets, files, on-device shuffling and augmentation, each against a NumPy reference."""

from __future__ import annotations

import gzip
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import data

# --------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(seed=0, val_fraction=0.1, test_fraction=0.2)


def test_digits_arrays_equal_scikit_learn():
    from sklearn.datasets import load_digits

    reference = load_digits()
    x, y = data.digits_arrays()
    np.testing.assert_array_equal(x, reference.data)
    np.testing.assert_array_equal(y, reference.target)


def test_digits_split_partitions_and_is_deterministic(digits):
    x, _ = data.digits_arrays()
    n = len(x)
    train, val, test = data.split_indices(n, 0, 0.1, 0.2)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(n))
    assert (len(val), len(test)) == (round(0.1 * n), round(0.2 * n))
    again = data.split_indices(n, 0, 0.1, 0.2)
    other = data.split_indices(n, 1, 0.1, 0.2)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(train, other[0])
    assert digits.num_classes == 10 and digits.image_shape == (8, 8)
    assert digits.train.x.shape == (len(train), 64) and digits.train.x.dtype == np.float32


def test_digits_standardised_with_training_statistics(digits):
    x, y = data.digits_arrays()
    train, val, test = data.split_indices(len(x), 0, 0.1, 0.2)
    mean = x[train].mean(0)
    std = x[train].std(0)
    std[std == 0] = 1.0
    for split, idx in ((digits.train, train), (digits.val, val), (digits.test, test)):
        np.testing.assert_allclose(split.x, (x[idx] - mean) / std, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(split.y, y[idx])


def test_global_standardisation_and_bad_arguments():
    x = np.arange(12.0).reshape(6, 2)
    mean, std = data.standardization_statistics(x, "global")
    assert mean == pytest.approx(x.mean()) and std == pytest.approx(x.std())
    with pytest.raises(ValueError, match="standardize='bogus'"):
        data.standardization_statistics(x, "bogus")
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        data.split_indices(10, 0, 1.5, 0.1)
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction"):
        data.split_indices(10, 0, 0.5, 0.5)


def test_synthetic_sets():
    x, y = data.spirals_arrays(50, 3, 0.0, seed=0)
    assert x.shape == (150, 2) and np.bincount(y).tolist() == [50, 50, 50]
    r = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(r, np.tile(np.linspace(0, 1, 50), 3), atol=1e-12)
    xs, ds = data.noisy_function_arrays(100, 0.0, seed=3)
    np.testing.assert_allclose(ds[:, 0], np.sin(3 * xs[:, 0]) + 0.5 * xs[:, 0], rtol=1e-6)
    splits = data.spirals(50, 3, 0.1, seed=0)
    assert splits.num_classes == 3 and len(splits.train.x) + len(splits.val.x) + len(splits.test.x) == 150
    regression = data.noisy_function(100, 0.1, seed=0)
    assert regression.num_classes is None and regression.train.y.shape[1:] == (1,)


# --------------------------------------------------------------------------
# files


def _idx_bytes_by_hand(array: np.ndarray, type_code: int, big_endian_dtype: str) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(big_endian_dtype).tobytes()


def test_load_idx_reads_the_format(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "img").write_bytes(_idx_bytes_by_hand(images, 0x08, "u1"))
    np.testing.assert_array_equal(data.load_idx(str(tmp_path / "img")), images)
    values = np.array([[1.5, -2.0], [3.25, 4.0]])
    with gzip.open(tmp_path / "f.gz", "wb") as f:
        f.write(_idx_bytes_by_hand(values, 0x0E, ">f8"))
    np.testing.assert_array_equal(data.load_idx(str(tmp_path / "f.gz")), values)
    ints = np.array([-3, 70000], dtype=np.int32)
    data.write_idx(str(tmp_path / "ints"), ints)
    assert (tmp_path / "ints").read_bytes() == _idx_bytes_by_hand(ints, 0x0C, ">i4")


def test_load_idx_errors_name_the_file(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="bad.*not an IDX file"):
        data.load_idx(str(tmp_path / "bad"))
    full = _idx_bytes_by_hand(np.zeros((4, 4), np.uint8), 0x08, "u1")
    (tmp_path / "short").write_bytes(full[:-3])
    with pytest.raises(ValueError, match="short.*needs 16 bytes"):
        data.load_idx(str(tmp_path / "short"))
    with pytest.raises(FileNotFoundError, match="missing"):
        data.load_idx(str(tmp_path / "missing"))


def test_idx_directory_uses_test_files(tmp_path):
    rng = np.random.default_rng(0)
    train_x, train_y = rng.integers(0, 256, (40, 5, 5), dtype=np.uint8), rng.integers(0, 4, 40).astype(np.uint8)
    test_x, test_y = rng.integers(0, 256, (10, 5, 5), dtype=np.uint8), rng.integers(0, 4, 10).astype(np.uint8)
    data.write_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), train_x)
    data.write_idx(str(tmp_path / "train-labels-idx1-ubyte"), train_y)
    data.write_idx(str(tmp_path / "t10k-images-idx3-ubyte"), test_x)
    data.write_idx(str(tmp_path / "t10k-labels-idx1-ubyte"), test_y)
    splits = data.load_idx_directory(str(tmp_path), seed=0, val_fraction=0.25)
    assert splits.image_shape == (5, 5) and splits.num_classes == int(max(train_y.max(), test_y.max())) + 1
    assert len(splits.train.x) == 30 and len(splits.val.x) == 10
    train_idx, _, _ = data.split_indices(40, 0, 0.25, 0.0)
    pixels = train_x[train_idx] / 255.0
    np.testing.assert_allclose(splits.test.x, (test_x / 255.0 - pixels.mean()) / pixels.std(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(splits.test.y, test_y)


def test_npz_files(tmp_path):
    x = np.arange(40.0).reshape(20, 2)
    y = np.arange(20) % 2
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    splits = data.load_npz_file(str(tmp_path / "xy.npz"), seed=1, val_fraction=0.2, test_fraction=0.2)
    assert splits.num_classes == 2 and (len(splits.train.x), len(splits.val.x), len(splits.test.x)) == (12, 4, 4)
    np.savez(tmp_path / "tt.npz", x_train=x, y_train=y, x_test=x[:3], y_test=y[:3])
    splits = data.load_npz_file(str(tmp_path / "tt.npz"), val_fraction=0.25)
    assert len(splits.test.x) == 3 and len(splits.train.x) == 15
    np.savez(tmp_path / "wrong.npz", a=x)
    with pytest.raises(ValueError, match="wrong.npz.*expected arrays"):
        data.load_npz_file(str(tmp_path / "wrong.npz"))


# --------------------------------------------------------------------------
# shuffling


@jax.jit
def _batches(key, x, y):
    return data.shuffled_batches(key, x, y, 4)


def test_shuffled_batches_gather_the_permutation():
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    y = np.arange(10, dtype=np.int32)
    key = jax.random.key(0)
    xb, yb = _batches(key, x, y)
    indices = np.asarray(data.epoch_batch_indices(key, 10, 4))
    assert xb.shape == (2, 4, 3) and indices.shape == (2, 4)
    np.testing.assert_array_equal(xb, x[indices])
    np.testing.assert_array_equal(yb, y[indices])
    assert len(set(indices.ravel().tolist())) == 8  # without replacement


def test_a_different_subset_is_left_out_each_epoch():
    n, batch = 10, 4
    left_out, seen = [], set()
    for epoch in range(8):
        indices = set(np.asarray(data.epoch_batch_indices(jax.random.key(epoch), n, batch)).ravel().tolist())
        left_out.append(frozenset(set(range(n)) - indices))
        seen |= indices
    assert all(len(s) == n - 8 for s in left_out)
    assert len(set(left_out)) > 1  # not always the same examples dropped
    assert seen == set(range(n))  # every example gets trained on


def test_batch_larger_than_data_is_an_error():
    with pytest.raises(ValueError, match="batch_size=16 is larger than the 10"):
        data.num_batches(10, 16)


# --------------------------------------------------------------------------
# augmentation


def _numpy_shift(image: np.ndarray, di: int, dj: int, s: int) -> np.ndarray:
    padded = np.pad(image, s, mode="edge")
    h, w = image.shape
    return padded[s - di : s - di + h, s - dj : s - dj + w]


@jax.jit
def _shift(key, x):
    return data.random_shift(key, x, 2, image_shape=(5, 6))


def test_random_shift_matches_numpy_shifts():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((32, 5, 6)).astype(np.float32)
    out = np.asarray(_shift(jax.random.key(1), images.reshape(32, 30))).reshape(32, 5, 6)
    shifts_used = set()
    for image, result in zip(images, out):
        matches = [
            (di, dj)
            for di in range(-2, 3)
            for dj in range(-2, 3)
            if np.array_equal(result, _numpy_shift(image, di, dj, 2))
        ]
        assert matches, "output is not a shifted copy of its input"
        shifts_used.add(matches[0])
    assert len(shifts_used) > 5  # drawn per example


def test_gaussian_noise_with_traced_std():
    x = jnp.zeros((4000,))
    stds = jnp.array([0.5, 2.0])
    noisy = jax.jit(jax.vmap(lambda s: data.gaussian_noise(jax.random.key(0), x, s)))(stds)
    np.testing.assert_allclose(np.asarray(noisy).std(axis=1), np.asarray(stds), rtol=0.05)
    assert abs(float(noisy[0].mean())) < 0.05


def test_random_flip_and_composition():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((64, 4, 4, 2)).astype(np.float32)
    flipped = np.asarray(jax.jit(data.random_flip)(jax.random.key(2), images))
    is_flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(flipped, images)]
    is_same = [np.array_equal(o, i) for o, i in zip(flipped, images)]
    assert all(a or b for a, b in zip(is_flipped, is_same)) and 10 < sum(is_flipped) < 54
    assert data.make_augment() is None
    augment = data.make_augment(shift=1, noise_std=0.0, flip=True)
    assert augment(jax.random.key(0), images).shape == images.shape
    with pytest.raises(ValueError, match="noise_std=-1"):
        data.make_augment(noise_std=-1.0)
    with pytest.raises(ValueError, match="cannot be viewed as images"):
        data.random_shift(jax.random.key(0), jnp.zeros((2, 10)), 1, image_shape=(3, 3))
