"""`segment_files` / `jaxvision predict` on a segmentation workdir: test scenes saved as PNG get the
maps of the evaluation path; larger files get masks at their own size (logits resized as torch's
`F.interpolate`); the mask and overlay files; CLI output and errors."""

import json
import logging
import os

import jax
import numpy as np
import pytest
import torch
from PIL import Image

from jaxvision import cli
from jaxvision.data import segmentation as seg_data
from jaxvision.inference import prediction, segmentation_prediction
from jaxvision.trainers import segmentation
from jaxvision.training import loop
from tests.image_files import save

NUM_FILES = 3


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory, scenes_data_dir):
    """The `digits_unet:smoke` run (8 steps of U-Net on the digit scenes)."""
    workdir = str(tmp_path_factory.mktemp("segment_run"))
    assert cli.main(["train", "--config=digits_unet:smoke", f"--workdir={workdir}",
                     f"--config.dataset.data_dir={scenes_data_dir}"]) == 0
    return workdir


@pytest.fixture(scope="module")
def test_scenes(scenes_data_dir):
    """The first test scenes as uint8 [64, 64] gray images."""
    source = seg_data.load_segmentation_source("digit_scenes", "test", data_dir=scenes_data_dir)
    return [source[i]["image"][..., 0] for i in range(NUM_FILES)]


@pytest.fixture(scope="module")
def restored(trained_workdir):
    experiment, state, _ = loop.restore_workdir(trained_workdir, segmentation.build_experiment)
    return experiment, state


def model_logits(restored, images):
    """float32 [N, H, W, K] logits of `images` in [0, 1] through the restored model."""
    experiment, state = restored
    normalized = ((images - experiment.mean) / experiment.std).astype(np.float32)
    return np.asarray(jax.jit(state.apply_fn, static_argnames="train")(state.variables, normalized, train=False)[0])


def test_png_scenes_get_the_evaluation_maps(trained_workdir, test_scenes, restored, tmp_path):
    paths = [save(tmp_path, f"scene{i}.png", pixels) for i, pixels in enumerate(test_scenes)]
    results = segmentation_prediction.segment_files(trained_workdir, paths, out_dir=str(tmp_path / "out"))
    expected = model_logits(restored, np.stack(test_scenes)[..., None].astype(np.float32) / 255.0).argmax(-1)
    class_names = seg_data.get_segmentation_spec("digit_scenes").class_names
    for result, path, expected_map in zip(results, paths, expected):
        assert result.path == path and result.shape == (64, 64)
        assert result.mask_path == str(tmp_path / "out" / f"{os.path.basename(path)[:-4]}_mask.png")
        with Image.open(result.mask_path) as mask:
            assert mask.mode == "P"
            np.testing.assert_array_equal(np.asarray(mask), expected_map)
            palette = np.asarray(mask.getpalette(), np.uint8).reshape(-1, 3)
        np.testing.assert_array_equal(palette[:11], segmentation.color_palette(11)[:11])
        counts = np.bincount(expected_map.ravel(), minlength=11)
        assert result.class_fractions == {class_names[i]: counts[i] / expected_map.size
                                          for i in np.argsort(-counts, kind="stable") if counts[i]}
        assert sum(result.class_fractions.values()) == pytest.approx(1.0)


def test_a_larger_rgb_file_gets_a_mask_and_overlay_at_its_own_size(trained_workdir, test_scenes, restored, tmp_path):
    path = save(tmp_path, "big.jpg", test_scenes[0], mode="RGB", size=(160, 128))  # width 160, height 128
    result = segmentation_prediction.segment_files(trained_workdir, [path], out_dir=str(tmp_path))[0]
    assert result.shape == (128, 160)
    # The reference: the logits of the file as the model sees it, resized as torch's F.interpolate.
    images = prediction.read_images([path], (64, 64, 1))
    logits = torch.from_numpy(model_logits(restored, images).copy()).permute(0, 3, 1, 2)
    upsampled = torch.nn.functional.interpolate(logits, size=(128, 160), mode="bilinear", align_corners=False)
    expected = upsampled[0].argmax(0).numpy()
    with Image.open(result.mask_path) as mask:
        class_map = np.asarray(mask)
    assert class_map.shape == (128, 160)
    top2 = np.sort(upsampled[0].numpy(), axis=0)[-2:]
    decided = (top2[1] - top2[0]) > 1e-4  # away from near-ties, where float rounding may pick either
    np.testing.assert_array_equal(class_map[decided], expected[decided])
    assert decided.mean() > 0.99
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    with Image.open(result.overlay_path) as overlay:
        assert overlay.mode == "RGB" and overlay.size == (160, 128)
        overlay = np.asarray(overlay)
    background = class_map == 0
    np.testing.assert_array_equal(overlay[background], pixels[background])
    palette = segmentation.color_palette(11)
    labelled = ~background
    np.testing.assert_array_equal(overlay[labelled],
                                  (0.4 * pixels[labelled] + 0.6 * palette[class_map[labelled]]).astype(np.uint8))


