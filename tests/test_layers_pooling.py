"""max_pool / avg_pool / global_avg_pool against float64 NumPy loops (and flax's avg_pool)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functional_nn import layers


def same_pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return (total // 2, total - total // 2)


def numpy_pools(x, window, strides, pads, cotangent=None):
    """(max, mean) of the in-bounds elements of each window at o·stride - low, per example and channel;
    with ``cotangent`` g also (∂/∂x Σ g·max, ∂/∂x Σ g·mean): g goes to each window's argmax, and g / count
    to each of its in-bounds elements."""
    spatial, batch, channels = x.shape[1:-1], x.shape[0], x.shape[-1]
    out = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(spatial, window, strides, pads)]
    y_max = np.zeros((batch, *out, channels))
    y_avg = np.zeros_like(y_max)
    dx_max, dx_avg = np.zeros_like(x), np.zeros_like(x)
    for o in np.ndindex(*out):
        starts = [oi * s - lo for oi, s, (lo, _) in zip(o, strides, pads)]
        region = tuple(slice(max(a, 0), min(a + k, n)) for a, k, n in zip(starts, window, spatial))
        at = (slice(None), *region, slice(None))
        values = x[at].reshape(batch, -1, channels)
        y_max[(slice(None), *o)] = values.max(1)
        y_avg[(slice(None), *o)] = values.mean(1)  # in-bounds elements only
        if cotangent is not None:
            g = cotangent[(slice(None), *o)]  # (B, C)
            winner = values.argmax(1)  # (B, C)
            one_hot = (np.arange(values.shape[1])[None, :, None] == winner[:, None, :]) * g[:, None, :]
            dx_max[at] += one_hot.reshape(x[at].shape)
            dx_avg[at] += (g / values.shape[1])[(slice(None), *([None] * len(spatial)), slice(None))]
    return y_max, y_avg, dx_max, dx_avg


CASES = {
    "2d_window2_default_strides": dict(x=(2, 5, 4, 3), window=2),
    "2d_window3_stride2_same_odd": dict(x=(2, 5, 5, 2), window=3, strides=2, padding="SAME"),
    "2d_window2_stride2_same_even_odd": dict(x=(1, 6, 5, 2), window=2, strides=2, padding="SAME"),
    "2d_window3_stride1_int_padding": dict(x=(2, 4, 4, 2), window=3, strides=1, padding=1),
    "2d_pairs_padding": dict(x=(2, 5, 4, 2), window=(3, 2), strides=(2, 1), padding=((1, 0), (0, 1))),
    "1d_window3_same": dict(x=(2, 7, 2), window=3, strides=2, padding="same"),
    "3d_window2": dict(x=(1, 4, 5, 3, 2), window=(2, 2, 1)),
}


def case_geometry(case):
    rank = len(case["x"]) - 2
    as_tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * rank  # noqa: E731
    window = as_tuple(case["window"])
    strides = as_tuple(case.get("strides", case["window"]))  # default strides = window
    padding = case.get("padding", "VALID")
    if isinstance(padding, str) and padding.upper() == "SAME":
        pads = [same_pads(n, k, s) for n, k, s in zip(case["x"][1:-1], window, strides)]
    elif isinstance(padding, int):
        pads = [(padding, padding)] * rank
    elif padding == "VALID":
        pads = [(0, 0)] * rank
    else:
        pads = list(padding)
    return window, strides, pads


@pytest.mark.parametrize("name", sorted(CASES))
def test_pools_match_numpy_loops(name):
    case = CASES[name]
    options = {k: case[k] for k in ("strides", "padding") if k in case}
    max_layer, avg_layer = layers.max_pool(case["window"], **options), layers.avg_pool(case["window"], **options)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case["x"]).astype(np.float32).astype(np.float64)
    expected_shape = max_layer.init(None, x.shape)[0]
    cotangent = rng.standard_normal(expected_shape)
    expected_max, expected_avg, dx_max, dx_avg = numpy_pools(x, *case_geometry(case), cotangent)
    assert max_layer.init(None, x.shape) == avg_layer.init(None, x.shape) == (expected_max.shape, (), ())

    def weighted(layer, x):
        return jnp.sum(layer.apply((), (), x, train=True)[0] * cotangent)

    @jax.jit  # differentiable under jit (reduce_window's max/sum primitives)
    def both(x):
        values = max_layer.apply((), (), x, train=False)[0], avg_layer.apply((), (), x, train=True)[0]
        return values, jax.grad(weighted, 1)(max_layer, x), jax.grad(weighted, 1)(avg_layer, x)

    (y_max, y_avg), grad_max, grad_avg = both(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(y_max, expected_max, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y_avg, expected_avg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_max, dx_max, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_avg, dx_avg, rtol=1e-5, atol=1e-6)


def test_default_strides_are_the_window():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 6, 4, 3)), jnp.float32)
    shape, _, _ = layers.max_pool(2).init(None, x.shape)
    assert shape == (2, 3, 2, 3)
    y, _ = layers.max_pool(2).apply((), (), x, train=False)
    y_explicit, _ = layers.max_pool((2, 2), strides=(2, 2)).apply((), (), x, train=False)
    np.testing.assert_array_equal(y, y_explicit)
    np.testing.assert_array_equal(y, np.asarray(x).reshape(2, 3, 2, 2, 2, 3).max(axis=(2, 4)))


def test_avg_pool_padding_differs_from_flax_default_and_matches_count_include_pad_false():
    flax_linen = pytest.importorskip("flax.linen")
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 5, 5, 2)), jnp.float32)
    ours, _ = layers.avg_pool(3, strides=2, padding="SAME").apply((), (), x, train=False)
    excluded = flax_linen.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME", count_include_pad=False)
    included = flax_linen.avg_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    np.testing.assert_allclose(ours, excluded, rtol=1e-6, atol=1e-6)
    # SAME pads (1, 1) here: only the centre window holds no padding
    np.testing.assert_allclose(ours[:, 1, 1], included[:, 1, 1], rtol=1e-6, atol=1e-6)
    for border in (0, -1):
        assert not np.allclose(ours[:, border], included[:, border])


def test_global_avg_pool():
    x = np.random.default_rng(4).standard_normal((3, 4, 5, 2))
    layer = layers.global_avg_pool()
    assert layer.init(None, x.shape) == ((3, 2), (), ())
    y, _ = layer.apply((), (), jnp.asarray(x, jnp.float32), train=False)
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"global_avg_pool: input shape \(3, 4\) has rank 2"):
        layer.init(None, (3, 4))


@pytest.mark.parametrize("build, match", [
    (lambda: layers.max_pool(0), "window=0"),
    (lambda: layers.avg_pool((2, 2, 2, 2)), "window"),
    (lambda: layers.max_pool(2, strides=-1), "strides=-1"),
    (lambda: layers.avg_pool(2, padding="FULL"), "padding='FULL'"),
    (lambda: layers.avg_pool(2, padding=[(1,)]), "padding"),
])
def test_constructor_errors_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_shape_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"max_pool: input shape \(4, 8\) has rank 2"):
        layers.max_pool(2).init(None, (4, 8))
    with pytest.raises(ValueError, match=r"window=\(2, 2\): has 2 entries, the input has 1 spatial dims"):
        layers.avg_pool((2, 2)).init(None, (4, 8, 3))
    with pytest.raises(ValueError, match=r"avg_pool: padding \(\(2, 2\), \(2, 2\)\) must be smaller than the window"):
        layers.avg_pool(2, padding=2).init(None, (1, 4, 4, 1))
    with pytest.raises(ValueError, match=r"max_pool: input shape \(1, 2, 2, 1\) is smaller than the window \(3, 3\)"):
        layers.max_pool(3).init(None, (1, 2, 2, 1))
