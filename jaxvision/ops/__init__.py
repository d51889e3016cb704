"""Detection and segmentation ops as pure, vectorized `jnp` functions with static output shapes.

One concept per module: `boxes` (formats, IoU variants, box coder), `nms`, `anchors`, `matching`
(IoU matcher, balanced sampler), `roi` (RoI Pool / RoI Align / multi-level FPN), `masks`
(paste, masks_to_boxes, mask IoU), `pooling` (max pool with argmax, max unpool).
Import the module you need: `from jaxvision.ops import boxes, nms`.
"""

from jaxvision.ops import boxes

__all__ = ["boxes"]
