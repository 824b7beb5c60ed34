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
    LayerConfig,
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
    layer_argument_path,
    layer_arguments,
    layer_paths,
    MASK_ARGUMENTS,
    nested_layer_arguments,
    _optimizer_alias,
)
from functional_nn.layers import flat_params, LAYERS, Layer, serial
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
    """``serial`` of the registered layers (residual blocks built from their
    nested layers), with ``model.compute_dtype`` given to every layer that
    takes one and not set its own (outputs then cast back to float32 for the
    loss), wrapped in ``layers.flat_params`` when ``model.flat_params``.

    ``hparams`` maps ``"<layer>.<arg>"`` to (possibly traced) values replacing
    that layer argument, ``<layer>`` a positional path (``layers.3``,
    ``layers.2.block.0``) or a layer's name.
    """
    hparams = dict(hparams or {})
    resolved = {}
    for key, value in hparams.items():
        found = layer_argument_path(model, key)
        if found is None:
            accepted = [f"{p}.{a}" for p, layer in layer_paths(model.layers).items() for a in layer_arguments(layer.type)]
            raise unknown_key_error("model", key, accepted)
        resolved[".".join(found)] = value
    built = [build_layer(layer, f"layers.{i}", resolved, model.compute_dtype) for i, layer in enumerate(model.layers)]
    network = serial(*built)
    if model.compute_dtype is not None:
        network = float32_outputs(network)
    return flat_params(network) if model.flat_params else network


def check_flat_params(model: ModelConfig, optimizer: OptimizerConfig) -> None:
    """``model.flat_params`` hands the optimizer one buffer per dtype, so rules
    that look at parameter names or whole arrays would silently change
    meaning: refuse ``optimizer.clip_by_norm`` (per array) and a decay
    (``l2``, an alias's ``weight_decay``) masked to the weights by name."""
    if not model.flat_params:
        return
    if optimizer.clip_by_norm is not None:
        raise ConfigError("model.flat_params=True: optimizer.clip_by_norm clips each parameter array and a flat "
                          "buffer is one array; use optimizer.clip_by_global_norm, or model.flat_params: false")
    weight_decay = {**alias_hyperparameters(optimizer.name), **optimizer.hyperparameters}.get("weight_decay", 0.0)
    if optimizer.decay_mask == "weights" and (optimizer.l2 != 0.0 or weight_decay not in (0, 0.0, None)):
        raise ConfigError("model.flat_params=True: optimizer.decay_mask='weights' selects arrays named 'w' and a "
                          "flat buffer has none; set optimizer.decay_mask: all, or model.flat_params: false")


def build_layer(layer: LayerConfig, path: str, hparams: dict, compute_dtype=None):
    """One registered layer from its config: nested layers built first,
    ``hparams["<path>.<arg>"]`` replacing arguments, ``compute_dtype`` given
    to a layer that takes it and does not set it."""
    args = dict(layer.args)
    for arg in nested_layer_arguments(layer.type):
        if args.get(arg) is not None:
            args[arg] = [build_layer(child, f"{path}.{arg}.{j}", hparams, compute_dtype)
                         for j, child in enumerate(args[arg])]
    args.update({key[len(path) + 1:]: value for key, value in hparams.items()
                 if key.startswith(f"{path}.") and "." not in key[len(path) + 1:]})
    if compute_dtype is not None and "compute_dtype" in layer_arguments(layer.type) and "compute_dtype" not in args:
        args["compute_dtype"] = compute_dtype
    built = LAYERS.build(layer.type, **args)
    return built if layer.name is None else named_layer(built, layer.name)


def named_layer(layer: Layer, name: str) -> Layer:
    """``layer`` whose init errors ``serial`` reports as ``serial layer <i> (<name>)``."""

    def init(key, input_shape):
        return layer.init(key, input_shape)

    init.layer_name = name
    return Layer(init, layer.apply)


def float32_outputs(model: Layer) -> Layer:
    """``model`` whose outputs are cast to float32 (mixed precision: the loss
    and softmax in float32 after layers computing in a 16-bit ``compute_dtype``)."""
    import jax.numpy as jnp

    def apply(params, state, x, *, train: bool, key=None):
        y, state = model.apply(params, state, x, train=train, key=key)
        return y.astype(jnp.promote_types(y.dtype, jnp.float32)), state

    return Layer(model.init, apply)


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
