"""Test-time augmentation and ensembles of trained classification workdirs, over the test split.

    evaluate_workdir_tta("workdirs/digits_lenet", tta="shift")       # `jaxvision eval --tta=shift`
    evaluate_ensemble(["runs/seed0", "runs/seed1"], tta="none")       # `jaxvision eval --ensemble ...`

TTA names (`TTA_NAMES`), each run on images of the training size, so they suit models with a fixed
input size (LeNet's dense layers) as well as globally pooled ones:
  none         one view
  flip         the image and its mirror (never for digits or text: a mirrored digit is another symbol)
  shift        identity and 1-pixel shifts up/down/left/right (`tta.shift_average`): the digits' TTA
  ten_crop     pad by `crop_padding` pixels (edge), then the 4 corner + centre crops of the original
               size and their mirrors (CIFAR's training views, Krizhevsky et al. 2012)
  multi_scale  resize the short side to 1.0, 1.15 and 1.3 times the size and take the 10 crops of the
               original size at each scale (He et al. 2016, Sec. 3.4, at the training size)
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.data import pipeline
from jaxvision.data import tfds as datasets
from jaxvision.inference import ensemble, tta
from jaxvision.training import sharding

TTA_NAMES = ("none", "flip", "shift", "ten_crop", "multi_scale")
MULTI_SCALE_FACTORS = (1.0, 1.15, 1.3)


def make_tta(name: str, *, crop_padding: int = 4) -> Callable:
    """`(apply_fn, images [B, H, W, C]) -> probabilities [B, K]` for a TTA name in `TTA_NAMES`."""
    if name == "none":
        return lambda apply_fn, images: jax.nn.softmax(apply_fn(images).astype(jnp.float32))
    if name == "flip":
        return tta.flip_average
    if name == "shift":
        return tta.shift_average
    if name == "ten_crop":
        if crop_padding < 1:
            raise ValueError(f"crop_padding must be positive for ten_crop, got {crop_padding}")

        def ten_crop_padded(apply_fn, images):
            pads = ((0, 0), (crop_padding, crop_padding), (crop_padding, crop_padding), (0, 0))
            padded = jnp.pad(images, pads, mode="edge")  # [B, H + 2p, W + 2p, C]
            return tta.ten_crop_average(apply_fn, padded, crop_size=tuple(images.shape[1:3]))

        return ten_crop_padded
    if name == "multi_scale":

        def multi_scale(apply_fn, images):
            height, width = images.shape[1:3]
            if height != width:
                raise ValueError(f"multi_scale TTA needs square images, got {images.shape[1:3]}")
            scales = tuple(int(round(height * factor)) for factor in MULTI_SCALE_FACTORS)
            return tta.multi_scale_average(apply_fn, images, scales=scales, crop_size=height)

        return multi_scale
    raise ValueError(f"unknown tta {name!r}; valid: {', '.join(TTA_NAMES)}")


def state_variables(state, use_ema: bool) -> dict:
    """`{"params", "batch_stats"}` of a TrainState, with its EMA parameters when `use_ema`."""
    if use_ema and state.ema_params is None:
        raise ValueError("use_ema=True but the run kept no EMA parameters (config.ema_decay was 0)")
    return {"params": state.ema_params if use_ema else state.params, "batch_stats": state.batch_stats}


def _test_batches(experiment):
    config = experiment.config
    batch_size = -(-config.eval_batch_size // experiment.mesh.size) * experiment.mesh.size
    source = datasets.load_data_source(config.dataset.name, experiment.spec.test_split,
                                       data_dir=config.dataset.data_dir or None)
    return pipeline.make_eval_iterator(source, global_batch_size=batch_size, mean=experiment.mean,
                                       std=experiment.std)


def _check_members(experiments: Sequence, states: Sequence) -> None:
    if len(states) == 0 or len(states) != len(experiments):
        raise ValueError(f"need as many experiments as states (at least one), got {len(experiments)}, {len(states)}")
    first = experiments[0]
    for other in experiments[1:]:
        if (other.config.model, other.config.dataset.name) != (first.config.model, first.config.dataset.name):
            raise ValueError(f"ensemble members must share model and data set, got "
                             f"{first.config.model}/{first.config.dataset.name} and "
                             f"{other.config.model}/{other.config.dataset.name}")


def make_predictor(apply_fn: Callable, tta_name: str, *, crop_padding: int = 4) -> Callable:
    """Jitted `(stacked_variables [M, ...], images) -> mean probability [B, K]` over members and views.

    One predictor serves any number of calls (one compile per member count and batch shape).
    """
    tta_fn = make_tta(tta_name, crop_padding=crop_padding)

    def member_log_probabilities(variables, images):
        # softmax(log q) = q, so ensemble_average averages the TTA probabilities of each member.
        probabilities = tta_fn(lambda x: apply_fn(variables, x, train=False)[0], images)
        return jnp.log(jnp.maximum(probabilities, 1e-30))

    return jax.jit(lambda stacked_variables, images: ensemble.ensemble_average(
        member_log_probabilities, stacked_variables, images))


def predict_probabilities(experiments: Sequence, states: Sequence, *, use_ema: bool = False,
                          tta_name: str = "none", predictor: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Test-split class probabilities `float32[N, K]` (mean over members and TTA views) and labels.

    `experiments`/`states` (from `classification.restore_workdir`) are ensemble members that share
    one model and data set; with one member this is plain (TTA) prediction. Members run through
    `ensemble.ensemble_average` (stacked parameters). `predictor` (from `make_predictor` with the same
    `tta_name`) reuses a compiled function across calls.
    """
    _check_members(experiments, states)
    first = experiments[0]
    if predictor is None:
        predictor = make_predictor(states[0].apply_fn, tta_name,
                                   crop_padding=first.config.augment.random_crop_padding or 4)
    stacked = ensemble.stack_params([state_variables(state, use_ema) for state in states])
    all_probabilities, all_labels = [], []
    for batch in _test_batches(first):
        valid = np.asarray(batch["mask"], bool)
        images = sharding.shard_batch({"image": batch["image"]}, first.mesh)["image"]
        all_probabilities.append(np.asarray(jax.device_get(predictor(stacked, images)))[valid])
        all_labels.append(np.asarray(batch["label"])[valid])
    return np.concatenate(all_probabilities), np.concatenate(all_labels)


