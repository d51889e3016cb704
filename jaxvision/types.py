"""The jaxvision data contract, written once.

- Images are `float32[N, H, W, C]` (NHWC); video is `float32[N, T, H, W, C]`.
- Class labels are `int32[N]`, in `[0, num_classes)`.
- Boxes are `float32[..., 4]` in `xyxy` order, in absolute pixels (not normalized). A name mentions
  the format only when it differs from this (`boxes_cxcywh`, `boxes_xywh`).
- Anything variable-length (boxes of an image, detections, instances) is padded to a fixed size `N`
  and comes with a `valid: bool[..., N]` mask; padded entries hold arbitrary finite values and are
  ignored by every op, loss and metric that takes the mask.
- Feature maps are NHWC, like images.
- Models return `(logits, features)`: `features` is a dict of named intermediates ("stem",
  "stage1"..., "pre_logits", "attention").
- Randomness is explicit: functions that need it take a `jax.random` key as their first argument.
"""

from typing import Any

import jax

Array = jax.Array
PyTree = Any
Batch = dict[str, Any]
"""A batch: `{"image": float32[B, H, W, C], "label": int32[B]}` for classification."""
