"""FCN-8s on the offline digit scenes, with a CPU-sized VGG-style encoder trained from scratch.

    jaxvision train --config=digits_fcn8s
    jaxvision train --config=digits_fcn8s:smoke

Backbone `vgg16_small`: VGG-16's five pooled blocks with 16-32-64-128-128 channels and 1-1-2-2-2
convolutions (+BatchNorm), a 3x3/256 "fc6" and 1x1/256 "fc7" head, no pretrained weights (none
exist offline). digits_fcn16s.py and digits_fcn32s.py train the same network with fewer skips, so
the three differ only in score fusion. Measured after 6 epochs on the 500 test scenes: FCN-8s 0.341
mean IoU, FCN-32s 0.085 (background everywhere); times in experiments/README.md.
"""

from jaxvision.training.segmentation_config import make_smoke, segmentation_config


def fcn_config(model: str, name: str, arg: str | None):
    """The digit-scenes FCN config shared by the 8s/16s/32s experiments."""
    config = segmentation_config()
    config.name = name
    config.model = model
    config.dataset.name = "digit_scenes"
    config.batch_size = 32
    config.num_epochs = 6
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.weight_decay = 1e-4
    config.optimizer.warmup_epochs = 0.5
    if arg == "smoke":
        make_smoke(config)
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of {name}; valid: smoke")
    return config.lock()


def get_config(arg: str | None = None):
    return fcn_config("fcn8s_small", "digits_fcn8s", arg)
