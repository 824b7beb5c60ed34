"""Batch norm with ``axis_name`` under shard_map over 4 forced CPU devices.

Runs in a subprocess (``conftest.device_environment``): the device count is
fixed when JAX starts, and the test processes share their JAX backend
(pytest-xdist workers).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO_ROOT, device_environment

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import functools
    import jax, jax.numpy as jnp, numpy as np
    from jax import lax
    from jax.sharding import Mesh, PartitionSpec as P
    from functional_nn import layers
    from functional_nn.layers import batchnorm

    assert jax.device_count() == 4
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    rng = np.random.default_rng(0)
    x = (3.0 + 2.0 * rng.standard_normal((16, 2, 3))).astype(np.float32)   # (B, W, C), B split over devices
    weights = rng.standard_normal(x.shape).astype(np.float32)
    params = {"gamma": jnp.array([1.0, 2.0, -0.5]), "beta": jnp.array([0.1, 0.2, 0.3])}

    def close(a, e, rtol=1e-5, atol=1e-5):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)

    # 1. the layer: output, running statistics and gradients equal the whole batch on one device
    def layer_loss(layer, params, state, x, weights):
        y, new_state = layer.apply(params, state, x, train=True)
        return jnp.sum(weights * jnp.tanh(y)), (y, new_state)

    single = layers.batchnorm(stats="cumulative")
    sharded = layers.batchnorm(stats="cumulative", axis_name="batch")
    _, _, state = single.init(None, x.shape)
    grad_fn = jax.grad(layer_loss, argnums=(1, 3), has_aux=True)
    (ref_dparams, ref_dx), (ref_y, ref_state) = jax.jit(functools.partial(grad_fn, single))(params, state, x, weights)

    for check_vma in (True, False):
        f = jax.shard_map(
            functools.partial(grad_fn, sharded), mesh=mesh, check_vma=check_vma,
            in_specs=(P(), P(), P("batch"), P("batch")),
            # parameter gradients: replicated totals (check_vma) or per-device contributions
            out_specs=((P() if check_vma else P("batch"), P("batch")), (P("batch"), P())),
        )
        (dparams, dx), (y, new_state) = jax.jit(f)(params, state, x, weights)
        close(y, ref_y)
        close(dx, ref_dx)
        for a, e in zip(new_state, ref_state):
            close(a, e, rtol=1e-5, atol=1e-6)
        for name in ("gamma", "beta"):
            # check_vma: a replicated parameter gets the total, as JAX's autodiff gives it;
            # otherwise each device's contribution, summed over devices by the caller.
            total = dparams[name] if check_vma else np.asarray(dparams[name]).reshape(4, 3).sum(0)
            close(total, ref_dparams[name], rtol=1e-5, atol=1e-5)

    # 2. the plain function, with a loss that also uses μ_B and σ_B² on every device:
    #    the custom VJP equals autodiff of the naive forward with pmean statistics
    def naive(z, gamma, beta, eps, axis_name):
        mu = lax.pmean(jnp.mean(z, axis=(0, 1)), axis_name)
        var = lax.pmean(jnp.mean(jnp.square(z - mu), axis=(0, 1)), axis_name)
        return gamma * (z - mu) / jnp.sqrt(var + eps) + beta, mu, var

    def stats_loss(fn, z, gamma, beta, eps, weights):
        z_hat, mu, var = fn(z, gamma, beta, eps, axis_name="batch")
        return jnp.sum(weights * jnp.tanh(z_hat)) + jnp.sum(jnp.sin(mu)) + jnp.sum(jnp.sqrt(var))

    for check_vma in (True, False):
        results = []
        for fn in (batchnorm.batch_normalize, naive):
            grad = jax.grad(functools.partial(stats_loss, fn), argnums=(0, 1, 2, 3))

            def g(*args, grad=grad):
                dz, dgamma, dbeta, deps = grad(*args)
                return dz, dgamma, dbeta, deps[None]

            f = jax.shard_map(g, mesh=mesh, check_vma=check_vma,
                              in_specs=(P("batch"), P(), P(), P(), P("batch")),
                              out_specs=(P("batch"), P("batch"), P("batch"), P("batch")))
            results.append(jax.jit(f)(x, params["gamma"], params["beta"], jnp.float32(1e-5), weights))
        for a, e in zip(*results):
            close(a, e, rtol=1e-5, atol=2e-5)

    # 3. a batch of one per device is fine: the global batch has 4 values per feature
    f = jax.shard_map(lambda z: batchnorm.batch_normalize(z, params["gamma"], params["beta"], axis_name="batch")[0],
                      mesh=mesh, in_specs=P("batch"), out_specs=P("batch"))
    z4 = x[:4, 0, :]
    close(jax.jit(f)(z4), batchnorm.batch_normalize(z4, params["gamma"], params["beta"])[0])
    print("SHARDED-OK")
    """
)


def test_axis_name_statistics_and_gradients_over_four_devices_equal_whole_batch():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, env=device_environment(4), capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SHARDED-OK" in result.stdout
