"""Load-time checks of data (issue 11): every bad label, input, file and argument
is a DataError/ValueError naming the split or file, how many and the first one.

Expected counts and indices are computed independently with NumPy from the
data the test builds (``np.flatnonzero`` over the split's rows)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from functional_nn import data

N = 40
SPLIT = dict(seed=0, val_fraction=0.25, test_fraction=0.25)


def _rows(name: str) -> np.ndarray:
    """The source rows of one split, as make_splits draws them."""
    train, val, test = data.split_indices(N, SPLIT["seed"], SPLIT["val_fraction"], SPLIT["test_fraction"])
    return {"train": train, "val": val, "test": test}[name]


def _clean():
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, 3)), (np.arange(N) % 3).astype(np.int64)


def _expected(name: str, bad_rows) -> tuple[int, int, int]:
    """(count, first index within the split, its source row) of the bad rows falling in split ``name``."""
    rows = _rows(name)
    hits = np.flatnonzero(np.isin(rows, bad_rows))
    return len(hits), int(hits[0]), int(rows[hits[0]])


# --------------------------------------------------------------------------
# labels


@pytest.mark.parametrize(
    "bad_value, dtype, words",
    [
        (-1, np.int64, "outside \\[0, 3\\)"),
        (3, np.int64, "outside \\[0, 3\\)"),
        (np.nan, np.float64, "not integers"),
        (1.5, np.float64, "not integers"),
        (np.inf, np.float64, "not integers"),
    ],
)
def test_bad_labels_name_split_count_and_first_index(bad_value, dtype, words):
    x, y = _clean()
    y = y.astype(dtype)
    bad_rows = np.array([2, 5, 17, 30, 31])
    y[bad_rows] = bad_value
    count, first, row = _expected("train", bad_rows)
    with pytest.raises(data.DataError, match=(
        f"^train split: {count} of {len(_rows('train'))} labels are {words} .*first: label .* at index {first} "
        f"\\(row {row} of the source arrays\\)"
    )):
        data.make_splits(x, y, num_classes=3, **SPLIT)


def test_bad_label_only_in_validation_split_is_named():
    x, y = _clean()
    row = int(_rows("val")[3])
    y[row] = 7
    with pytest.raises(data.DataError, match=f"^val split: 1 of 10 labels .*label 7 at index 3 \\(row {row} "):
        data.make_splits(x, y, num_classes=3, **SPLIT)


def test_integral_float_labels_become_int32_labels():
    x, y = _clean()
    splits = data.make_splits(x, y.astype(np.float64), num_classes=3, **SPLIT)
    assert splits.train.y.dtype == np.int32 and splits.task == "classification"
    np.testing.assert_array_equal(splits.train.y, y[_rows("train")])


def test_class_labels_must_be_one_dimensional():
    x, y = _clean()
    with pytest.raises(data.DataError, match="train split: labels have shape \\(20, 1\\).*shape \\(N,\\)"):
        data.make_splits(x, y[:, None], num_classes=3, **SPLIT)


# --------------------------------------------------------------------------
# inputs and regression targets


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_found_before_standardising(bad_value):
    x, y = _clean()
    bad_rows = np.array([4, 9, 33])
    x[bad_rows, 1] = bad_value  # one pixel per row: standardising would spoil the whole column
    count, first, row = _expected("train", bad_rows)
    with pytest.raises(data.DataError, match=(
        f"^train split: {count} of 20 examples have NaN or inf inputs "
        f"\\(first: index {first} \\(row {row} of the source arrays\\)\\)"
    )):
        data.make_splits(x, y, num_classes=3, **SPLIT)


def test_non_finite_input_in_a_test_file_split_is_named():
    x, y = _clean()
    test_x = x[:5].copy()
    test_x[3, 0] = np.nan
    with pytest.raises(data.DataError, match="^test split: 1 of 5 examples have NaN or inf inputs \\(first: index 3\\)"):
        data.make_splits(x, y, num_classes=3, test=data.Split(test_x, y[:5]), **SPLIT)


def test_input_that_overflows_float32_after_standardising():
    x, y = _clean()
    x[_rows("train")[2], 0] = 1e39  # finite in float64, inf in float32
    with pytest.raises(data.DataError, match="train split: 1 of 20 examples overflow float32 .*first: index 2"):
        data.make_splits(x, y, num_classes=3, standardize_mode="none", **SPLIT)


def test_regression_targets_must_be_finite():
    x, _ = _clean()
    d = np.linspace(0, 1, N)[:, None]
    d[[6, 11]] = np.nan
    count, first, row = _expected("train", [6, 11])
    with pytest.raises(data.DataError, match=f"^train split: {count} of 20 targets are NaN or inf \\(first: index {first} \\(row {row} "):
        data.make_splits(x, d, **SPLIT)
    splits = data.make_splits(x, np.linspace(0, 1, N)[:, None], **SPLIT)
    assert splits.task == "regression" and splits.num_classes is None and splits.train.y.dtype == np.float32


def test_inputs_need_an_example_axis_and_a_feature_axis():
    _, y = _clean()
    with pytest.raises(data.DataError, match="train split: inputs have shape \\(20,\\)"):
        data.make_splits(np.zeros(N), y, num_classes=3, **SPLIT)
    with pytest.raises(data.DataError, match="train split: inputs have dtype <U1"):
        data.make_splits(np.full((N, 2), "a"), y, num_classes=3, **SPLIT)


def test_empty_training_split_and_mismatched_lengths():
    with pytest.raises(data.DataError, match="train split: has no examples \\(2 examples with val_fraction=0.4"):
        data.make_splits(np.zeros((2, 1)), np.array([0, 1]), num_classes=2, val_fraction=0.4, test_fraction=0.4)
    with pytest.raises(data.DataError, match="x and y have different lengths: x \\(3, 1\\), y \\(2,\\)"):
        data.make_splits(np.zeros((3, 1)), np.array([0, 1]), num_classes=2)
    empty_held_out = data.noisy_function(20, val_fraction=0.0, test_fraction=0.0)
    assert data.check_splits(empty_held_out).val.y.shape == (0, 1) and len(empty_held_out.train.x) == 20


def test_check_splits_on_hand_built_splits():
    good = data.Split(np.zeros((4, 2), np.float32), np.array([0, 1, 2, 1], np.int64))
    bad = data.Split(np.zeros((2, 2), np.float32), np.array([0, -3]))
    checked = data.check_splits(data.DataSplits(good, good, good, num_classes=3))
    assert checked.train.y.dtype == np.int32
    with pytest.raises(data.DataError, match="^test split: 1 of 2 labels are outside \\[0, 3\\) \\(first: label -3 at index 1\\)"):
        data.check_splits(data.DataSplits(good, good, bad, num_classes=3))
    with pytest.raises(ValueError, match="num_classes=1"):
        data.check_splits(data.DataSplits(good, good, good, num_classes=1))


# --------------------------------------------------------------------------
# data against the model and the loss (called by the config layer)


@pytest.fixture(scope="module")
def spiral_splits():
    return data.spirals(20, 4, 0.1, seed=0)


def test_check_targets_classification_against_output_width(spiral_splits):
    assert data.check_targets(spiral_splits, classification=True, num_outputs=4) is None
    assert data.check_targets(spiral_splits, classification=True, num_outputs=6) is None
    labels = spiral_splits.train.y
    bad = np.flatnonzero(labels >= 3)
    with pytest.raises(data.DataError, match=(
        f"model has 3 outputs but the data set has 4 classes: train split: {len(bad)} of {len(labels)} labels are "
        f"outside \\[0, 3\\) \\(first: label 3 at index {bad[0]}\\)"
    )):
        data.check_targets(spiral_splits, classification=True, num_outputs=3)


def test_check_targets_regression_data_with_a_classification_loss():
    regression = data.noisy_function(30, 0.1, seed=0)
    n = len(regression.train.y)
    with pytest.raises(data.DataError, match=f"regression targets \\(float32 of shape \\({n}, 1\\)\\); a classification loss"):
        data.check_targets(regression, classification=True, num_outputs=1)
    assert data.check_targets(regression, classification=False, num_outputs=1) is None
    with pytest.raises(data.DataError, match=f"model has 2 outputs but the targets have shape \\({n}, 1\\)"):
        data.check_targets(regression, classification=False, num_outputs=2)


# --------------------------------------------------------------------------
# .npz files


def _npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_npz_file_labels_and_inputs_are_checked_naming_the_file(tmp_path):
    x, y = _clean()
    y[5] = -1
    path = _npz(tmp_path, "neg.npz", x=x, y=y)
    count, first, row = _expected("train", [5])
    with pytest.raises(data.DataError, match=f"neg.npz: train split: 1 of 20 labels are outside .*index {first} \\(row {row} "):
        data.load_npz_file(path, **SPLIT)
    x, y = _clean()
    x[5, 2] = np.nan
    with pytest.raises(data.DataError, match=f"nan.npz: train split: 1 of 20 examples have NaN or inf inputs \\(first: index {first} "):
        data.load_npz_file(_npz(tmp_path, "nan.npz", x=x, y=y), **SPLIT)


def test_npz_float_labels_are_regression_unless_num_classes_is_given(tmp_path):
    x, y = _clean()
    path = _npz(tmp_path, "float.npz", x=x, y=y.astype(np.float64))
    assert data.load_npz_file(path, **SPLIT).task == "regression"
    splits = data.load_npz_file(path, num_classes=3, **SPLIT)
    assert splits.num_classes == 3 and splits.train.y.dtype == np.int32
    with pytest.raises(data.DataError, match="float.npz: train split: .* labels are outside \\[0, 2\\)"):
        data.load_npz_file(path, num_classes=2, **SPLIT)
    with pytest.raises(data.DataError, match="zeros.npz: every label is 0"):
        data.load_npz_file(_npz(tmp_path, "zeros.npz", x=x, y=np.zeros(N, np.int64)), **SPLIT)


def test_npz_that_is_not_a_zip(tmp_path):
    (tmp_path / "text.npz").write_bytes(b"hello, world")
    with pytest.raises(data.DataError, match="text.npz: not a .npz file \\(not a zip archive"):
        data.load_npz_file(str(tmp_path / "text.npz"))
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(data.DataError, match="array.npy: not a .npz file .*it is a .npy file"):
        data.load_npz(str(tmp_path / "array.npy"))
    raw = (tmp_path / "good.npz")
    np.savez(raw, x=np.zeros((4, 2)), y=np.arange(4))
    (tmp_path / "half.npz").write_bytes(raw.read_bytes()[:200])
    with pytest.raises(data.DataError, match="half.npz: not a .npz file"):
        data.load_npz(str(tmp_path / "half.npz"))


def test_npz_missing_arrays_say_which_exist_and_which_are_required(tmp_path):
    with pytest.raises(data.DataError, match=(
        "other.npz: expected arrays 'x' and 'y', or 'x_train' and 'y_train' .*; found \\['a', 'b'\\]"
    )):
        data.load_npz_file(_npz(tmp_path, "other.npz", a=np.zeros(2), b=np.zeros(2)))
    x, y = _clean()
    with pytest.raises(data.DataError, match="half_test.npz: has 'x_test' but no 'y_test'"):
        data.load_npz_file(_npz(tmp_path, "half_test.npz", x_train=x, y_train=y, x_test=x))


def test_npz_lengths_shapes_and_dtypes(tmp_path):
    x, y = _clean()
    with pytest.raises(data.DataError, match="len.npz: 'x' has 40 examples but 'y' has 39"):
        data.load_npz_file(_npz(tmp_path, "len.npz", x=x, y=y[:-1]))
    with pytest.raises(data.DataError, match="shape.npz: examples of 'x_test' have shape \\(2,\\), those of 'x_train' \\(3,\\)"):
        data.load_npz_file(_npz(tmp_path, "shape.npz", x_train=x, y_train=y, x_test=x[:4, :2], y_test=y[:4]))
    with pytest.raises(data.DataError, match="str.npz: 'y' has dtype <U1; numeric"):
        data.load_npz_file(_npz(tmp_path, "str.npz", x=x, y=np.full(N, "a")))
    with pytest.raises(data.DataError, match="flat.npz: 'x' has shape \\(40,\\); inputs must have shape \\(N, features...\\)"):
        data.load_npz_file(_npz(tmp_path, "flat.npz", x=x[:, 0], y=y))
    with pytest.raises(data.DataError, match="empty.npz: 'x' has shape \\(0, 3\\); at least one example"):
        data.load_npz_file(_npz(tmp_path, "empty.npz", x=x[:0], y=y[:0]))


class _Marker:
    """Unpickling this would create a file: the proof that nothing is unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _zip_of_npy(path, **arrays_bytes):
    with zipfile.ZipFile(path, "w") as archive:
        for name, raw in arrays_bytes.items():
            archive.writestr(name + ".npy", raw)
    return str(path)


