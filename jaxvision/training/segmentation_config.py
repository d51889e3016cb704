"""The segmentation config schema: the classification keys (`training/config.py`) plus these.

    task = "segmentation"           # `jaxvision train` dispatches to jaxvision.trainers.segmentation
    model                           # a name from jaxvision.models.segmentation.SEGMENTATION_MODELS
    dataset.name                    # a name from jaxvision.data.segmentation.SEGMENTATION_DATASETS
    dice_weight                     # > 0 adds this times the mean per-class soft Dice loss to the CE
    num_overlays                    # test images drawn into overlays.png at the end (0: none)
    num_eval_examples               # evaluate on the first N test examples (0: the whole split; smoke runs)

The ignore label comes from the data set's spec (255 for every registered one).
"""

import ml_collections

from jaxvision.training.config import classification_config


def segmentation_config() -> ml_collections.ConfigDict:
    """Defaults for `jaxvision.trainers.segmentation.train_and_evaluate` (unlocked)."""
    config = classification_config()
    config.name = "segmentation"
    config.task = "segmentation"
    config.model = "unet_small"
    config.dataset.name = "digit_scenes"
    config.batch_size = 32
    config.eval_batch_size = 100
    config.dice_weight = 0.0
    config.num_overlays = 8
    config.num_eval_examples = 0
    config.checkpoint.best_metric = "test_mean_iou"
    # Published-weights starts and input resizing are wired for classifiers only (pretrained.py,
    # models/input_resize.py: a segmentation map must keep its image's size).
    del config.init_from, config.trainable, config.input_size
    return config


def make_smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Turn an (unlocked) config into its `:smoke` variant: 8 steps of batch 8, evaluated on 100
    test examples, 4 overlays -- seconds on a CPU, for tests and notebooks. Returns `config`."""
    config.num_epochs = 1
    config.num_train_steps = 8
    config.log_every_steps = 4
    config.eval_every_steps = 4
    config.batch_size = 8
    config.eval_batch_size = 50
    config.num_eval_examples = 100
    config.num_overlays = 4
    return config
