"""conv: forward and gradients against a float64 NumPy loop and lax.conv_general_dilated (NC* layout)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from functional_nn import layers

# ---------------------------------------------------------------- references, written independently


def same_pads(n, k, s, d):
    """XLA's SAME rule: out = ceil(n / s), total = max((out - 1) s + (k - 1) d + 1 - n, 0), low = total // 2."""
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return (total // 2, total - total // 2)


def explicit_pads(padding, spatial, kernel, strides, dilation):
    if padding in ("SAME", "same"):
        return [same_pads(n, k, s, d) for n, k, s, d in zip(spatial, kernel, strides, dilation)]
    if padding == "VALID":
        return [(0, 0)] * len(spatial)
    if isinstance(padding, int):
        return [(padding, padding)] * len(spatial)
    return [tuple(p) for p in padding]


def numpy_conv(x, w, b, strides, pads, dilation, groups):
    """y[n, o, c] = b[c] + Σ_k Σ_i x_pad[n, o s + k d, g(c) C_in/G + i] W[k, i, c], float64 loops."""
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    kernel, (cin_g, cout) = w.shape[:-2], w.shape[-2:]
    cout_g = cout // groups
    out_spatial = [(n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(xp.shape[1:-1], kernel, strides, dilation)]
    y = np.zeros((x.shape[0], *out_spatial, cout))
    for o in np.ndindex(*out_spatial):
        for k in np.ndindex(*kernel):
            at = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, strides, dilation))
            for g in range(groups):
                cin, co = slice(g * cin_g, (g + 1) * cin_g), slice(g * cout_g, (g + 1) * cout_g)
                y[(slice(None), *o, co)] += xp[(slice(None), *at, cin)] @ w[(*k, slice(None), co)]
    return y if b is None else y + b


def numpy_conv_vjp(x, w, gy, strides, pads, dilation, groups):
    """(∂L/∂x, ∂L/∂W, ∂L/∂b) of L = Σ y·gy, by the same loops as numpy_conv."""
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    kernel, (cin_g, cout) = w.shape[:-2], w.shape[-2:]
    cout_g = cout // groups
    for o in np.ndindex(*gy.shape[1:-1]):
        for k in np.ndindex(*kernel):
            at = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, strides, dilation))
            for g in range(groups):
                cin, co = slice(g * cin_g, (g + 1) * cin_g), slice(g * cout_g, (g + 1) * cout_g)
                g_out = gy[(slice(None), *o, co)]
                dxp[(slice(None), *at, cin)] += g_out @ w[(*k, slice(None), co)].T
                dw[(*k, slice(None), co)] += xp[(slice(None), *at, cin)].T @ g_out
    crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, x.shape[1:-1]))
    return dxp[(slice(None), *crop, slice(None))], dw, gy.reshape(-1, cout).sum(0)


def lax_conv_nc_layout(x, w, b, strides, pads, dilation, groups):
    """lax.conv_general_dilated in channels-first layout (NC*, OI*), explicit dimension numbers and pads."""
    spatial = "DHW"[-(x.ndim - 2):]
    x_nc = jnp.moveaxis(x, -1, 1)
    w_oi = jnp.moveaxis(jnp.moveaxis(w, -1, 0), -1, 1)  # (*k, I, O) -> (O, I, *k)
    y = lax.conv_general_dilated(
        x_nc, w_oi, window_strides=strides, padding=pads, rhs_dilation=dilation,
        dimension_numbers=("NC" + spatial, "OI" + spatial, "NC" + spatial), feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )
    y = jnp.moveaxis(y, 1, -1)
    return y if b is None else y + b


def traced_init(layer, input_shape):
    """(output shape, param shapes/dtypes, state) of ``layer.init`` by tracing only (nothing compiled)."""
    shapes = []

    def params_and_state(key):
        out_shape, params, state = layer.init(key, input_shape)
        shapes.append(out_shape)
        return params, state

    params, state = jax.eval_shape(params_and_state, jax.random.key(0))
    return shapes[0], params, state


# ---------------------------------------------------------------- cases

