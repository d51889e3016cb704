"""Inference-time averaging: test-time augmentation (`tta`) and checkpoint/seed ensembles (`ensemble`).

Both take an `apply_fn` returning logits and return averaged class probabilities (softmax first,
then the mean), float32 `[B, num_classes]`. `evaluation` runs them over a workdir's test split;
`prediction` classifies image files with a trained workdir (`jaxvision predict`);
`segmentation_prediction` writes their class maps with a segmentation workdir.
"""

from jaxvision.inference.ensemble import ensemble_average, stack_params
from jaxvision.inference.tta import (
    flip_average,
    multi_scale_average,
    resize_short_side,
    shift,
    shift_average,
    ten_crop,
    ten_crop_average,
)