def _npy_bytes(array, **header_override) -> bytes:
    buffer = io.BytesIO()
    if header_override:
        np.lib.format.write_array_header_1_0(buffer, header_override)
        buffer.write(b"\0" * 16)
    else:
        np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def test_npz_object_arrays_are_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    objects = np.array([_Marker(str(marker)), 1], dtype=object)
    path = _zip_of_npy(tmp_path / "objects.npz", x=_npy_bytes(objects), y=_npy_bytes(np.arange(2)))
    assert pickle.dumps(objects)  # the payload is a real pickle
    with pytest.raises(data.DataError, match="objects.npz: array 'x' holds Python objects .*allow_pickle=False"):
        data.load_npz_file(path)
    assert not marker.exists()


def test_npz_header_claiming_an_absurd_shape_is_refused_before_allocating(tmp_path):
    claim = _npy_bytes(None, descr="<f8", fortran_order=False, shape=(10**12,))
    path = _zip_of_npy(tmp_path / "huge.npz", x=claim, y=claim)
    tracemalloc.start()
    try:
        with pytest.raises(data.DataError, match="huge.npz: array '[xy]' of shape \\(1000000000000,\\) and dtype float64 needs 8000000000000 bytes, the file holds 16"):
            data.load_npz(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10**7


def test_npz_corrupt_member_names_the_file(tmp_path):
    np.savez_compressed(tmp_path / "c.npz", x=np.arange(400.0).reshape(200, 2), y=np.arange(200) % 2)
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    raw[120] ^= 0xFF  # inside the first member's compressed data
    (tmp_path / "flipped.npz").write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match="flipped.npz: cannot read as .npz"):
        data.load_npz_file(str(tmp_path / "flipped.npz"))


