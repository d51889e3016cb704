"""`jaxvision predict` on a segmentation workdir, measured: test digit scenes as files, clean and as
enlarged ink-on-paper "photos", against their ground truth.

For the first `--num_scenes` test scenes of the workdir's data set this writes (1) each 64x64 scene
as a PNG and (2) the scene enlarged 4x (bicubic) as a photo of dark ink on shaded, noisy paper
(JPEG quality 85), runs `segmentation_prediction.segment_files` on both (the photos with and without
`invert`) and scores the masks, at each file's own size, against the ground-truth map (enlarged
nearest for the photos): pixel accuracy, mean class accuracy and mean IoU from one confusion matrix
per variant. `grid.png` shows the first photos, their overlays and their masks.

    jaxvision train --config=digits_unet      # or any digit-scenes segmentation workdir
    python experiments/segment_rendered_scenes.py --workdir=workdirs/digits_unet --out=workdirs/segment_rendered

Needs no network; a minute on a CPU. Recorded figures: README.md (`jaxvision predict`).
"""

import argparse
import json
import os

import numpy as np

PHOTO_SCALE = 4


def render_photo(scene: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`uint8[4H, 4W]`: a gray scene (light strokes on black, `uint8[H, W]`) as dark ink on paper
    with a left-to-right shading of 30 levels and Gaussian noise (std 8)."""
    from PIL import Image

    height, width = scene.shape
    big = np.asarray(Image.fromarray(scene).resize((PHOTO_SCALE * width, PHOTO_SCALE * height),
                                                   Image.Resampling.BICUBIC), np.float32)
    shading = np.linspace(0, 30, big.shape[1])[None, :]
    paper = 235 - 0.8 * big - shading + rng.normal(0, 8, big.shape)
    return np.clip(paper, 0, 255).astype(np.uint8)


def scores(predictions, truths, spec) -> dict[str, float]:
    """Scores of the written masks against `truths` (`int[H, W]` maps at the files' sizes)."""
    from PIL import Image

    from jaxvision.metrics import segmentation as seg_metrics
    from jaxvision.trainers import segmentation

    confusion = np.zeros((spec.num_classes, spec.num_classes), np.int64)
    for predicted, truth in zip(predictions, truths):
        with Image.open(predicted.mask_path) as mask:
            class_map = np.asarray(mask).astype(np.int32)
        confusion += np.asarray(seg_metrics.confusion_matrix(truth.astype(np.int32), class_map, spec.num_classes,
                                                             ignore_label=spec.ignore_label), np.int64)
    return segmentation.scores_from_confusion(confusion)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a trained digit-scenes segmentation workdir")
    parser.add_argument("--out", default="workdirs/segment_rendered")
    parser.add_argument("--num_scenes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from PIL import Image

    from jaxvision.data import segmentation as seg_data
    from jaxvision.inference import segmentation_prediction
    from jaxvision.training import loop

    config = loop.read_workdir_config(args.workdir)
    spec = seg_data.get_segmentation_spec(config.dataset.name)
    if spec.image_shape[-1] != 1:
        raise SystemExit(f"{config.dataset.name} is not a gray digit-scenes data set")
    source = seg_data.load_segmentation_source(config.dataset.name, spec.test_split,
                                               data_dir=config.dataset.data_dir or None)
    files = os.path.join(args.out, "files")
    os.makedirs(files, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    clean_paths, photo_paths, clean_truths, photo_truths = [], [], [], []
    for index in range(args.num_scenes):
        record = source[index]
        scene, truth = record["image"][..., 0], record["segmentation"].astype(np.uint8)
        clean_paths.append(os.path.join(files, f"scene{index}.png"))
        Image.fromarray(scene).save(clean_paths[-1])
        photo_paths.append(os.path.join(files, f"photo{index}.jpg"))
        Image.fromarray(render_photo(scene, rng)).convert("RGB").save(photo_paths[-1], quality=85)
        clean_truths.append(truth)
        photo_truths.append(np.asarray(Image.fromarray(truth).resize(
            (PHOTO_SCALE * truth.shape[1], PHOTO_SCALE * truth.shape[0]), Image.Resampling.NEAREST)))

    variants = {
        "clean PNGs": (clean_paths, clean_truths, False),
        "photos, invert": (photo_paths, photo_truths, True),
        "photos, no invert": (photo_paths, photo_truths, False),
    }
    results, predicted = {}, {}
    for name, (paths, truths, invert) in variants.items():
        out_dir = os.path.join(args.out, name.replace(", ", "_").replace(" ", "_"))
        predicted[name] = segmentation_prediction.segment_files(args.workdir, paths, out_dir=out_dir, invert=invert)
        results[name] = scores(predicted[name], truths, spec)
        print(f"{name:>18}: mean IoU {results[name]['mean_iou']:.3f}, pixel accuracy "
              f"{results[name]['accuracy']:.3f}, mean class accuracy {results[name]['mean_class_accuracy']:.3f}")
    with open(os.path.join(args.out, "scores.json"), "w") as f:
        json.dump({"workdir": args.workdir, "num_scenes": args.num_scenes, **results}, f, indent=2)
    rows = []
    for prediction in predicted["photos, invert"][:3]:  # photo | overlay | mask
        panels = [Image.open(path).convert("RGB") for path in (prediction.path, prediction.overlay_path,
                                                                 prediction.mask_path)]
        rows.append(np.concatenate([np.asarray(panel) for panel in panels], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(os.path.join(args.out, "grid.png"))
    print("wrote", os.path.join(args.out, "scores.json"), "and", os.path.join(args.out, "grid.png"))


if __name__ == "__main__":
    main()
