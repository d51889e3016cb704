# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # jaxvision 02: semantic segmentation (U-Net, FCN, SegNet)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxvision/jaxvision/blob/main/colab/02_segmentation.ipynb)
#
# This notebook drives the library; it defines no model or training code of its own. It trains a
# segmentation model (`jaxvision.models.segmentation`) on Oxford-IIIT Pet trimaps or Cityscapes read
# through `tfds.data_source` + grain (no TensorFlow), with per-pixel cross-entropy (ignore label 255)
# and optional Dice, reports pixel accuracy, mean class accuracy and mean IoU from a confusion
# matrix, draws colour-coded prediction overlays, checkpoints with Orbax and resumes.
#
# On Colab: *Runtime → Change runtime type → TPU (or GPU)*, then *Run all*.
# `SMOKE = True` runs a few steps offline on the digit scenes built from real MNIST digits
# (used by the test suite).

# %% tags=["parameters"]
SMOKE = False
DATASET = "oxford_iiit_pet"  # oxford_iiit_pet | cityscapes (manual download) | digit_scenes (offline)
MODEL = "unet"  # any name from jaxvision.models.segmentation.list_segmentation_models()
NUM_EPOCHS = 20
BATCH_SIZE = 32
WORKDIR = "/content/jaxvision_segmentation" if not SMOKE else None
REPOSITORY = "git+https://github.com/jaxvision/jaxvision"  # your clone or fork of jaxvision

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("jaxvision") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", REPOSITORY])

# %%
import json
import os
import tempfile

import jax

import jaxvision
from jaxvision.data import segmentation as segmentation_data
from jaxvision.models.segmentation import list_segmentation_models
from jaxvision.trainers import segmentation
from jaxvision.training.segmentation_config import segmentation_config

print("jaxvision", jaxvision.__version__, "| jax", jax.__version__)
print("devices:", jax.devices())
print("models:", ", ".join(list_segmentation_models()))
platform = jax.devices()[0].platform

# %% [markdown]
# ## Configure
# The keys are those of `jaxvision/training/config.py` plus `dice_weight` and `num_overlays`
# (`jaxvision/training/segmentation_config.py`). The data set's spec fixes the classes and the
# ignore label.

# %%
config = segmentation_config()
config.name = "colab_segmentation_" + (DATASET if not SMOKE else "smoke")
config.model = MODEL if not SMOKE else "unet_small"
if not SMOKE and MODEL == "unet":
    config.model_kwargs.base_width = 32
config.dataset.name = DATASET if not SMOKE else "digit_scenes"
config.dataset.download = not SMOKE and DATASET != "digit_scenes"
config.batch_size = BATCH_SIZE if not SMOKE else 8
config.eval_batch_size = 128 if not SMOKE else 50
config.num_eval_examples = 0 if not SMOKE else 100
config.num_epochs = NUM_EPOCHS
config.num_train_steps = 0 if not SMOKE else 8
config.eval_every_steps = 0 if not SMOKE else 4
config.log_every_steps = 50 if not SMOKE else 4
config.optimizer.learning_rate = 1e-3
config.optimizer.weight_decay = 1e-4
config.optimizer.warmup_epochs = 1.0
config.dice_weight = 0.5 if not SMOKE else 0.0
config.num_overlays = 8 if not SMOKE else 4
config.mixed_precision = platform in ("tpu", "gpu")
if SMOKE:
    config.dataset.data_dir = os.path.join(tempfile.mkdtemp(), "tfds")
config.lock()
spec = segmentation_data.get_segmentation_spec(config.dataset.name)
print(f"{config.dataset.name}: {spec.num_classes} classes {spec.class_names}, ignore label {spec.ignore_label}")
workdir = WORKDIR or tempfile.mkdtemp(prefix="jaxvision_smoke_")

# %% [markdown]
# ## Train
# Re-running this cell after a disconnect resumes from the newest checkpoint in the workdir.

# %%
results = segmentation.train_and_evaluate(config, workdir)
print(json.dumps({k: v for k, v in results.items() if k.startswith("test_") and k != "test_per_class_iou"}, indent=2))
for name, iou in zip(results["class_names"], results["test_per_class_iou"]):
    print(f"  IoU {name:>14}: {iou if iou is None else round(iou, 4)}")
print("steps:", results["num_steps"], "| wall time: %.1f s" % results["wall_time_seconds"])

# %% [markdown]
# ## Predictions and learning curves
# Rows: test images, ground truth over the image, prediction over the image (white: ignored pixels).

# %%
from IPython.display import Image, display

display(Image(filename=os.path.join(workdir, "overlays.png")))
display(Image(filename=os.path.join(workdir, "learning_curves.png")))

# %% [markdown]
# ## Resume
# A second call restores the newest checkpoint (parameters, optimizer state, data position); the
# run is finished, so it only re-evaluates and returns the same parameters.

# %%
resumed = segmentation.train_and_evaluate(config, workdir)
assert resumed["params_fingerprint"] == results["params_fingerprint"]
print("resumed at step", resumed["num_steps"], "with the same parameters:", resumed["params_fingerprint"][:16])
print("checkpoints:", sorted(os.listdir(os.path.join(workdir, "checkpoints"))))

# %% [markdown]
# ## Your own images
# `segment_files` (the library behind `jaxvision predict` on a segmentation workdir) resizes each
# file to the data set's size, predicts, resizes the logits back to the file's own size, and writes
# a palette PNG of class indices and an overlay per file. Put your files in `IMAGES` (on Colab:
# upload them in the Files pane); left empty, two test images saved as 2x-enlarged JPEGs stand in.

# %%
from PIL import Image as PILImage

from jaxvision.inference import segmentation_prediction

IMAGES = []
if not IMAGES:
    test_source = segmentation_data.load_segmentation_source(
        config.dataset.name, spec.test_split, data_dir=config.dataset.data_dir or None)
    for index in range(2):
        pixels = test_source[index]["image"]
        photo = PILImage.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        IMAGES.append(os.path.join(workdir, f"example{index}.jpg"))
        photo.resize((2 * photo.width, 2 * photo.height), PILImage.Resampling.BICUBIC).save(IMAGES[-1], quality=90)
for predicted in segmentation_prediction.segment_files(workdir, IMAGES):
    shares = ", ".join(f"{name} {share:.1%}" for name, share in list(predicted.class_fractions.items())[:4])
    print(f"{predicted.path} {predicted.shape}: {shares}\n  mask {predicted.mask_path}")
    display(Image(filename=predicted.overlay_path))
