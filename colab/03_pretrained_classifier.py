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
# # jaxvision 03: torchvision's ImageNet weights in a jaxvision classifier
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxvision/jaxvision/blob/main/colab/03_pretrained_classifier.ipynb)
#
# The 26 classifiers jaxvision shares with torchvision (AlexNet, VGG, GoogLeNet, ResNet/ResNeXt/WRN,
# DenseNet, ViT-B/L) have one jaxvision layer per torchvision layer, so torchvision's published
# ImageNet weights load by renaming and transposing (`jaxvision.models.torchvision_weights`).
# This notebook downloads them with torchvision (preinstalled on Colab), saves them once as
# `.safetensors` (readable later without torch), classifies two real photos with the jitted
# jaxvision model on whatever accelerator the runtime has, and checks the logits against
# torchvision's own model.
#
# `SMOKE = True` runs offline (used by the test suite): the weights are random, written and read
# through the same file path, and the torchvision comparison is skipped.

# %% tags=["parameters"]
SMOKE = False
MODEL = "resnet50"  # any name in jaxvision.models.torchvision_weights.TORCHVISION_MODELS
WORKDIR = "/content/jaxvision_weights" if not SMOKE else None
REPOSITORY = "git+https://github.com/jaxvision/jaxvision"  # your clone or fork of jaxvision

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("jaxvision") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", REPOSITORY])

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from safetensors.numpy import save_file
from sklearn.datasets import load_sample_images

import jaxvision
from jaxvision import models
from jaxvision.models import torchvision_weights

print("jaxvision", jaxvision.__version__, "| jax", jax.__version__)
print("devices:", jax.devices())
workdir = WORKDIR or tempfile.mkdtemp(prefix="jaxvision_smoke_")
os.makedirs(workdir, exist_ok=True)

# %% [markdown]
# ## Fetch the weights once, keep them as .safetensors
# torchvision's `state_dict` becomes a dict of numpy arrays; `.safetensors` stores it with no
# pickle, so loading it later runs no code and needs no torch.

# %%
weights_path = os.path.join(workdir, f"{MODEL}.safetensors")
if SMOKE:
    template = jax.eval_shape(
        lambda x: models.create_model(MODEL, num_classes=1000).init(jax.random.key(0), x, train=False),
        jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32),
    )
    leaves = [np.random.default_rng(0).normal(0, 0.01, leaf.shape).astype(np.float32) for leaf in jax.tree.leaves(template)]
    random_variables = jax.tree.unflatten(jax.tree.structure(template), leaves)
    save_file(torchvision_weights.to_torchvision(MODEL, random_variables), weights_path)
    categories = [f"class {i}" for i in range(1000)]
else:
    import torch
    import torchvision

    tv_weights = torchvision.models.get_model_weights(MODEL).DEFAULT
    torch_model = torchvision.models.get_model(MODEL, weights=tv_weights).eval()
    save_file({key: value.numpy() for key, value in torch_model.state_dict().items()}, weights_path)
    categories = tv_weights.meta["categories"]
    print("torchvision weights:", tv_weights, "| ImageNet top-1 %.1f%%" % tv_weights.meta["_metrics"]["ImageNet-1K"]["acc@1"])
print("saved", weights_path, "(%.0f MB)" % (os.path.getsize(weights_path) / 2**20))

# %% [markdown]
# ## Load into jaxvision
# `load_torchvision_weights` checks every name and shape and says what is missing or extra.

# %%
variables = torchvision_weights.load_torchvision_weights(MODEL, weights_path)
model = models.create_model(MODEL, num_classes=1000)
cost = models.summary(model, (224, 224, 3))
print(f"{MODEL}: {cost.total_params:,} parameters, {cost.total_macs / 1e9:.2f} GMACs per 224x224 image")


@jax.jit
def predict(variables, images):
    logits, _ = model.apply(variables, images, train=False)
    return logits


# %% [markdown]
# ## Classify two real photos
# scikit-learn ships two photographs. Preprocessing as torchvision's ImageNet weights expect:
# shorter side to 256, centre crop 224, RGB in [0, 1] normalised with ImageNet's mean and std, NHWC.

# %%
def preprocess(photo, resize=256, crop=224):
    height, width, _ = photo.shape
    scale = resize / min(height, width)
    size = (round(height * scale), round(width * scale), 3)
    image = jax.image.resize(jnp.asarray(photo, jnp.float32) / 255.0, size, "bilinear", antialias=True)
    top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
    image = image[top : top + crop, left : left + crop]
    return (image - jnp.array([0.485, 0.456, 0.406])) / jnp.array([0.229, 0.224, 0.225])


photos = load_sample_images().images  # china.jpg, flower.jpg: uint8 [427, 640, 3]
images = jnp.stack([preprocess(photo) for photo in photos])  # [2, 224, 224, 3]
logits = predict(variables, images)
probabilities = jax.nn.softmax(logits)
top5 = jnp.argsort(-probabilities, axis=-1)[:, :5]
for index, ranks in enumerate(np.asarray(top5)):
    print(f"photo {index} top-5:", ", ".join(f"{categories[k]} {float(probabilities[index, k]):.2f}" for k in ranks))

# %%
figure, axes = plt.subplots(2, 2, figsize=(10, 6), gridspec_kw={"width_ratios": [1.4, 1]})
for index, photo in enumerate(photos):
    axes[index, 0].imshow(photo)
    axes[index, 0].axis("off")
    ranks = np.asarray(top5[index])[::-1]
    axes[index, 1].barh([categories[k] for k in ranks], np.asarray(probabilities[index, ranks]))
    axes[index, 1].set_xlim(0, 1)
axes[0, 1].set_title(f"{MODEL}: top-5 probabilities")
figure.tight_layout()
plt.show()

# %% [markdown]
# ## Same logits as torchvision's model
# The converted weights give torchvision's logits up to float32 summation order (on GPU/TPU the
# default matmul precision is lower, so expect ~1e-2 there and ~1e-5 on CPU).

# %%
if not SMOKE:
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2)).numpy()
    difference = np.abs(np.asarray(logits) - torch_logits).max() / np.abs(torch_logits).max()
    print(f"max |logit difference| / max |logit|: {difference:.1e}")
    print("same top-1:", (np.asarray(logits).argmax(-1) == torch_logits.argmax(-1)).all())
else:
    print("SMOKE: random weights, torchvision comparison skipped; logits shape", logits.shape)
