"""JAX's persistent compilation cache for command-line runs.

A CLI run compiles the same programs (the epoch, the evaluation) every time
it starts; with the cache on, a second run with the same config and shapes
loads the compiled executables from disk instead. The cache lives in
``$FUNCTIONAL_NN_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/functional_nn/jax``,
else ``~/.cache/functional_nn/jax``; a directory the user gave JAX itself
(``$JAX_COMPILATION_CACHE_DIR`` / ``jax_compilation_cache_dir``) is kept.
``python -m functional_nn ... --no-compile-cache`` (or
``FUNCTIONAL_NN_COMPILE_CACHE=0``) turns it off.
"""

from __future__ import annotations

import os

CACHE_ENV = "FUNCTIONAL_NN_CACHE_DIR"
SWITCH_ENV = "FUNCTIONAL_NN_COMPILE_CACHE"


def compile_cache_wanted(environ=None) -> bool:
    """False when ``$FUNCTIONAL_NN_COMPILE_CACHE`` is ``0``/``false``/``off``/``no``
    (as ``--no-compile-cache``, for every command of a session), else True."""
    environ = os.environ if environ is None else environ
    return environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def default_cache_dir(environ=None) -> str:
    """The cache folder: ``$FUNCTIONAL_NN_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/functional_nn/jax``, else ``~/.cache/functional_nn/jax``."""
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_ENV):
        return environ[CACHE_ENV]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "functional_nn", "jax")


def enable_compile_cache(directory: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache; returns the folder it uses.

    Every compiled program is cached, however small or quick to compile (JAX's
    defaults skip programs that compile in under a second, which are most of a
    small run's). A folder already set for JAX (``$JAX_COMPILATION_CACHE_DIR``
    or ``jax.config``) wins over ``directory`` and the default.

    Arguments:
      directory: the cache folder; default :func:`default_cache_dir`.

    Returns:
      the folder in use.

    Raises:
      OSError: the folder cannot be created (naming it and the reason); the
        cache is then left off.
    """
    import jax

    chosen = jax.config.jax_compilation_cache_dir or directory or default_cache_dir()
    try:
        os.makedirs(chosen, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot create the compile cache folder {chosen!r} ({e.strerror or e})") from None
    jax.config.update("jax_compilation_cache_dir", chosen)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return chosen
