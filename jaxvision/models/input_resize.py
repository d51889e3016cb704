"""A classifier that resizes its input first: how a model pretrained at 224 (a ViT above all, whose
patch grid and position embedding fix its input size) fine-tunes on 28x28 digits or 32x32 CIFAR,
as torchvision's and timm's fine-tuning recipes do with `transforms.Resize` on the host.

Here the resize runs on the device inside `apply` (bilinear, antialiased when shrinking:
`jax.image.resize`, like torchvision's `Resize(antialias=True)`), so every caller of the model
(training, evaluation, test-time augmentation, ensembles, CAM) sees the same network, and the host
pipeline keeps moving the small images. The wrapped model's variables keep their names (the
wrapper shares its scope), so checkpoints, `torchvision_weights` and the linear probe's classifier
mask see the plain model's tree.

    model = ResizeInput(create_model("vit_ti_16", num_classes=10), size=224)
    variables = model.init(key, jnp.zeros((1, 28, 28, 1)), train=False)  # same tree as vit_ti_16's
"""

import flax.linen as nn
import jax


class ResizeInput(nn.Module):
    """`model` applied to images resized to `size x size`. Input `float[N, H, W, C]`; returns the
    model's `(logits, features)` (features at the resized resolution)."""

    model: nn.Module
    size: int

    def setup(self):
        if self.size < 1:
            raise ValueError(f"ResizeInput size must be positive, got {self.size}")
        nn.share_scope(self, self.model)

    def __call__(self, images, *, train: bool):
        if images.ndim != 4:
            raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
        batch, height, width, channels = images.shape
        if (height, width) != (self.size, self.size):
            images = jax.image.resize(images, (batch, self.size, self.size, channels), method="bilinear")
        return self.model(images, train=train)
