"""functional_nn: pure optimizers and layers for JAX, following the lecture notes.

Subpackages:
  optim   -- gradient transformations ``(init, update)`` in the optax style
  layers  -- layers as ``(init, apply)`` pairs over parameter pytrees
  losses  -- divergences and metrics
  data    -- datasets, batching, augmentation
  train   -- train state, compiled epochs, fit, checkpoints, the vmapped grid
  experiment -- YAML configs, builders, config-driven search, run directories, CLI commands

Floors (each imports only those below it): registry, optim, layers, losses,
data -> train -> experiment -> __main__ (see CONTRIBUTING.md).
"""

__version__ = "0.1.0"

__all__ = ["load_run"]


def __getattr__(name):
    """``functional_nn.load_run`` (:func:`functional_nn.experiment.load.load_run`),
    imported on first use so that ``import functional_nn`` stays light."""
    if name == "load_run":
        from functional_nn.experiment.load import load_run

        return load_run
    raise AttributeError(f"module 'functional_nn' has no attribute {name!r}")
