"""The classification config schema: every key a training config has, with its default.

Experiment files under `experiments/` call `classification_config()`, override what differs, and
return `config.lock()`ed, so a misspelled `--config.KEY=VALUE` fails and lists the valid keys.
"""

import ml_collections
from ml_collections import config_dict

from jaxvision.training.augmentation import augment_config


def classification_config() -> ml_collections.ConfigDict:
    """Defaults for `jaxvision.trainers.classification.train_and_evaluate` (unlocked)."""
    config = ml_collections.ConfigDict()
    config.name = "classification"
    config.task = "classification"  # which trainer `jaxvision train` runs: classification | segmentation
    config.seed = 0
    config.model = "lenet5"
    config.model_kwargs = ml_collections.ConfigDict()
    config.dataset = ml_collections.ConfigDict(
        {
            "name": "embedded_digits",
            "data_dir": config_dict.placeholder(str),  # None: tfds's default (~/tensorflow_datasets)
            "download": False,  # Never touch the network unless asked.
            "worker_count": 0,  # grain worker processes; 0 reads in the main process
            # > 0: hold this fraction of the training split out as a "validation" split (fixed,
            # seed-independent; jaxvision.data.holdout), evaluated alongside the test split; select
            # checkpoints and stop early on it with checkpoint.best_metric = "validation_accuracy".
            "validation_fraction": 0.0,
        }
    )
    config.batch_size = 128  # global, over all devices and processes
    config.eval_batch_size = 500
    config.num_epochs = 10
    config.num_train_steps = 0  # > 0 overrides num_epochs
    config.optimizer = ml_collections.ConfigDict(
        {
            "name": "adamw",  # sgd | momentum | nesterov | adagrad | rmsprop | adam | adamw
            "learning_rate": 1e-3,
            "linear_scaling_base_batch_size": 0,  # > 0: lr *= batch_size / this (Goyal et al.)
            "schedule": "cosine",  # constant | step | cosine
            "warmup_epochs": 0.0,
            "decay_epochs": (30, 60),  # step schedule
            "decay_factor": 0.1,  # step schedule
            "end_learning_rate_factor": 0.0,  # cosine: final lr = this * peak
            "momentum": 0.9,
            "beta1": 0.9,
            "beta2": 0.999,
            "eps": 1e-8,
            "rms_decay": 0.9,
            "weight_decay": 0.0,  # decoupled, kernels only
            "l2_regularization": 0.0,  # explicit 0.5 * l2 * ||w||^2 in the loss, kernels only
            "grad_clip_norm": 0.0,  # 0: off
            "grad_accumulation_steps": 1,
        }
    )
    config.augment = augment_config()  # on-device, inside the jitted step; all off by default
    config.label_smoothing = 0.0
    config.ema_decay = 0.0  # > 0 keeps an EMA of the parameters, evaluated alongside
    # Transfer learning (training/pretrained.py): a torchvision or timm-ViT weights file
    # (.safetensors/.pth/.pt/.bin) for config.model to start a fresh run from ("": the model's own
    # initialisation), and what learns: "all" (fine-tuning) or "classifier" (linear probe: frozen
    # backbone in inference mode).
    config.init_from = ""
    config.trainable = "all"
    # > 0: the model resizes its input to input_size x input_size first, on the device (bilinear;
    # models/input_resize.py), e.g. 224 to fine-tune ImageNet weights on 28x28 or 32x32 images.
    config.input_size = 0
    config.mixed_precision = False  # bf16 compute, float32 params/BatchNorm stats/logits/loss
    config.num_devices = 0  # 0: all devices
    # CPU platform only, applied by `jaxvision train` before JAX starts (training/cpu_devices.py):
    # devices to expose; 0: num_devices if set, else one per core, capped so both batch sizes split.
    config.cpu_devices = 0
    # CPU platform only, likewise: "devices" splits the batch over one device per core; "threads"
    # runs elementwise fusions on every core of one device (training/cpu_fusions.py: faster for
    # the CIFAR ResNets, slower for LeNet-5 and ViTs).
    config.cpu_parallelism = "devices"
    # CPU platform only, likewise: the convolution kernels, "ynnpack" (XLA's default) or "eigen"
    # (XLA's own; faster for 3x3 ResNet layers, slower for LeNet-5's 5x5; training/cpu_fusions.py).
    config.cpu_convolutions = "ynnpack"
    # Host memory, applied by `jaxvision train` before JAX starts (training/cpu_allocator.py):
    # "reuse" keeps freed memory in the process (glibc malloc), so XLA:CPU's per-step buffers are
    # not page-faulted in again every step (faster CPU steps, more memory held); "system": as is.
    config.cpu_allocator = "reuse"
    config.log_every_steps = 50
    config.eval_every_steps = 0  # 0: once per epoch
    config.early_stopping_patience = 0  # stop after this many evaluations without a better checkpoint.best_metric; 0: off
    config.checkpoint = ml_collections.ConfigDict(
        {
            "every_steps": 0,  # 0: at each evaluation
            "keep": 3,
            "best_metric": "test_accuracy",  # "" to keep only the latest
            "best_mode": "max",
        }
    )
    return config