CASES = {
    "2d_stride1_same": dict(x=(2, 5, 5, 3), out=4, k=3),
    "2d_stride2_same_odd": dict(x=(2, 5, 5, 2), out=3, k=3, strides=2),
    "2d_stride2_same_even": dict(x=(2, 6, 6, 2), out=3, k=3, strides=2),
    "2d_stride2_same_even_kernel": dict(x=(1, 6, 5, 2), out=2, k=(2, 4), strides=2),
    "2d_valid_stride2": dict(x=(2, 6, 5, 2), out=3, k=(3, 2), strides=(2, 1), padding="VALID"),
    "2d_int_padding": dict(x=(2, 4, 4, 2), out=2, k=3, padding=1),
    "2d_pairs_padding": dict(x=(2, 4, 5, 2), out=2, k=3, strides=(1, 2), padding=((0, 2), (1, 0))),
    "2d_dilation2": dict(x=(2, 7, 6, 2), out=3, k=3, dilation=2),
    "2d_dilation2_valid_stride2": dict(x=(1, 8, 8, 2), out=2, k=2, strides=2, dilation=(2, 1), padding="VALID"),
    "2d_groups2": dict(x=(2, 5, 4, 4), out=6, k=3, groups=2),
    "2d_depthwise": dict(x=(2, 5, 5, 3), out=6, k=3, groups=3),
    "2d_no_bias": dict(x=(2, 4, 4, 2), out=3, k=3, use_bias=False),
    "1d_stride2_same": dict(x=(2, 7, 3), out=4, k=(3,), strides=2),
    "1d_valid_dilation2": dict(x=(2, 8, 2), out=2, k=(3,), dilation=2, padding="VALID"),
    "3d_same": dict(x=(1, 4, 3, 4, 2), out=3, k=(2, 3, 2), strides=(1, 2, 2)),
    "3d_valid_groups2": dict(x=(2, 3, 4, 3, 4), out=2, k=(2, 2, 2), groups=2, padding="VALID"),
}


def case_arguments(case):
    rank = len(case["x"]) - 2
    as_tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * rank  # noqa: E731
    kernel = as_tuple(case["k"])
    strides, dilation = as_tuple(case.get("strides", 1)), as_tuple(case.get("dilation", 1))
    padding, groups = case.get("padding", "SAME"), case.get("groups", 1)
    pads = explicit_pads(padding, case["x"][1:-1], kernel, strides, dilation)
    return kernel, strides, dilation, padding, groups, pads


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_forward_and_gradients_match_numpy_loop_and_lax(name):
    case = CASES[name]
    kernel, strides, dilation, padding, groups, pads = case_arguments(case)
    use_bias = case.get("use_bias", True)
    layer = layers.conv(case["out"], case["k"], strides=case.get("strides", 1), padding=padding,
                        dilation=case.get("dilation", 1), groups=groups, use_bias=use_bias)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case["x"])
    with jax.enable_x64(True):
        out_shape, param_shapes, state = traced_init(layer, x.shape)
        assert param_shapes["w"].dtype == jnp.float64  # dtype=None is the default float: float64 under x64
        assert param_shapes["w"].shape == (*kernel, case["x"][-1] // groups, case["out"])
        assert ("b" in param_shapes) == use_bias
        params = {name: jnp.asarray(rng.standard_normal(p.shape)) for name, p in param_shapes.items()}
        w, b = np.asarray(params["w"]), (np.asarray(params["b"]) if use_bias else None)
        gy = rng.standard_normal(out_shape)

        def loss(params, x):
            return jnp.sum(layer.apply(params, state, x, train=True)[0] * gy)

        def lax_loss(w, b, x):
            return jnp.sum(lax_conv_nc_layout(x, w, b, strides, pads, dilation, groups) * gy)

        @jax.jit
        def ours_and_lax(params, x):  # one compilation per case keeps the test fast
            y = layer.apply(params, state, x, train=False)[0]
            reference = lax_conv_nc_layout(x, params["w"], params.get("b"), strides, pads, dilation, groups)
            return y, reference, jax.grad(loss, (0, 1))(params, x), jax.grad(lax_loss, (0, 1, 2))(
                params["w"], params.get("b"), x)

        y, reference, (grads, dx), lax_grads = ours_and_lax(params, jnp.asarray(x))

    expected = numpy_conv(x, w, b, strides, pads, dilation, groups)
    assert y.dtype == jnp.float64 and y.shape == expected.shape == tuple(out_shape)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, reference, rtol=1e-12, atol=1e-12)
    dx_np, dw_np, db_np = numpy_conv_vjp(x, w, gy, strides, pads, dilation, groups)
    np.testing.assert_allclose(dx, dx_np, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["w"], dw_np, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads["w"], lax_grads[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, lax_grads[2], rtol=1e-12, atol=1e-12)
    if use_bias:
        np.testing.assert_allclose(grads["b"], db_np, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grads["b"], lax_grads[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, stride, expected", [(5, 2, (1, 1)), (6, 2, (0, 1)), (7, 1, (1, 1))])
def test_same_padding_is_xla_rule_extra_element_at_the_end(n, stride, expected):
    """Kernel 3: out = ceil(n / s); at n = 6, s = 2 the total pad is 1, all at the end (PyTorch's
    padding="same" is stride-1 only; at stride 1 both pad (1, 1))."""
    layer = layers.conv(1, (3,), strides=stride, w_init="ones", use_bias=False)
    out_shape, params, _ = layer.init(jax.random.key(0), (1, n, 1))
    assert out_shape == (1, math.ceil(n / stride), 1)
    x = np.arange(1.0, n + 1).reshape(1, n, 1)
    y, _ = layer.apply(params, (), jnp.asarray(x, jnp.float32), train=False)
    xp = np.pad(x[0, :, 0], expected)
    np.testing.assert_allclose(y[0, :, 0], [xp[i:i + 3].sum() for i in range(0, len(xp) - 2, stride)])


def test_padding_strings_any_case_and_plain_function():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 5, 5, 2)), jnp.float32)
    layer_upper, layer_lower = layers.conv(3, 3, padding="SAME"), layers.conv(3, 3, padding="same")
    params = {"w": jnp.asarray(rng.standard_normal((3, 3, 2, 3)), jnp.float32), "b": jnp.ones(3)}
    y_upper, _ = layer_upper.apply(params, (), x, train=False)
    y_lower, _ = layer_lower.apply(params, (), x, train=False)
    np.testing.assert_array_equal(y_upper, y_lower)
    np.testing.assert_array_equal(layers.conv.convolve(params, x), y_upper)  # the module's plain function