@pytest.mark.parametrize("size", [(5, 7), (13, 17), (4, 4), (3, 2)])  # from 4 x 5: same, larger, smaller
def test_upsample_class_map_is_torch_bilinear_then_argmax(size):
    rng = np.random.default_rng(sum(size))
    logits = rng.normal(size=(4, 5, 6)).astype(np.float32)
    upsampled = torch.nn.functional.interpolate(torch.from_numpy(logits).permute(2, 0, 1)[None], size=size,
                                                mode="bilinear", align_corners=False, antialias=True)[0].numpy()
    top2 = np.sort(upsampled, axis=0)[-2:]
    decided = (top2[1] - top2[0]) > 1e-5
    assert decided.mean() > 0.9
    class_map = segmentation_prediction.upsample_class_map(logits, size)
    assert class_map.shape == size and class_map.dtype == np.int32
    np.testing.assert_array_equal(class_map[decided], upsampled.argmax(0)[decided])


def test_same_size_map_is_plain_argmax_with_ties_to_the_lower_class():
    logits = np.zeros((2, 3, 4), np.float32)
    logits[0, 0, 2] = logits[0, 0, 3] = 1.0  # a tie between classes 2 and 3
    logits[1, 2, 1] = 5.0
    np.testing.assert_array_equal(segmentation_prediction.upsample_class_map(logits, (2, 3)), logits.argmax(-1))


def test_cli_predict_on_a_segmentation_workdir(trained_workdir, test_scenes, tmp_path, capsys):
    path = save(tmp_path, "scene.png", test_scenes[1])
    capsys.readouterr()
    assert cli.main(["predict", f"--workdir={trained_workdir}", path]) == 0
    line = capsys.readouterr().out.strip()
    mask_path = os.path.join(trained_workdir, "predictions", "scene_mask.png")
    assert line.startswith(f"{path}: background ") and line.endswith(
        f"-> {mask_path}, {os.path.join(trained_workdir, 'predictions', 'scene_overlay.png')}")
    out_dir = str(tmp_path / "json")
    assert cli.main(["predict", f"--workdir={trained_workdir}", path, f"--out_dir={out_dir}", "--format=json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["file"] == path and entry["shape"] == [64, 64]
    assert entry["mask"] == os.path.join(out_dir, "scene_mask.png") and os.path.exists(entry["overlay"])
    with Image.open(entry["mask"]) as mask, Image.open(mask_path) as default_mask:
        np.testing.assert_array_equal(np.asarray(mask), np.asarray(default_mask))


def test_inverted_polarity_is_warned_about(trained_workdir, test_scenes, tmp_path, caplog):
    paper = save(tmp_path, "ink_on_paper.png", 255 - test_scenes[0])
    with caplog.at_level(logging.WARNING, logger="jaxvision.inference.prediction"):
        segmentation_prediction.segment_files(trained_workdir, [paper], out_dir=str(tmp_path))
    assert "ink_on_paper.png: mean brightness" in caplog.text and "try --invert" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jaxvision.inference.prediction"):
        inverted = segmentation_prediction.segment_files(trained_workdir, [paper], out_dir=str(tmp_path / "inv"),
                                                         invert=True)[0]
    assert caplog.text == ""
    plain = segmentation_prediction.segment_files(trained_workdir, [save(tmp_path, "scene.png", test_scenes[0])],
                                                  out_dir=str(tmp_path / "plain"))[0]
    with Image.open(inverted.mask_path) as a, Image.open(plain.mask_path) as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_errors_name_the_problem(trained_workdir, test_scenes, tmp_path, capsys):
    path = save(tmp_path, "scene.png", test_scenes[0])
    other = os.path.join(tmp_path, "other")
    os.makedirs(other)
    same_stem = save(other, "scene.jpg", test_scenes[1])
    with pytest.raises(ValueError, match="would both be written as scene_mask.png"):
        segmentation_prediction.segment_files(trained_workdir, [path, same_stem])
    with pytest.raises(ValueError, match="no image files"):
        segmentation_prediction.segment_files(trained_workdir, [])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        segmentation_prediction.segment_files(trained_workdir, [str(tmp_path / "missing.png")])
    for flags, match in (([f"--top={cli.PREDICT_TOP}"], "--top"), (["--mnist_style"], "--mnist_style"),
                         (["--tta=flip", "--top=2"], "--top, --tta")):
        assert cli.main(["predict", f"--workdir={trained_workdir}", path, *flags]) == 2
        assert f"{match}: for classification workdirs" in capsys.readouterr().err
    # A classification workdir (its config.json is all that is read before the error).
    classifier_dir = tmp_path / "classifier"
    classifier_dir.mkdir()
    (classifier_dir / "config.json").write_text(json.dumps({"task": "classification"}))
    with pytest.raises(ValueError, match="is a classification workdir"):
        segmentation_prediction.segment_files(str(classifier_dir), [path])
    assert cli.main(["predict", f"--workdir={classifier_dir}", path, "--out_dir=masks"]) == 2
    assert "--out_dir is for segmentation workdirs" in capsys.readouterr().err
