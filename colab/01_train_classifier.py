# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # jaxvision 01: train an image classifier on whatever accelerator this runtime has
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxvision/jaxvision/blob/main/colab/01_train_classifier.ipynb)
#
# This notebook drives the library; it defines no model or training code of its own.
# It installs jaxvision, shows the devices JAX sees (TPU v5e/v6e, GPU or CPU), trains a
# classifier on tfds MNIST or CIFAR-10 read through `tfds.data_source` + grain (no TensorFlow),
# checkpoints with Orbax, plots the learning curves, and resumes from the checkpoint.
#
# On Colab: *Runtime → Change runtime type → TPU (or GPU)*, then *Run all*.
# `SMOKE = True` runs a few steps offline on the embedded real digits (used by the test suite).

# %% tags=["parameters"]
SMOKE = False
DATASET = "cifar10"  # mnist | fashion_mnist | cifar10 | cifar100
MODEL = "lenet5_table"  # any name from jaxvision.models.list_models()
NUM_EPOCHS = 10
BATCH_SIZE = 256
WORKDIR = "/content/jaxvision_run" if not SMOKE else None
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
from jaxvision.trainers import classification
from jaxvision.training.config import classification_config

print("jaxvision", jaxvision.__version__, "| jax", jax.__version__)
print("devices:", jax.devices())
platform = jax.devices()[0].platform

# %% [markdown]
# ## Configure
# A config is a locked `ml_collections.ConfigDict`; every key is documented in
# `jaxvision/training/config.py`. bf16 compute pays off on TPU and recent GPUs.

# %%
config = classification_config()
config.name = "colab_" + (DATASET if not SMOKE else "smoke")
config.model = MODEL
config.dataset.name = DATASET if not SMOKE else "embedded_digits"
config.dataset.download = not SMOKE  # fetch once into ~/tensorflow_datasets on Colab
config.batch_size = BATCH_SIZE if not SMOKE else 32
config.num_epochs = NUM_EPOCHS
config.num_train_steps = 0 if not SMOKE else 8
config.eval_every_steps = 0 if not SMOKE else 4
config.log_every_steps = 50 if not SMOKE else 4
config.optimizer.learning_rate = 2e-3
config.optimizer.weight_decay = 1e-4
config.optimizer.warmup_epochs = 0.5
config.mixed_precision = platform in ("tpu", "gpu")
if SMOKE:
    config.dataset.data_dir = os.path.join(tempfile.mkdtemp(), "tfds")
config.lock()
workdir = WORKDIR or tempfile.mkdtemp(prefix="jaxvision_smoke_")
print(config)

# %% [markdown]
# ## Train
# Progress bar, `metrics.jsonl`, TensorBoard events and checkpoints go to the workdir. If the
# runtime is preempted, re-running this cell resumes from the newest checkpoint.

# %%
results = classification.train_and_evaluate(config, workdir)
print(json.dumps({k: v for k, v in results.items() if k.startswith("test_")}, indent=2))
print("steps:", results["num_steps"], "| wall time: %.1f s" % results["wall_time_seconds"])

# %% [markdown]
# ## Learning curves

# %%
from IPython.display import Image, display

display(Image(filename=os.path.join(workdir, "learning_curves.png")))

# %% [markdown]
# ## Resume
# Calling `train_and_evaluate` again on the same workdir restores the newest valid checkpoint
# (parameters, optimizer state and the data-iterator position) instead of starting over. Here the
# run is already finished, so it only re-evaluates; after a disconnect it would continue training.

# %%
resumed = classification.train_and_evaluate(config, workdir)
assert resumed["params_fingerprint"] == results["params_fingerprint"]
print("resumed at step", resumed["num_steps"], "with the same parameters:", resumed["params_fingerprint"][:16])
print("checkpoints:", sorted(os.listdir(os.path.join(workdir, "checkpoints"))))