def test_weight_init_fan_in_is_receptive_field_times_input_channels():
    _, params, _ = layers.conv(64, 3, w_init="he_normal").init(jax.random.key(0), (1, 8, 8, 8))
    w_key, _ = jax.random.split(jax.random.key(0))
    np.testing.assert_array_equal(params["w"], jax.nn.initializers.he_normal()(w_key, (3, 3, 8, 64)))
    np.testing.assert_allclose(np.var(np.asarray(params["w"])), 2.0 / (3 * 3 * 8), rtol=0.05)
    np.testing.assert_array_equal(params["b"], np.zeros(64))


@pytest.mark.parametrize("kwargs, match", [
    (dict(out_channels=0, kernel_size=3), "out_channels=0"),
    (dict(out_channels=4, kernel_size=(3, 3, 3, 3)), "kernel_size"),
    (dict(out_channels=4, kernel_size=0), "kernel_size=0"),
    (dict(out_channels=4, kernel_size=3, strides=(1, 2, 1)), "strides"),
    (dict(out_channels=4, kernel_size=3, dilation=0), "dilation=0"),
    (dict(out_channels=4, kernel_size=3, padding="FULL"), "padding='FULL'"),
    (dict(out_channels=4, kernel_size=3, padding=-1), "padding=-1"),
    (dict(out_channels=4, kernel_size=3, padding=((1, 1),)), "padding"),
    (dict(out_channels=4, kernel_size=3, padding=(1, 1)), "padding"),
    (dict(out_channels=4, kernel_size=3, groups=3), "groups=3"),
    (dict(out_channels=4, kernel_size=3, w_init="kaiming"), "initializer"),
])
def test_constructor_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        layers.conv(**kwargs)


def test_type_errors_name_the_argument():
    with pytest.raises(TypeError, match="compute_dtype='int8'"):
        layers.conv(4, 3, compute_dtype="int8")
    with pytest.raises(TypeError, match="use_bias='no'"):
        layers.conv(4, 3, use_bias="no")


def test_shape_errors_name_the_layer_and_both_shapes():
    layer = layers.conv(4, 3, groups=2)
    with pytest.raises(ValueError, match=r"conv: input shape \(2, 8, 8\) has rank 3; expected rank 4"):
        layer.init(jax.random.key(0), (2, 8, 8))
    with pytest.raises(ValueError, match=r"conv: input shape \(2, 8, 8, 3\) has 3 channels, not divisible by groups=2"):
        layer.init(jax.random.key(0), (2, 8, 8, 3))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        layers.conv(4, 5, padding="VALID").init(jax.random.key(0), (2, 4, 4, 1))
    _, params, _ = traced_init(layer, (2, 8, 8, 4))
    with pytest.raises(ValueError, match=r"conv: input has 6 channels, params expect 4 \(input shape \(2, 8, 8, 6\), "
                                         r"w shape \(3, 3, 2, 4\)\)"):
        jax.eval_shape(lambda params, x: layer.apply(params, (), x, train=False), params, jnp.ones((2, 8, 8, 6)))