def probability_metrics(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and the negative log-likelihood of averaged probabilities."""
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "accuracy": float(np.mean(np.argmax(probabilities, axis=-1) == labels)),
        "nll": float(-np.mean(np.log(np.maximum(picked, 1e-30)))),
    }


def evaluate_workdir_tta(workdir: str, *, tta_name: str, step: int | None = None,
                         use_best: bool = False) -> dict[str, float]:
    """`test_tta_{accuracy,nll}` of a workdir's checkpoint (and `test_ema_tta_*` when it kept an EMA)."""
    from jaxvision.trainers import classification

    make_tta(tta_name)  # Fail on a bad name before restoring anything.
    experiment, state, restored_step = classification.restore_workdir(workdir, step=step, use_best=use_best)
    results = {"step": restored_step, "tta": tta_name}
    predictor = make_predictor(state.apply_fn, tta_name, crop_padding=experiment.config.augment.random_crop_padding or 4)
    for prefix, use_ema in (("test_tta", False), ("test_ema_tta", True)):
        if use_ema and state.ema_params is None:
            continue
        probabilities, labels = predict_probabilities([experiment], [state], use_ema=use_ema, predictor=predictor)
        results.update({f"{prefix}_{k}": v for k, v in probability_metrics(probabilities, labels).items()})
    return results


def evaluate_ensemble(workdirs: Sequence[str], *, tta_name: str = "none", use_ema: bool = False,
                      use_best: bool = False) -> dict:
    """Each member's and the ensemble's test accuracy/NLL (mean probability of the members)."""
    from jaxvision.trainers import classification

    if len(workdirs) < 2:
        raise ValueError(f"an ensemble needs at least two workdirs, got {list(workdirs)}")
    make_tta(tta_name)
    restored = [classification.restore_workdir(workdir, use_best=use_best) for workdir in workdirs]
    experiments = [experiment for experiment, _, _ in restored]
    states = [state for _, state, _ in restored]
    _check_members(experiments, states)
    predictor = make_predictor(states[0].apply_fn, tta_name,
                               crop_padding=experiments[0].config.augment.random_crop_padding or 4)
    members = []
    for workdir, experiment, state, (_, _, step) in zip(workdirs, experiments, states, restored):
        metrics = probability_metrics(*predict_probabilities([experiment], [state], use_ema=use_ema, predictor=predictor))
        members.append({"workdir": workdir, "step": step, **{f"test_{k}": v for k, v in metrics.items()}})
    metrics = probability_metrics(*predict_probabilities(experiments, states, use_ema=use_ema, predictor=predictor))
    return {"tta": tta_name, "use_ema": use_ema, "members": members,
            **{f"test_ensemble_{k}": v for k, v in metrics.items()}}