def test_npz_missing_file_and_directory(tmp_path):
    missing = str(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.load_npz_file(missing)
    with pytest.raises(data.DataError, match="missing.npz' does not exist"):  # also a ValueError for the CLI
        data.load_npz_file(missing)
    with pytest.raises(data.DataError, match="is a directory, not a npz file"):
        data.load_npz_file(str(tmp_path))


# --------------------------------------------------------------------------
# IDX files


def _idx_header(type_code: int, shape) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


@pytest.mark.parametrize("compressed", [False, True])
def test_idx_header_claiming_absurd_size_is_refused_before_allocating(tmp_path, compressed):
    raw = _idx_header(0x08, (2**31, 2**31, 3)) + bytes(10)  # claims 1.4e19 bytes
    path = tmp_path / "absurd"
    if compressed:
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    tracemalloc.start()
    try:
        with pytest.raises(data.DataError, match="absurd: IDX shape \\(2147483648, 2147483648, 3\\) needs 13835058055282163712 bytes"):
            data.load_idx(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10**7


def test_idx_wrong_magic_truncated_header_and_extra_data(tmp_path):
    (tmp_path / "magic").write_bytes(b"\x00\x00\x07\x01abcd")
    with pytest.raises(data.DataError, match="magic: not an IDX file \\(bad magic number 00 00 07 01; .*0x08 uint8"):
        data.load_idx(str(tmp_path / "magic"))
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(data.DataError, match="empty: not an IDX file"):
        data.load_idx(str(tmp_path / "empty"))
    (tmp_path / "header").write_bytes(_idx_header(0x08, (3, 4, 5))[:9])
    with pytest.raises(data.DataError, match="header: truncated IDX header \\(3 dimensions need 12 bytes of sizes, found 5\\)"):
        data.load_idx(str(tmp_path / "header"))
    (tmp_path / "long").write_bytes(_idx_header(0x0C, (2,)) + bytes(9))
    with pytest.raises(data.DataError, match="long: IDX shape \\(2,\\) needs 8 bytes of data, the file has 9"):
        data.load_idx(str(tmp_path / "long"))


def test_idx_gzip_errors_name_the_file(tmp_path):
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as f:
        f.write(_idx_header(0x08, (500,)) + bytes(range(250)) * 2)
    raw = buffer.getvalue()
    (tmp_path / "cut.gz").write_bytes(raw[:-12])
    with pytest.raises(data.DataError, match="cut.gz: cannot read \\(corrupt gzip stream"):
        data.load_idx(str(tmp_path / "cut.gz"))
    (tmp_path / "short.gz").write_bytes(gzip.compress(_idx_header(0x08, (500,)) + bytes(499)))
    with pytest.raises(data.DataError, match="short.gz: IDX shape \\(500,\\) needs 500 bytes of data, the decompressed file has 499"):
        data.load_idx(str(tmp_path / "short.gz"))
    (tmp_path / "named-plain").write_bytes(raw)  # compression is recognised by content
    np.testing.assert_array_equal(data.load_idx(str(tmp_path / "named-plain")), np.tile(np.arange(250, dtype=np.uint8), 2))


def test_idx_directory_checks_counts_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    data.write_idx(str(tmp_path / "train-images-idx3-ubyte"), rng.integers(0, 256, (20, 3, 3), dtype=np.uint8))
    data.write_idx(str(tmp_path / "train-labels-idx1-ubyte"), (np.arange(19) % 2).astype(np.uint8))
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte has 20 examples but train-labels-idx1-ubyte has 19"):
        data.load_idx_directory(str(tmp_path))
    data.write_idx(str(tmp_path / "train-labels-idx1-ubyte"), (np.arange(20) % 3).astype(np.uint8))
    splits = data.load_idx_directory(str(tmp_path))
    assert splits.num_classes == 3 and splits.train.y.dtype == np.int32
    assert data.load_idx_directory(str(tmp_path), num_classes=10).num_classes == 10
    with pytest.raises(data.DataError, match="train split: .* labels are outside \\[0, 2\\) \\(first: label 2 "):
        data.load_idx_directory(str(tmp_path), num_classes=2)
    with pytest.raises(ValueError, match="num_classes=1: must be an integer >= 2"):
        data.load_idx_directory(str(tmp_path), num_classes=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_idx_directory(str(tmp_path / "nowhere"))


def test_load_idx_returns_a_writable_native_array(tmp_path):
    data.write_idx(str(tmp_path / "a.gz"), np.array([1, -2, 3], np.int32))
    array = data.load_idx(str(tmp_path / "a.gz"))
    assert array.flags.writeable and array.dtype == np.dtype(np.int32)
    np.testing.assert_array_equal(array, [1, -2, 3])


# --------------------------------------------------------------------------
# arguments of the constructors (the config layer reports them under the YAML key)


@pytest.mark.parametrize(
    "build, kwargs, error, match",
    [
        (data.spirals, dict(n_per_class=0), ValueError, "n_per_class=0: must be an integer >= 1"),
        (data.spirals, dict(n_per_class=2.5), TypeError, "n_per_class=2.5: must be an integer"),
        (data.spirals, dict(num_classes=1), ValueError, "num_classes=1: must be an integer >= 2"),
        (data.spirals, dict(noise=-0.1), ValueError, "noise=-0.1: must be a number in \\[0, inf\\)"),
        (data.spirals, dict(n=2), ValueError, "n=2: must be >= num_classes=3"),
        (data.spirals, dict(n=30, n_per_class=10), ValueError, "n=30: give either n .* or n_per_class, not both"),
        (data.spirals, dict(seed=-1), ValueError, "seed=-1: must be an integer >= 0"),
        (data.spirals, dict(seed=True), TypeError, "seed=True"),
        (data.noisy_function, dict(n=0), ValueError, "n=0: must be an integer >= 1"),
        (data.noisy_function, dict(noise=float("nan")), ValueError, "noise=nan"),
        (data.noisy_function, dict(noise="0.1"), TypeError, "noise='0.1'"),
        (data.load_digits, dict(val_fraction=1.2), ValueError, "val_fraction=1.2: must be a number in \\[0, 1\\)"),
        (data.load_digits, dict(test_fraction=-0.1), ValueError, "test_fraction=-0.1"),
        (data.load_digits, dict(val_fraction=0.5, test_fraction=0.5), ValueError, "val_fraction \\+ test_fraction"),
        (data.load_digits, dict(standardize="bogus"), ValueError, "standardize='bogus' must be one of"),
        (data.load_digits, dict(bogus=1), TypeError, "unexpected keyword argument 'bogus'"),
        (data.load_npz_file, dict(path=3), TypeError, "path=3: must be a path"),
        (data.load_npz_file, dict(path="x.npz", num_classes=1), ValueError, "num_classes=1"),
    ],
)
def test_constructor_arguments_are_checked_naming_them(build, kwargs, error, match):
    with pytest.raises(error, match=match):
        build(**kwargs)


def test_dataset_signatures_are_the_yaml_keys():
    common = {"seed", "val_fraction", "test_fraction", "standardize"}
    expected = {
        "digits": common,
        "spirals": common | {"n_per_class", "num_classes", "noise", "n"},
        "noisy_function": common | {"n", "noise"},
        "npz": common | {"path", "num_classes"},
        "idx": common | {"path", "num_classes"},
    }
    for name, keys in expected.items():
        assert set(data.DATASETS.arguments(name)) == keys, name


def test_earlier_argument_names_still_work():
    by_new = data.spirals(10, 3, 0.1, standardize="global")
    by_old = data.spirals(10, 3, 0.1, standardize_mode="global")
    np.testing.assert_array_equal(by_new.train.x, by_old.train.x)
    x, _ = data.spirals_arrays(10, 3, 0.1, seed=0)
    train, _, _ = data.split_indices(30, 0, 0.1, 0.2)
    np.testing.assert_allclose(by_new.train.x, (x[train] - x[train].mean()) / x[train].std(), rtol=1e-5, atol=1e-6)


def test_spirals_total_n_gives_n_over_classes_per_class():
    by_total = data.spirals(n=61, num_classes=3, noise=0.1)
    by_class = data.spirals(20, 3, 0.1)
    np.testing.assert_array_equal(by_total.train.x, by_class.train.x)
    np.testing.assert_array_equal(by_total.test.y, by_class.test.y)


def test_npz_member_claiming_more_bytes_than_it_stores(tmp_path):
    path = _zip_of_npy(tmp_path / "claims.npz", x=_npy_bytes(np.zeros((4, 2))), y=_npy_bytes(np.arange(4)))
    raw = bytearray(open(path, "rb").read())
    entry = raw.index(b"PK\x01\x02")  # the central directory's entry of x.npy
    struct.pack_into("<I", raw, entry + 24, 2**32 - 2)  # its uncompressed size: ~4 GB
    open(path, "wb").write(bytes(raw))
    with pytest.raises(data.DataError, match="claims.npz: array 'x' claims 4294967294 bytes but holds .* compressed bytes"):
        data.load_npz(path)
