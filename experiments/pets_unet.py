"""U-Net (base 32 channels, 4 pools, 7.8M parameters) on Oxford-IIIT Pet trimaps, for Colab.

    jaxvision train --config=pets_unet --config.dataset.download=True    # first run fetches ~800 MB

tfds `oxford_iiit_pet` through `tfds.data_source` (no TensorFlow), images and trimaps resized to
128x128; 2 classes (background, pet) with the trimap's border class as ignore label 255; 3,680
train / 3,669 test images. Run it on a Colab GPU/TPU (colab/02_segmentation.ipynb); not measured
on this repository's CPU machines (no network there).
"""

from jaxvision.training.segmentation_config import segmentation_config


def get_config(arg: str | None = None):
    config = segmentation_config()
    config.name = "pets_unet"
    config.model = "unet"
    config.model_kwargs.base_width = 32
    config.dataset.name = "oxford_iiit_pet"
    config.batch_size = 32
    config.eval_batch_size = 128
    config.num_epochs = 20
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 1e-4
    config.optimizer.warmup_epochs = 1.0
    config.dice_weight = 0.5
    if arg:
        raise ValueError(f"unknown variant {arg!r} of pets_unet; it has none")
    return config.lock()
