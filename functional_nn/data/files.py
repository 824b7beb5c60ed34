"""Readers (and a writer) for user data files: MNIST's IDX format and ``.npz``.

IDX layout (big-endian): two zero bytes, a type byte, a byte giving the number
of dimensions d, then d unsigned 32-bit sizes, then the values.

Both readers check a file's own description of its contents against the
file's real size *before* allocating anything, so a corrupt header (an IDX
header claiming 6.5e18 bytes, a ``.npy`` header claiming a huge shape) is a
clean :class:`~functional_nn.data.DataError` naming the file, never a
``MemoryError``. Object arrays are never unpickled.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from functional_nn.data.checks import DataError, DataFileNotFoundError, check_path

IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
_IDX_TYPE_NAMES = ", ".join(f"0x{code:02X} {dtype.newbyteorder('=').name}" for code, dtype in IDX_TYPES.items())

#: Deflate (gzip, zip) expands its input at most about 1032-fold, which bounds
#: what a compressed file of a given size can hold.
DEFLATE_MAX_RATIO = 1032
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 20
_READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, ValueError)


def _open(path: str, mode: str):
    return gzip.open(path, mode) if str(path).endswith(".gz") else open(path, mode)


def _existing_file(path, kind: str) -> str:
    """``path`` as a string, with a clear error when it is missing or a directory."""
    path = check_path("path", path)
    if not os.path.exists(path):
        raise DataFileNotFoundError(f"{kind} file {path!r} does not exist")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a {kind} file")
    return path


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _read_at_most(f, size: int) -> bytearray:
    """Up to ``size`` bytes of ``f``, read in chunks (nothing is allocated up front)."""
    data = bytearray()
    while len(data) < size:
        chunk = f.read(min(_CHUNK_BYTES, size - len(data)))
        if not chunk:
            break
        data += chunk
    return data


# --------------------------------------------------------------------------
# IDX


def _idx_header(path: str, f) -> tuple[np.dtype, tuple]:
    """The dtype and shape an IDX header declares."""
    magic = bytes(_read_at_most(f, 4))
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX file (bad magic number {magic.hex(' ') or 'empty'}; an IDX file starts "
            f"with 00 00, a type byte ({_IDX_TYPE_NAMES}) and the number of dimensions)"
        )
    dtype, ndim = IDX_TYPES[magic[2]], magic[3]
    sizes = bytes(_read_at_most(f, 4 * ndim))
    if len(sizes) < 4 * ndim:
        raise DataError(
            f"{path}: truncated IDX header ({ndim} dimensions need {4 * ndim} bytes of sizes, found {len(sizes)})"
        )
    return dtype, struct.unpack(f">{ndim}I", sizes)


def load_idx(path: str) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a native-endian array.

    Compression is recognised by the gzip magic bytes (whatever the name).

    Raises:
      DataFileNotFoundError: ``path`` does not exist.
      DataError: naming the file: a directory, a bad magic number, a header
        whose shape needs more or fewer bytes than the file holds (checked
        against the file size before reading), truncated data, a corrupt gzip stream.
    """
    path = _existing_file(path, "IDX")
    compressed = _is_gzip(path)
    file_size = os.path.getsize(path)
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            dtype, shape = _idx_header(path, f)
            header = 4 + 4 * len(shape)
            needed = math.prod(shape) * dtype.itemsize
            have = (file_size - header) if not compressed else None
            if compressed and needed > DEFLATE_MAX_RATIO * file_size:
                raise DataError(
                    f"{path}: IDX shape {shape} needs {needed} bytes of data, more than a gzip file of "
                    f"{file_size} bytes can hold (the header is corrupt)"
                )
            if have is None or have == needed:
                data = _read_at_most(f, needed + 1)
                have = len(data)
    except DataError:
        raise
    except _READ_ERRORS as e:
        raise DataError(f"{path}: cannot read ({'corrupt gzip stream: ' if compressed else ''}{e})") from None
    if have != needed:
        raise DataError(
            f"{path}: IDX shape {shape} needs {needed} bytes of data, the "
            f"{'decompressed ' if compressed else ''}file has {have}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str, array) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of {sorted(map(str, _IDX_CODES))}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with _open(path, "wb") as f:
        f.write(header + array.astype(IDX_TYPES[code]).tobytes())


# --------------------------------------------------------------------------
# .npz


def _check_member_size(path: str, name: str, info: zipfile.ZipInfo) -> None:
    """A member's declared (uncompressed) size must be one its compressed bytes can hold."""
    stored = info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size
    deflate_bound = DEFLATE_MAX_RATIO * info.compress_size + 1024
    deflated = info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > deflate_bound
    if stored or deflated:
        raise DataError(
            f"{path}: array {name!r} claims {info.file_size} bytes but holds {info.compress_size} "
            "compressed bytes (the file is corrupt)"
        )


def _read_npy_member(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``name.npy`` member: its header checked (numeric dtype, size) before its data is read."""
    name = info.filename[: -len(".npy")]
    _check_member_size(path, name, info)
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(f)
        if dtype.hasobject:
            raise DataError(
                f"{path}: array {name!r} holds Python objects (dtype {dtype}); only numeric arrays are "
                "read (pickled objects are never loaded: allow_pickle=False)"
            )
        needed, have = math.prod(shape) * dtype.itemsize, info.file_size - f.tell()
        if needed != have:
            raise DataError(
                f"{path}: array {name!r} of shape {shape} and dtype {dtype} needs {needed} bytes, the file holds {have}"
            )
        f.seek(0)
        return np.lib.format.read_array(f, allow_pickle=False)


def load_npz(path: str) -> dict:
    """All arrays of a ``.npz`` file, as a dict of NumPy arrays (never unpickling).

    Raises:
      DataFileNotFoundError: ``path`` does not exist.
      DataError: naming the file: not a zip archive (e.g. a ``.npy`` file),
        an object array, an array header that does not match its data, a
        corrupt archive.
    """
    path = _existing_file(path, "npz")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            is_npy = f.read(6) == b"\x93NUMPY"
        hint = "; it is a .npy file: save with np.savez(path, x=..., y=...)" if is_npy else ""
        raise DataError(f"{path}: not a .npz file (not a zip archive, or a truncated one{hint})")
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if info.filename.endswith(".npy")]
            return {info.filename[: -len(".npy")]: _read_npy_member(path, archive, info) for info in members}
    except DataError:
        raise
    except _READ_ERRORS as e:
        raise DataError(f"{path}: cannot read as .npz ({e})") from None
