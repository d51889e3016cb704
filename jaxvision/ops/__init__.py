"""Detection and segmentation ops as pure, vectorized `jnp` functions with static output shapes.

One concept per module: `boxes` (formats, IoU variants, box coder), `nms` (exact greedy, per-class,
Soft-NMS), `anchors` (anchor grids, SSD default boxes, YOLO offsets), `matching` (IoU matcher,
balanced sampler), `roi` (RoI Pool / RoI Align / multi-level FPN), `masks` (paste, masks_to_boxes,
mask IoU), `pooling` (max pool with argmax, max unpool).
Import the module you need: `from jaxvision.ops import boxes, nms`.
"""

from jaxvision.ops import anchors, boxes, masks, matching, nms, pooling, roi

__all__ = ["anchors", "boxes", "masks", "matching", "nms", "pooling", "roi"]
