"""LeNet-5 (table variant: 20/50 filters, FC 500) on the 5,000 embedded real MNIST digits.

The default job of `jaxvision train`:

    jaxvision train                                   # = --config=digits_lenet
    jaxvision train --config=digits_lenet:smoke       # a few steps, for tests

Expected: >= 97.0% test accuracy on the 1,000 held-out digits in <= 90 s wall time on a 2-core
CPU (compilation included). Measured: see experiments/README.md.
"""

from jaxvision.training.config import classification_config


def get_config(arg: str | None = None):
    config = classification_config()
    config.name = "digits_lenet"
    config.model = "lenet5_table"
    config.model_kwargs.dropout_rate = 0.0
    config.dataset.name = "embedded_digits"
    config.batch_size = 64
    config.num_epochs = 10
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 2e-3
    config.optimizer.weight_decay = 1e-4
    config.optimizer.warmup_epochs = 0.5
    if arg == "smoke":
        config.num_epochs = 1
        config.num_train_steps = 12
        config.log_every_steps = 4
        config.eval_every_steps = 6
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of digits_lenet; valid: smoke")
    return config.lock()
