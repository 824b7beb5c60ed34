"""conv's own backward pass (``conv.conv_with_fast_backward``) against JAX's
derivative of ``lax.conv_general_dilated`` and finite differences, float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from functional_nn import layers
from functional_nn.layers import conv

# (spatial rank, strides, padding, dilation, groups): every padding form, stride 1/2/3,
# dilation 2, groups 2 and depthwise (groups = C_in = 4), padding wider than the kernel
CASES = [
    (1, 2, "VALID", 2, 4), (1, 3, 2, 1, 2),
    (2, 1, "SAME", 1, 1), (2, 2, "SAME", 1, 1), (2, 2, ((0, 1), (2, 0)), 1, 2),
    (2, 1, 3, 1, 4), (2, 3, "VALID", 2, 1),
    (3, 1, "SAME", 2, 2),
]
SPATIAL, KERNEL = (7, 6, 5), (3, 2, 3)


def case_arrays(rank, groups, rng):
    x = rng.standard_normal((2, *SPATIAL[:rank], 4))
    params = {"w": rng.standard_normal((*KERNEL[:rank], 4 // groups, 8)), "b": rng.standard_normal(8)}
    return params, x


def divergence(params, x, options, fast_backward):
    """A nonlinear scalar of the output, so that δ = ∂Div/∂y varies over positions."""
    y = conv.convolve(params, x, **options, fast_backward=fast_backward)
    return jnp.sum(jnp.sin(y) * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) / y.size)


@pytest.mark.parametrize("rank, strides, padding, dilation, groups", CASES)
def test_gradients_equal_jax_derivative_of_lax_conv(rank, strides, padding, dilation, groups):
    options = dict(strides=strides, padding=padding, dilation=dilation, groups=groups)
    with jax.enable_x64(True):
        params, x = case_arrays(rank, groups, np.random.default_rng(rank * 100 + strides))
        ours, reference = (jax.jit(jax.grad(lambda p, x, fast=fast: divergence(p, x, options, fast), argnums=(0, 1)))(params, x)
                           for fast in (True, False))
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
            assert a.shape == b.shape and a.dtype == jnp.float64
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [CASES[3], CASES[4]])
def test_gradients_match_finite_differences(case):
    rank, strides, padding, dilation, groups = case
    options = dict(strides=strides, padding=padding, dilation=dilation, groups=groups)
    with jax.enable_x64(True):
        params, x = case_arrays(rank, groups, np.random.default_rng(7))
        check_grads(jax.jit(lambda p, x: divergence(p, x, options, True)), (params, x), order=1, modes=["rev"],
                    atol=1e-6, rtol=1e-6)


def test_layer_gradient_with_bfloat16_compute_equals_jax_derivative():
    """The layer's apply goes through the custom VJP; with compute_dtype=bfloat16 the
    params' gradients stay float32 and equal JAX's derivative up to bfloat16 rounding."""
    layer, state = layers.conv(8, 3, compute_dtype="bfloat16"), ()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 6, 6, 4)), jnp.float32)
    params = {"w": jnp.asarray(rng.standard_normal((3, 3, 4, 8)) / 6, jnp.float32), "b": jnp.zeros(8, jnp.float32)}

    def total(params, fast):
        y = conv.convolve(params, x, compute_dtype="bfloat16", fast_backward=fast)
        return jnp.sum(y.astype(jnp.float32) ** 2)

    def layer_total(params):
        return jnp.sum(layer.apply(params, state, x, train=True)[0].astype(jnp.float32) ** 2)

    ours, reference = jax.jit(jax.grad(layer_total))(params), jax.jit(jax.grad(total), static_argnums=1)(params, False)
    assert ours["w"].dtype == jnp.float32 and ours["b"].dtype == jnp.float32
    for name in ("w", "b"):
        np.testing.assert_allclose(ours[name], reference[name], atol=2e-2 * float(jnp.abs(reference[name]).max()))
    assert "custom_vjp" in str(jax.make_jaxpr(layer_total)(params))


def test_forward_mode_needs_fast_backward_false():
    """jvp through the custom VJP is refused by JAX; fast_backward=False gives JAX's jvp, equal to finite differences."""
    with jax.enable_x64(True):
        params, x = case_arrays(2, 1, np.random.default_rng(3))
        options = dict(strides=1, padding="SAME", dilation=1, groups=1)
        with pytest.raises(TypeError, match="custom_vjp"):
            jax.jvp(lambda x: divergence(params, x, options, True), (x,), (x,))
        check_grads(jax.jit(lambda x: divergence(params, x, options, False)), (x,), order=1, modes=["fwd"], atol=1e-6, rtol=1e-6)


def test_conv_layer_fast_backward_false_supports_forward_mode():
    """The layer's ``fast_backward=False`` reaches ``convolve``: jvp of the layer equals finite differences
    (float64), and with the default the layer refuses jvp as the custom VJP does."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 5, 5, 2)))
        slow, fast = layers.conv(3, 3, fast_backward=False), layers.conv(3, 3)
        _, params, _ = slow.init(jax.random.key(0), x.shape)
        apply = lambda layer: (lambda x: jnp.sum(layer.apply(params, (), x, train=False)[0] ** 2))  # noqa: E731
        check_grads(jax.jit(apply(slow)), (x,), order=1, modes=["fwd"], atol=1e-6, rtol=1e-6)
        with pytest.raises(TypeError, match="custom_vjp"):
            jax.jvp(apply(fast), (x,), (x,))
    with pytest.raises(TypeError, match="fast_backward"):
        layers.conv(3, 3, fast_backward=1)
