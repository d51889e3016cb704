"""ResNet-18 (CIFAR stem) on CIFAR-10 with the full training recipe, for a Colab accelerator.

The recipe: SGD with Nesterov momentum 0.9, lr 0.1 per 128 images (linear scaling), 5 warmup epochs
then cosine to 0, weight decay 5e-4 (kernels only), random crop (pad 4, reflect) + horizontal flip,
label smoothing 0.1, parameter EMA (decay 0.9995, evaluated alongside as test_ema_*), keep-best
checkpoint on test accuracy. Variants add CutMix, or stochastic depth.

    jaxvision prepare cifar10                                        # once, needs network
    jaxvision train --config=cifar10_resnet18_recipe                 # 200 epochs
    jaxvision train --config=cifar10_resnet18_recipe:short           # 30 epochs
    jaxvision train --config=cifar10_resnet18_recipe:cutmix          # + CutMix (alpha 1), 200 epochs
    jaxvision eval --workdir=workdirs/cifar10_resnet18_recipe --best --tta=flip
    jaxvision train --config=cifar10_resnet18_recipe:smoke           # 2 steps, offline, for tests

Expected (not measured here: this project's machines have no accelerator or CIFAR-10 download):
about 95% test accuracy after 200 epochs, as published ResNet-18 CIFAR recipes of this shape
report (e.g. 95.4% in kuangliu/pytorch-cifar with SGD + cosine + crop/flip); `short` lands lower
(about 93-94%). One epoch is 390 steps of 128 images; on a Colab T4 expect roughly 30-40 s per
epoch, on a TPU v5e or an A100 well under that.

The smoke variant runs the same recipe code path (crop, flip, label smoothing, EMA, Nesterov,
warmup + cosine) for 2 steps on the embedded digits, offline, with the small CIFAR `resnet20` in
place of ResNet-18 so it takes seconds on a CPU (`--config.model=resnet18_cifar` runs the real model:
its CIFAR stem and global pooling take 28x28x1 digits unchanged). A flip is wrong for digits; the
smoke run only checks that the recipe trains, not what it learns.
"""

from jaxvision.training.config import classification_config


def get_config(arg: str | None = None):
    config = classification_config()
    config.name = "cifar10_resnet18_recipe"
    config.model = "resnet18_cifar"
    config.dataset.name = "cifar10"
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.num_epochs = 200
    config.optimizer.name = "nesterov"
    config.optimizer.momentum = 0.9
    config.optimizer.learning_rate = 0.1
    config.optimizer.linear_scaling_base_batch_size = 128  # lr 0.1 per 128 images
    config.optimizer.schedule = "cosine"
    config.optimizer.warmup_epochs = 5.0
    config.optimizer.weight_decay = 5e-4
    config.augment.random_crop_padding = 4
    config.augment.horizontal_flip = True
    config.label_smoothing = 0.1
    config.ema_decay = 0.9995
    config.log_every_steps = 100
    config.checkpoint.best_metric = "test_accuracy"
    config.checkpoint.keep = 2
    # CPU-only machines: elementwise fusions on every core beat one device per core for CIFAR
    # ResNets, and XLA's Eigen convolutions YNNPACK's for their 3x3 layers
    # (training/cpu_fusions.py); accelerators ignore both.
    config.cpu_parallelism = "threads"
    config.cpu_convolutions = "eigen"
    variants = ("short", "cutmix", "stochastic_depth", "smoke")
    if arg == "short":
        config.num_epochs = 30
        config.optimizer.warmup_epochs = 2.0
        config.ema_decay = 0.999
    elif arg == "cutmix":
        config.augment.cutmix_alpha = 1.0
    elif arg == "stochastic_depth":
        config.model_kwargs.drop_path_rate = 0.1  # rising linearly to 0.1 at the last residual block
    elif arg == "smoke":
        config.model = "resnet20"  # the recipe on a small CIFAR ResNet: seconds, not minutes, on a CPU
        config.dataset.name = "embedded_digits"
        config.batch_size = 8
        config.eval_batch_size = 500
        config.num_train_steps = 2
        config.optimizer.warmup_epochs = 0.01
        config.log_every_steps = 1
        config.eval_every_steps = 2
        config.ema_decay = 0.9
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of cifar10_resnet18_recipe; valid: {', '.join(variants)}")
    return config.lock()
