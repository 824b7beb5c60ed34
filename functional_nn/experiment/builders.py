"""Builders: config sections to library objects (data, model, loss, optimizer,
augmentation, early stopping). ``build_model`` and ``build_optimizer`` take
``hparams``, a dict overriding numeric hyperparameters by name with values
that may be traced (grid search builds them inside ``jax.vmap``)."""

from __future__ import annotations

import inspect

from functional_nn.data.datasets import DATASETS
from functional_nn.experiment.schema import (
    ConfigError,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    SCHEDULES,
    TrainingConfig,
    unknown_key_error,
)
from functional_nn.experiment.sections import (
    alias_hyperparameters,
    layer_arguments,
    MASK_ARGUMENTS,
    _optimizer_alias,
)
from functional_nn.layers import LAYERS, serial
from functional_nn.losses import is_class_indices, LOSSES

# builders


# a data-section key -> the loader argument it sets, where the names differ
DATA_LOADER_KEYS = ("seed", "val_fraction", "test_fraction", "standardize", "n", "num_classes", "noise")


def dataset_file_argument(name: str) -> str | None:
    """The argument ``data.path`` sets: the loader's required one (a file or
    directory, e.g. ``load_npz_file(path)``), or None for a loader without one."""
    required = [p.name for p in DATASETS.arguments(name).values() if p.default is inspect.Parameter.empty]
    return required[0] if required else None


def dataset_keys(name: str) -> set:
    """The data-section keys that apply to dataset ``name``, read from its
    loader's signature: ``name``, ``path`` (when it takes a file), and each key
    whose argument it takes (``n`` counts every class; ``num_classes`` only
    where the loader needs it, not where it infers the classes from a file)."""
    return {"name"} | ({"path"} if dataset_file_argument(name) else set()) | set(_loader_keys(name))


def _loader_keys(name: str) -> tuple:
    arguments = DATASETS.arguments(name)
    return tuple(
        key for key in DATA_LOADER_KEYS
        if key in arguments and not (key == "num_classes" and arguments[key].default is None)
    )


def dataset_arguments(data: DataConfig) -> dict:
    """The keyword arguments of ``data.name``'s registered loader from the section."""
    kwargs = {}
    file_argument = dataset_file_argument(data.name)
    if file_argument:
        kwargs[file_argument] = data.path
    for key in _loader_keys(data.name):
        kwargs[key] = getattr(data, key)
    return kwargs


def build_data(data: DataConfig):
    """The :class:`~functional_nn.data.DataSplits` of ``data.name``'s registered
    loader (``functional_nn.data.DATASETS``) called with the section's values
    (see :func:`check_batch_size` for checking a batch size against it)."""
    return DATASETS.build(data.name, **dataset_arguments(data))


def _check_hparam_names(section: str, hparams: dict, accepted) -> None:
    for key in hparams:
        if key not in accepted:
            raise unknown_key_error(section, key, accepted)


def build_model(model: ModelConfig, hparams: dict | None = None):
    """``serial`` of the registered layers; ``hparams`` maps ``"layers.<i>.<arg>"``
    to (possibly traced) values replacing that layer argument."""
    hparams = dict(hparams or {})
    accepted = [f"layers.{i}.{arg}" for i, layer in enumerate(model.layers) for arg in layer_arguments(layer.type)]
    _check_hparam_names("model", hparams, accepted)
    built = []
    for i, layer in enumerate(model.layers):
        args = dict(layer.args)
        args.update({k.rsplit(".", 1)[1]: v for k, v in hparams.items() if k.startswith(f"layers.{i}.")})
        built.append(LAYERS.build(layer.type, **args))
    return serial(*built)


def build_loss(loss: LossConfig):
    """``loss(outputs, targets)``; class indices (by shape, the rule of
    :func:`functional_nn.losses.is_class_indices`) are one-hot encoded for the
    losses that compare distributions (softmax cross-entropy takes them as is)."""
    import jax
    divergence = LOSSES.lookup(loss.name).value
    if loss.name == "softmax_cross_entropy":
        return divergence

    def loss_fn(outputs, targets):
        if is_class_indices(outputs, targets):
            targets = jax.nn.one_hot(targets, outputs.shape[-1], dtype=outputs.dtype)
        return divergence(outputs, targets)

    loss_fn.__name__ = loss.name
    return loss_fn


