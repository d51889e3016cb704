"""Optimizers and learning-rate schedules, built from a config in one place.

Every optimizer is one optax chain:
    clip_by_global_norm -> scale_by_<optimizer> -> add_decayed_weights(mask) -> scale_by_lr(schedule)
so weight decay is *decoupled* (Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
2019) for every optimizer and never touches biases or normalization parameters (mask: ndim > 1).
Explicit L2 regularization (`0.5 * l2 * ||w||^2` added to the loss) is the separate option
`optimizer.l2_regularization`, applied by the trainer, so the two can be contrasted.
Gradient accumulation wraps the chain in `optax.MultiSteps`; the schedule then counts updates.
The linear probe (`config.trainable = "classifier"`, training/pretrained.py) routes every
parameter but the classifier's to `optax.set_to_zero` through `optax.multi_transform`.
"""

import functools

import jax
import optax

from jaxvision.models import torchvision_weights

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


def decay_mask(params):
    """True for parameters that get weight decay: kernels (ndim > 1), not biases/norm scales."""
    return jax.tree.map(lambda leaf: leaf.ndim > 1, params)


def scaled_learning_rate(config, global_batch_size: int) -> float:
    """The base learning rate, scaled by the linear scaling rule when it is on.

    Goyal et al., "Accurate, Large Minibatch SGD", 2017: lr = base_lr * global_batch / base_batch.
    `optimizer.linear_scaling_base_batch_size = 0` turns the rule off.
    """
    base = config.optimizer.linear_scaling_base_batch_size
    learning_rate = config.optimizer.learning_rate
    return learning_rate * global_batch_size / base if base > 0 else learning_rate


def make_learning_rate_schedule(config, *, steps_per_epoch: int, num_steps: int, global_batch_size: int):
    """`step -> learning rate` in optimizer updates: linear warmup, then constant/step/cosine.

    - constant: the (scaled) base rate.
    - step: multiplied by `optimizer.decay_factor` at each epoch in `optimizer.decay_epochs`.
    - cosine: cosine decay from the base rate to `base * optimizer.end_learning_rate_factor`.
    Warmup rises linearly from 0 over `optimizer.warmup_epochs` epochs.
    """
    opt = config.optimizer
    if opt.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {opt.schedule!r}; valid names: {', '.join(SCHEDULES)}")
    accumulation = max(opt.grad_accumulation_steps, 1)
    updates_per_epoch = max(steps_per_epoch // accumulation, 1)
    num_updates = max(num_steps // accumulation, 1)
    peak = scaled_learning_rate(config, global_batch_size)
    warmup = min(int(round(opt.warmup_epochs * updates_per_epoch)), num_updates - 1)
    main_updates = num_updates - warmup
    if opt.schedule == "constant":
        main = optax.constant_schedule(peak)
    elif opt.schedule == "step":
        boundaries = {
            int(epoch * updates_per_epoch) - warmup: opt.decay_factor for epoch in opt.decay_epochs
        }
        main = optax.piecewise_constant_schedule(peak, boundaries)
    else:
        main = optax.cosine_decay_schedule(peak, main_updates, alpha=opt.end_learning_rate_factor)
    if warmup == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def _scale_by_optimizer(opt) -> optax.GradientTransformation:
    name = opt.name
    if name == "sgd":
        return optax.identity()
    if name in ("momentum", "nesterov"):
        return optax.trace(decay=opt.momentum, nesterov=name == "nesterov")
    if name == "adagrad":
        return optax.scale_by_rss(initial_accumulator_value=0.1, eps=opt.eps)
    if name == "rmsprop":
        return optax.scale_by_rms(decay=opt.rms_decay, eps=opt.eps)
    return optax.scale_by_adam(b1=opt.beta1, b2=opt.beta2, eps=opt.eps)


def make_optimizer(config, schedule) -> optax.GradientTransformation:
    """The optax chain named by `config.optimizer` (see module docstring)."""
    opt = config.optimizer
    if opt.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {opt.name!r}; valid names: {', '.join(OPTIMIZERS)}")
    parts = []
    if opt.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
    parts.append(_scale_by_optimizer(opt))
    if opt.weight_decay > 0:
        parts.append(optax.add_decayed_weights(opt.weight_decay, mask=decay_mask))
    parts.append(optax.scale_by_learning_rate(schedule))
    tx = optax.chain(*parts)
    if config.get("trainable", "all") == "classifier":  # the linear probe (training/pretrained.py)
        tx = optax.multi_transform(
            {"trainable": tx, "frozen": optax.set_to_zero()}, functools.partial(_probe_labels, config.model)
        )
    if opt.grad_accumulation_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=opt.grad_accumulation_steps)
    return tx


def _probe_labels(model_name: str, params):
    return jax.tree.map(lambda is_classifier: "trainable" if is_classifier else "frozen",
                        torchvision_weights.classifier_mask(model_name, params))


def l2_penalty(params):
    """`0.5 * sum(w ** 2)` over the decayed (kernel) parameters; multiply by the L2 strength."""
    leaves = [leaf for leaf, use in zip(jax.tree.leaves(params), jax.tree.leaves(decay_mask(params))) if use]
    return 0.5 * sum(jax.numpy.sum(jax.numpy.square(leaf)) for leaf in leaves)
