"""jaxvision: the computer-vision systems of the deep-learning-for-vision courses in JAX.

Pure-function `flax.linen` models, optax optimizers, jit-compiled train steps that run unchanged on
CPU, GPU or TPU, detection/segmentation ops as vectorized `jnp` with static shapes, Orbax checkpoints
and tensorflow-datasets through `tfds.data_source` + grain (no TensorFlow needed).
"""

__version__ = "0.1.0"
