"""Validation of layer options and input shapes; the layers' dtype policy.

Numeric ranges live in ``functional_nn._validation``. Everything here raises
``ValueError``/``TypeError`` naming the argument (or the layer), the value and
what is accepted.

dtype policy: ``dtype=None`` means JAX's default float type (float32, or
float64 under ``jax_enable_x64``), resolved when the layer is initialised so
that ``jax.enable_x64`` around ``init`` is honoured. A ``compute_dtype`` casts
inputs and parameters to that dtype for the layer's matmul/conv.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_choice(name: str, value, choices):
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: must be one of {sorted(choices)}")
    return value


# ---------------------------------------------------------------- integers and tuples


def check_positive_int(name: str, value) -> int:
    """``value`` as an ``int`` ≥ 1 (a ``bool`` is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r}: must be a positive integer")
    return int(value)


def int_tuple(name: str, value, length: int) -> tuple[int, ...]:
    """``value`` (a positive int, or a sequence of ``length`` of them) as a ``length``-tuple.

    Raises:
      ValueError: an entry is not a positive int, or the sequence has another length.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != length:
            raise ValueError(f"{name}={value!r}: must be an int or a sequence of {length} ints (one per spatial dim)")
        return tuple(check_positive_int(name, v) for v in value)
    return (check_positive_int(name, value),) * length


def spatial_rank(name: str, value) -> int:
    """Number of spatial dims a kernel/window ``value`` describes: an int means 2, a sequence its length (1-3)."""
    if isinstance(value, (list, tuple)):
        if not 1 <= len(value) <= 3:
            raise ValueError(f"{name}={value!r}: must be an int (2-D) or a sequence of 1, 2 or 3 ints")
        return len(value)
    check_positive_int(name, value)
    return 2


# ---------------------------------------------------------------- padding

PADDING_STRINGS = ("SAME", "VALID")


def check_padding(value, name: str = "padding"):
    """``"SAME"`` | ``"VALID"`` (any case) | an int ≥ 0 | a sequence of (low, high) pairs of ints ≥ 0.

    Returns the upper-case string, an int, or a tuple of (low, high) tuples;
    the number of pairs is checked against the spatial rank by :func:`padding_pairs`.
    """
    if isinstance(value, str):
        check_choice(name, value.upper(), PADDING_STRINGS)
        return value.upper()
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name}={value!r}: an int padding must be >= 0")
        return int(value)
    accepted = '"SAME", "VALID", an int >= 0, or a sequence of (low, high) pairs of ints >= 0, one per spatial dim'
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name}={value!r}: must be {accepted}")
    pairs = []
    for pair in value:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                and all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0 for p in pair)):
            raise ValueError(f"{name}={value!r}: must be {accepted}")
        pairs.append((int(pair[0]), int(pair[1])))
    return tuple(pairs)


def padding_pairs(padding, in_spatial, window, strides, dilation=None, *, name: str = "padding"):
    """Explicit (low, high) pads per spatial dim for a checked ``padding``.

    "SAME" is XLA's rule (``lax.padtype_to_pads``): output = ⌈in / stride⌉,
    total = max((output - 1)·stride + k_eff - in, 0) with k_eff = (k - 1)·dilation + 1,
    low = ⌊total / 2⌋, high = total - low. "VALID" pads nothing.
    """
    rank = len(in_spatial)
    dilation = dilation or (1,) * rank
    effective = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
    if isinstance(padding, str):
        return tuple(jax.lax.padtype_to_pads(in_spatial, effective, strides, padding))
    if isinstance(padding, int):
        return ((padding, padding),) * rank
    if len(padding) != rank:
        raise ValueError(f"{name}={padding!r}: needs {rank} (low, high) pairs, one per spatial dim")
    return tuple(padding)


def window_output_size(in_spatial, window, strides, pads, dilation=None) -> tuple[int, ...]:
    """Spatial output size ⌊(in + low + high - k_eff) / stride⌋ + 1 per dim (k_eff as above)."""
    dilation = dilation or (1,) * len(in_spatial)
    return tuple(
        (n + lo + hi - ((k - 1) * d + 1)) // s + 1
        for n, k, s, (lo, hi), d in zip(in_spatial, window, strides, pads, dilation)
    )


# ---------------------------------------------------------------- input shapes


def check_input_rank(layer: str, input_shape, rank: int, layout: str) -> None:
    """Raise ``ValueError`` naming ``layer`` unless ``input_shape`` has ``rank`` axes (``layout`` describes them)."""
    if len(input_shape) != rank:
        raise ValueError(f"{layer}: input shape {tuple(input_shape)} has rank {len(input_shape)}; "
                         f"expected rank {rank}: {layout}")


def check_features(layer: str, x_shape, expected: int, param: str, param_shape, what: str = "features") -> None:
    """Raise ``ValueError`` unless the last axis of ``x_shape`` is ``expected`` (fixed by ``param``'s shape)."""
    if len(x_shape) == 0 or x_shape[-1] != expected:
        got = x_shape[-1] if len(x_shape) else "no"
        raise ValueError(f"{layer}: input has {got} {what}, params expect {expected} "
                         f"(input shape {tuple(x_shape)}, {param} shape {tuple(param_shape)})")


# ---------------------------------------------------------------- dtypes


def param_dtype(dtype):
    """The dtype of new parameters: ``dtype``, or JAX's default float when None
    (float32, float64 under ``jax_enable_x64``; read now, not at construction)."""
    return dtype if dtype is not None else jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))


def computation_dtype(compute_dtype, *arrays):
    """``compute_dtype`` when set, else the promoted dtype of ``arrays`` (ints promote to the params' float)."""
    if compute_dtype is not None:
        return compute_dtype
    return jnp.result_type(*arrays)


def cast_all(dtype, *arrays):
    """Each array as ``dtype`` (no copy when it already is)."""
    return tuple(jnp.asarray(a).astype(dtype) for a in arrays)
