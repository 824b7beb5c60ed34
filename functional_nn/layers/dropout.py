"""Dropout: each unit is kept with probability α = 1 − rate, independently per example.

The notes' two implementations, which agree in expectation:

- ``"scale_at_test"``: training uses y = m ⊙ x, m_i ~ Bernoulli(α); at test
  the expected output α x is used. Equivalently the test-time α is pushed
  into the next layer's weights: W_test = α W_trained (``fold_into_dense``).
- ``"inverted"``: training uses y = m ⊙ x / α (the activation α⁻¹σ(·)), and
  test time is the identity, with weights unchanged.

How the mask is drawn (changed from ``jax.random.bernoulli``, for speed):
each mask element uses 16 random bits u_i (uniform on 0 … 2¹⁶−1) and is kept
when u_i < t, with the threshold t = round(α·2¹⁶) clipped to [1, 2¹⁶]. The
keep probability is therefore α_q = t/2¹⁶, within 2⁻¹⁷ ≈ 7.6e-6 of α
(exact for α = k/2¹⁶, e.g. 0.5, 0.75, 0.8125); ``inverted`` divides by α_q,
so E[y] = x holds exactly. The bits are JAX's Threefry-2x32 hash of the
layer's key over a counter (bit for bit ``jax.extend.random.threefry_2x32``),
written out round by round (``threefry2x32_unrolled``) so that XLA compiles
the 20 rounds into one kernel (on CPU JAX emits the hash as a rolled loop of
separate kernels); one hash gives 64 bits, i.e. four mask elements, where
``bernoulli`` hashes once per element. Distinct counters give independent
bits, so elements (examples and units) are independent; layers and steps are
independent because each receives its own key (``serial`` and the training
step split the key). The mask is a pure function of the key: reproducible
from the seed. Keys of another implementation (``jax.random.key(seed,
impl="rbg")``) take their words from ``jax.random.bits`` instead.

Plain functions: ``keep_threshold``, ``quantized_keep_probability``,
``keep_mask``, ``dropout_train``, ``dropout_eval``, ``fold_into_dense``. The
module is callable: ``layers.dropout(0.2)`` builds the layer.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from functional_nn._validation import check_in_range, is_concrete
from functional_nn.layers._checks import check_choice
from functional_nn.layers.base import LAYERS, Layer, callable_module

MODES = ("inverted", "scale_at_test")

#: Random bits per mask element: the keep probability is a multiple of 2⁻¹⁶.
MASK_BITS = 16
_LEVELS = 2**MASK_BITS
_ELEMENTS_PER_WORD = 32 // MASK_BITS


def keep_probability(rate):
    """α = 1 − rate."""
    return 1.0 - rate


def keep_threshold(rate):
    """t = round(α·2¹⁶) clipped to [1, 2¹⁶] (uint32): a unit is kept when its 16 random bits are < t."""
    scaled = jnp.round(jnp.asarray(keep_probability(rate), jnp.float32) * _LEVELS)
    return jnp.clip(scaled, 1, _LEVELS).astype(jnp.uint32)


def quantized_keep_probability(rate):
    """α_q = t/2¹⁶, the exact keep probability of ``keep_mask`` (|α_q − α| ≤ 2⁻¹⁷ for α ≥ 2⁻¹⁷)."""
    return keep_threshold(rate).astype(jnp.float32) / _LEVELS


def _as_typed_key(key):
    """A typed PRNG key (raw ``uint32[2]`` keys from ``jax.random.PRNGKey`` are Threefry keys)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def _is_threefry(key) -> bool:
    return jax.random.key_impl(key) == jax.random.key_impl(jax.random.key(0, impl="threefry2x32"))


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(v, r: int):
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32_unrolled(key_words, x0, x1):
    """The Threefry-2x32 hash (20 rounds) of counter pairs (x0, x1), written out round by round.

    Bit for bit ``threefry2x32_p`` (Salmon et al. 2011), which JAX lowers on
    CPU as a rolled 5-iteration loop: every iteration is a separate kernel
    that reads and writes both words. Written out, XLA fuses all 20 rounds
    into one elementwise kernel.

    Args:
      key_words: uint32[2], the key's data.
      x0, x1: uint32 arrays of one shape, the counters.

    Returns:
      (y0, y1): the two 32-bit output words, uint32 arrays of that shape.
    """
    k0, k1 = key_words[0], key_words[1]
    ks = (k0, k1, k0 ^ k1 ^ _KEY_PARITY)
    x = [x0 + ks[0], x1 + ks[1]]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x[0] = x[0] + x[1]
            x[1] = x[0] ^ _rotate_left(x[1], r)
        x[0] = x[0] + ks[(block + 1) % 3]
        x[1] = x[1] + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x[0], x[1]


