"""Data augmentation for images: pure, keyed, jit-able functions.

Each augmentation maps ``(key, x) -> x'`` for a minibatch ``x`` of shape
(B, *feature_shape), drawing independent randomness per example, so it can run
inside the compiled epoch (``make_train_step(..., augment=...)``). Images may
be stored flat (e.g. digits' (B, 64)); pass ``image_shape`` ((H, W) or
(H, W, C)) and they are reshaped for the transformation and back.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from functional_nn._validation import check_nonnegative, is_concrete

Augment = Callable[[jax.Array, jax.Array], jax.Array]


def _as_images(x: jax.Array, image_shape):
    """x as (B, H, W, C) and a function restoring x's own shape."""
    shape = tuple(image_shape) if image_shape is not None else tuple(x.shape[1:])
    if len(shape) not in (2, 3):
        raise ValueError(f"image_shape must be (H, W) or (H, W, C), got {shape}")
    if math.prod(shape) != math.prod(x.shape[1:]):
        raise ValueError(f"examples of shape {x.shape[1:]} cannot be viewed as images of shape {shape}")
    images = x.reshape((x.shape[0],) + shape + ((1,) if len(shape) == 2 else ()))
    return images, lambda y: y.reshape(x.shape)


def random_shift(key: jax.Array, x: jax.Array, max_shift: int, image_shape=None) -> jax.Array:
    """Translate each image by (Δi, Δj) drawn uniformly from {−s, …, s}², s = ``max_shift``:
    x'[i, j] = x[i − Δi, j − Δj], pixels moved in from outside repeat the edge."""
    if not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift={max_shift!r} must be an integer >= 0")
    if max_shift == 0:
        return x
    images, restore = _as_images(x, image_shape)
    b, h, w, c = images.shape
    s = max_shift
    padded = jnp.pad(images, ((0, 0), (s, s), (s, s), (0, 0)), mode="edge")
    starts = jax.random.randint(key, (b, 2), 0, 2 * s + 1)  # start = s − Δ

    def crop(image, start):
        return jax.lax.dynamic_slice(image, (start[0], start[1], 0), (h, w, c))

    return restore(jax.vmap(crop)(padded, starts))


def gaussian_noise(key: jax.Array, x: jax.Array, std) -> jax.Array:
    """x' = x + σ·n, n ~ N(0, I); ``std`` = σ may be a traced scalar."""
    return x + std * jax.random.normal(key, x.shape, x.dtype)


def random_flip(key: jax.Array, x: jax.Array, image_shape=None) -> jax.Array:
    """Mirror each image left–right (x'[i, j] = x[i, W − 1 − j]) with probability ½."""
    images, restore = _as_images(x, image_shape)
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return restore(jnp.where(flip, images[:, :, ::-1, :], images))


def make_augment(*, shift: int = 0, noise_std=0.0, flip: bool = False, image_shape=None) -> Augment | None:
    """Compose the chosen augmentations into one ``augment(key, x)``, or ``None`` when none is on.

    Order: flip, shift, then noise (each with its own key).
    """
    if not isinstance(shift, int) or shift < 0:
        raise ValueError(f"shift={shift!r} must be an integer >= 0")
    check_nonnegative("noise_std", noise_std)
    add_noise = not (is_concrete(noise_std) and float(noise_std) == 0.0)
    if not (flip or shift or add_noise):
        return None

    def augment(key: jax.Array, x: jax.Array) -> jax.Array:
        flip_key, shift_key, noise_key = jax.random.split(key, 3)
        if flip:
            x = random_flip(flip_key, x, image_shape)
        if shift:
            x = random_shift(shift_key, x, shift, image_shape)
        if add_noise:
            x = gaussian_noise(noise_key, x, noise_std)
        return x

    return augment
