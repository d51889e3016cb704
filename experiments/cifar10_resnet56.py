"""ResNet-56 (He et al. 2016, section 4.2: depth 6n+2 with n=9, widths 16-32-64, option A
parameter-free shortcuts; 0.85M parameters) on CIFAR-10, with the paper's recipe.

    jaxvision prepare cifar10                                # once, needs network
    jaxvision train --config=cifar10_resnet56                # 164 epochs (the paper's 64k steps)
    jaxvision train --config=cifar10_resnet56:smoke          # 2 steps, offline, for tests

The paper's recipe: SGD momentum 0.9, batch 128, learning rate 0.1 divided by 10 at 32k and 48k
iterations, stopping at 64k (epochs 82, 123 and 164 at 391 steps per epoch), L2 1e-4 (coupled, as
SGD weight decay; here on kernels only), 4-pixel padded random crops and horizontal flips.
`--config.model_kwargs.shortcut=B` uses 1x1 projection shortcuts instead.

Expected (not measured here: this project's machines have no accelerator or CIFAR-10 download):
the paper reports 93.03% test accuracy (6.97% error) for ResNet-56, and 91.25% for ResNet-20
(`--config.model=resnet20`). The network is small: on a Colab T4 expect roughly 20-30 s per epoch.

The smoke variant runs the same code path for 2 steps on the embedded offline digits (the CIFAR
ResNet's global pooling takes 28x28x1 unchanged); it checks that the recipe trains, not what it learns.
"""

from jaxvision.training.config import classification_config


def get_config(arg: str | None = None):
    config = classification_config()
    config.name = "cifar10_resnet56"
    config.model = "resnet56"
    config.model_kwargs.shortcut = "A"
    config.dataset.name = "cifar10"
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.num_epochs = 164
    config.optimizer.name = "momentum"
    config.optimizer.momentum = 0.9
    config.optimizer.learning_rate = 0.1
    config.optimizer.schedule = "step"
    config.optimizer.decay_epochs = (82, 123)
    config.optimizer.decay_factor = 0.1
    config.optimizer.l2_regularization = 1e-4
    config.augment.random_crop_padding = 4
    config.augment.horizontal_flip = True
    config.log_every_steps = 100
    config.checkpoint.best_metric = "test_accuracy"
    # CPU-only machines: elementwise fusions on every core beat one device per core for CIFAR
    # ResNets, and XLA's Eigen convolutions YNNPACK's for their 3x3 layers
    # (training/cpu_fusions.py); accelerators ignore both.
    config.cpu_parallelism = "threads"
    config.cpu_convolutions = "eigen"
    if arg == "smoke":
        config.dataset.name = "embedded_digits"
        config.batch_size = 8
        config.eval_batch_size = 500
        config.num_train_steps = 2
        config.log_every_steps = 1
        config.eval_every_steps = 2
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of cifar10_resnet56; valid: smoke")
    return config.lock()
