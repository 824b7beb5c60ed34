"""Experiments: everything config- and run-directory-shaped, above ``train``.

- :mod:`~functional_nn.experiment.schema`: the sections' dataclasses and the
  generic typed parsing (:class:`ConfigError` names the key path);
- :mod:`~functional_nn.experiment.sections`: model layers, the optimizer and
  its schedule, read from the library's registries;
- :mod:`~functional_nn.experiment.overrides`: ``--set section.key=value``;
- :mod:`~functional_nn.experiment.loading`: YAML to a validated :class:`Config`;
- :mod:`~functional_nn.experiment.builders`: sections to library objects;
- :mod:`~functional_nn.experiment.search`: the config-driven grid search over
  ``functional_nn.train``'s vmapped grid; ``search_outputs``/``search_report``
  write its result files and plots;
- :mod:`~functional_nn.experiment.run_dir`: what a run directory holds;
- :mod:`~functional_nn.experiment.load`: a trained run read back
  (:func:`~functional_nn.experiment.load.load_run`, ``functional_nn.load_run``)
  with its preprocessing, for ``eval``, ``predict`` and Python;
- :mod:`~functional_nn.experiment.commands`: one module per CLI command.

``train`` never imports this package; it speaks in function arguments, and
this layer translates its errors to YAML keys.
"""

from functional_nn.experiment.builders import (
    build_augment,
    build_data,
    build_early_stopping,
    build_loss,
    build_model,
    build_optimizer,
    build_schedule,
)
from functional_nn.experiment.loading import (
    check_batch_size,
    config_to_dict,
    dump_config,
    load_config,
    parse_config,
)
from functional_nn.experiment.overrides import apply_overrides, parse_override, set_path
from functional_nn.experiment.schema import (
    AugmentationConfig,
    Config,
    ConfigError,
    DataConfig,
    EarlyStoppingConfig,
    LayerConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainingConfig,
)
from functional_nn.experiment.sections import alias_hyperparameters

__all__ = [
    "AugmentationConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EarlyStoppingConfig",
    "LayerConfig",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainingConfig",
    "alias_hyperparameters",
    "apply_overrides",
    "build_augment",
    "build_data",
    "build_early_stopping",
    "build_loss",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "check_batch_size",
    "config_to_dict",
    "dump_config",
    "load_config",
    "parse_config",
    "parse_override",
    "set_path",
]