def random_words(key, num: int):
    """``num`` uniform uint32 words from ``key``.

    Threefry keys: the hash of the counter pairs (i, m + i), i < m = ⌈num/2⌉,
    gives words i and m + i (64 bits per hash); for even ``num`` this equals
    ``jax.extend.random.threefry_2x32(key_data, iota(num))`` bit for bit.
    Other key implementations: ``jax.random.bits``.
    """
    key = _as_typed_key(key)
    if not _is_threefry(key):
        return jax.random.bits(key, (num,), jnp.uint32)
    half = (num + 1) // 2
    counter = lax.iota(jnp.uint32, half)
    y0, y1 = threefry2x32_unrolled(jax.random.key_data(key), counter, counter + np.uint32(half))
    return jnp.concatenate([y0, y1])[:num]


def random_uint16(key, num: int):
    """``num`` uniform 16-bit integers (as uint32) from ``key``: two per random word."""
    words = random_words(key, math.ceil(num / _ELEMENTS_PER_WORD))
    low, high = words & np.uint32(0xFFFF), words >> np.uint32(16)
    return jnp.stack([low, high], axis=-1).reshape(-1)[:num]


def keep_mask(key, rate, shape):
    """m with m_i ~ Bernoulli(α_q) i.i.d., True = kept (α_q: ``quantized_keep_probability``)."""
    shape = tuple(shape)
    bits = random_uint16(key, math.prod(shape)).reshape(shape)
    return bits < keep_threshold(rate)


def dropout_train(key, x, rate, mode: str = "inverted"):
    """Training-mode dropout: m ⊙ x (``scale_at_test``) or m ⊙ x / α_q (``inverted``).

    The scale 1/α_q is applied in at least float32 and the result cast back
    to x's dtype (so bfloat16 inputs are not scaled by a rounded 1/α).
    """
    check_choice("mode", mode, MODES)
    kept = jnp.where(keep_mask(key, rate, x.shape), x, jnp.zeros((), x.dtype))
    if mode == "inverted":
        wide = kept.astype(jnp.promote_types(x.dtype, jnp.float32))
        return (wide / quantized_keep_probability(rate).astype(wide.dtype)).astype(x.dtype)
    return kept


def dropout_eval(x, rate, mode: str = "inverted"):
    """Test-time dropout: the identity (``inverted``) or α x (``scale_at_test``)."""
    check_choice("mode", mode, MODES)
    if mode == "inverted":
        return x
    wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return (wide * jnp.asarray(keep_probability(rate), wide.dtype)).astype(x.dtype)


def fold_into_dense(dense_params, rate):
    """Push the test-time α of a ``scale_at_test`` dropout into the next dense layer.

    z = W(α y) + b = (α W) y + b, so {"w": α W, "b": b} applied to the
    un-scaled activations y gives the same test output (W_test = α W_trained).
    """
    check_in_range("rate", rate, 0.0, 1.0)
    return {**dense_params, "w": dense_params["w"] * keep_probability(rate)}


def _is_zero(rate) -> bool:
    return is_concrete(rate) and bool(np.all(np.asarray(rate) == 0.0))


@LAYERS.register
def dropout(rate: float, *, mode: str = "inverted") -> Layer:
    """Dropout layer; ``rate`` = 1 − α is the drop probability, in [0, 1).

    ``rate`` may be a traced scalar (grid search). Training needs a PRNG key
    (``apply(..., train=True, key=k)``) unless ``rate`` is a concrete 0; no
    params, no state.
    """
    check_in_range("rate", rate, 0.0, 1.0)
    check_choice("mode", mode, MODES)

    def init(key, input_shape):
        del key
        return tuple(input_shape), (), ()

    def apply(params, state, x, *, train: bool, key=None):
        del params
        if not train:
            return dropout_eval(x, rate, mode), state
        if _is_zero(rate):
            return x, state
        if key is None:
            raise ValueError(
                f"dropout(rate={rate!r}) in training mode needs a PRNG key: call apply(..., train=True, key=key)"
            )
        return dropout_train(key, x, rate, mode), state

    return Layer(init, apply)


callable_module(__name__, dropout)