def _decay_mask(kind: str):
    """``weights``: only leaves named ``w`` (the notes' ½λΣ‖W_k‖², no biases or
    batch-norm γ/β); ``all``: every leaf (``None``, no mask)."""
    from functional_nn.losses import weights_mask

    return None if kind == "all" else weights_mask


def build_schedule(schedule: ScheduleConfig | None, learning_rate):
    """The optax schedule whose initial/peak value is ``learning_rate`` (or the rate itself)."""
    if schedule is None:
        return learning_rate
    import optax

    function_name, filled = SCHEDULES[schedule.name]
    return getattr(optax, function_name)(**{filled: learning_rate, **schedule.args})


def build_optimizer(optimizer: OptimizerConfig, hparams: dict | None = None):
    """``chain(clipping..., L2 penalty, alias)``; ``hparams`` overrides any of
    ``learning_rate``, ``l2``, ``clip``, ``clip_by_norm``, ``clip_by_global_norm``
    and the alias's hyperparameters with (possibly traced) values."""
    from functional_nn import optim

    hparams = dict(hparams or {})
    alias_names = alias_hyperparameters(optimizer.name)
    _check_hparam_names(
        "optimizer", hparams, ["learning_rate", "l2", "clip", "clip_by_norm", "clip_by_global_norm", *alias_names]
    )

    def value(name):
        return hparams.get(name, getattr(optimizer, name))

    mask = _decay_mask(optimizer.decay_mask)
    parts = []
    for name, transform in (
        ("clip", optim.clip),
        ("clip_by_norm", optim.clip_by_norm),
        ("clip_by_global_norm", optim.clip_by_global_norm),
    ):
        if value(name) is not None:
            parts.append(transform(value(name)))
    if "l2" in hparams or optimizer.l2 != 0.0:
        parts.append(optim.add_l2_penalty(value("l2"), mask))
    alias_args = {**optimizer.hyperparameters, **{k: v for k, v in hparams.items() if k in alias_names}}
    alias_parameters = inspect.signature(_optimizer_alias(optimizer.name)).parameters
    for mask_argument in MASK_ARGUMENTS:
        if mask_argument in alias_parameters:
            alias_args[mask_argument] = mask
    learning_rate = build_schedule(optimizer.schedule, value("learning_rate"))
    parts.append(_optimizer_alias(optimizer.name)(learning_rate, **alias_args))
    return parts[0] if len(parts) == 1 else optim.chain(*parts)


def build_augment(training: TrainingConfig, image_shape=None):
    """The keyed augmentation of ``training.augmentation`` (``None`` when off)."""
    from functional_nn.data import make_augment

    augmentation = training.augmentation
    if augmentation is None:
        return None
    if (augmentation.shift or augmentation.flip) and image_shape is None:
        raise ConfigError("training.augmentation: shift/flip need image data (this data set has no image shape)")
    return make_augment(
        shift=augmentation.shift, noise_std=augmentation.noise_std, flip=augmentation.flip, image_shape=image_shape
    )


def build_early_stopping(training: TrainingConfig):
    """The ``EarlyStopping`` settings. Without the section: never stop, keep the
    last parameters (the best epoch on ``val_loss`` is still reported)."""
    from functional_nn.train import EarlyStopping

    settings = training.early_stopping
    if settings is None:
        return EarlyStopping(patience=None, restore_best=False)
    return EarlyStopping(settings.patience, settings.min_delta, settings.monitor, settings.mode, settings.restore_best)


def build_experiment(config, data=None):
    """(data splits, model, loss, optimizer, train state): the config built, the
    train state freshly initialised from ``training.seed`` for batches of
    ``training.batch_size``; ``data`` (a ``DataSplits``) is used instead of
    building ``config.data`` again when given."""
    import jax

    from functional_nn.train import init_train_state

    data = build_data(config.data) if data is None else data
    model, loss, optimizer = build_model(config.model), build_loss(config.loss), build_optimizer(config.optimizer)
    input_shape = (config.training.batch_size,) + tuple(data.train.x.shape[1:])
    train_state = init_train_state(model, optimizer, jax.random.key(config.training.seed), input_shape)
    return data, model, loss, optimizer, train_state
