"""`predict_files` / `jaxvision predict`: image files through a trained workdir agree with the
test-split evaluation of the same images; inversion, resizing, channels, warnings and errors."""

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from jaxvision import cli
from jaxvision.data import tfds as datasets
from jaxvision.inference import evaluation, prediction
from jaxvision.trainers import classification
from tests.image_files import save

NUM_FILES = 5


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory, digits_data_dir):
    """A 6-step smoke run on the embedded digits."""
    config = cli.load_config("digits_lenet:smoke")
    config.dataset.data_dir = digits_data_dir
    config.num_train_steps = 6
    config.eval_every_steps = 6
    workdir = str(tmp_path_factory.mktemp("predict_run"))
    classification.train_and_evaluate(config, workdir, show_progress=False)
    return workdir


@pytest.fixture(scope="module")
def test_digits(tmp_path_factory, digits_data_dir):
    """The first test-split digits as uint8 [28, 28] arrays, with their labels."""
    source = datasets.load_data_source("embedded_digits", "test", data_dir=digits_data_dir)
    records = [source[i] for i in range(NUM_FILES)]
    return [record["image"][..., 0] for record in records], [int(record["label"]) for record in records]


@pytest.fixture(scope="module")
def evaluated(trained_workdir):
    """Test-split probabilities from the evaluation path (no TTA, and shift TTA)."""
    experiment, state, _ = classification.restore_workdir(trained_workdir)
    return {tta: evaluation.predict_probabilities([experiment], [state], tta_name=tta)[0][:NUM_FILES]
            for tta in ("none", "shift")}


@pytest.mark.parametrize("tta", ["none", "shift"])
def test_png_files_get_the_evaluation_probabilities(trained_workdir, test_digits, evaluated, tta, tmp_path):
    paths = [save(tmp_path, f"digit{i}.png", pixels) for i, pixels in enumerate(test_digits[0])]
    predictions = prediction.predict_files(trained_workdir, paths, top_k=10, tta_name=tta)
    assert [p.path for p in predictions] == paths
    for row, p in zip(evaluated[tta], predictions):
        assert p.labels[0] == int(np.argmax(row))
        assert p.names == tuple(str(label) for label in p.labels)  # the digits' class names
        assert sorted(p.labels) == list(range(10))
        np.testing.assert_allclose(p.probabilities, row[list(p.labels)], atol=1e-6)
        assert list(p.probabilities) == sorted(p.probabilities, reverse=True)
    top2 = prediction.predict_files(trained_workdir, paths[:1], top_k=2, tta_name=tta)[0]
    assert top2.labels == predictions[0].labels[:2]


def test_inverted_rgb_file_with_invert_equals_the_plain_file(trained_workdir, test_digits, tmp_path):
    pixels = test_digits[0][0]
    plain = prediction.predict_files(trained_workdir, [save(tmp_path, "plain.png", pixels)], top_k=10)[0]
    inverted_path = save(tmp_path, "ink_on_paper.png", 255 - pixels, mode="RGB")
    inverted = prediction.predict_files(trained_workdir, [inverted_path], top_k=10, invert=True)[0]
    assert inverted.labels == plain.labels
    np.testing.assert_allclose(inverted.probabilities, plain.probabilities, atol=1e-6)


def test_read_images_resizes_and_converts(test_digits, tmp_path):
    pixels = test_digits[0][1]
    big = save(tmp_path, "big.png", pixels, mode="RGB", size=(84, 84))
    same = save(tmp_path, "same.png", pixels)
    images = prediction.read_images([big, same], (28, 28, 1))
    assert images.shape == (2, 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images[1, ..., 0], pixels / np.float32(255.0))
    assert 0.0 <= images.min() and images.max() <= 1.0
    # Antialiased bilinear down from a 3x nearest upscale: the digit, slightly blurred.
    assert np.abs(images[0] - images[1]).mean() < 0.05
    rgb = prediction.read_images([same], (32, 32, 3))
    assert rgb.shape == (1, 32, 32, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])


def test_photo_of_ink_on_paper_with_invert_and_mnist_style(trained_workdir, test_digits, tmp_path, capsys):
    digit = test_digits[0][3]
    big = Image.fromarray(255 - digit, "L").resize((140, 140), Image.Resampling.BILINEAR)
    page = Image.new("L", (300, 240), 210)  # gray paper, the digit small and off centre
    page.paste(Image.fromarray(np.minimum(np.asarray(big), 210).astype(np.uint8), "L"), (150, 20))
    path = os.path.join(tmp_path, "photo.png")
    page.convert("RGB").save(path)
    framed = prediction.read_images([path], (28, 28, 1), invert=True, mnist_style=True)[0, ..., 0]
    assert np.corrcoef(framed.ravel(), digit.ravel())[0, 1] > 0.9
    whole = prediction.read_images([path], (28, 28, 1), invert=True)[0, ..., 0]
    assert np.corrcoef(whole.ravel(), digit.ravel())[0, 1] < 0.5  # resizing the whole page is not enough
    assert cli.main(["predict", f"--workdir={trained_workdir}", path, "--invert", "--mnist_style", "--top=1"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ")
    with pytest.raises(ValueError, match="mnist_style frames gray square digits"):
        prediction.read_images([path], (32, 32, 3), mnist_style=True)


def test_polarity_warning(trained_workdir, test_digits, tmp_path, caplog):
    pixels = test_digits[0][0]
    paths = [save(tmp_path, "plain.png", pixels), save(tmp_path, "ink.png", 255 - pixels)]
    with caplog.at_level(logging.WARNING, logger="jaxvision.inference.prediction"):
        prediction.predict_files(trained_workdir, paths)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and "ink.png" in messages[0] and "try --invert" in messages[0]
    caplog.clear()
    # Framing digits: the check reads the file before framing; ink on white without --invert fails.
    with caplog.at_level(logging.WARNING, logger="jaxvision.inference.prediction"):
        with pytest.raises(ValueError, match="ink.png: the image has no stroke .* needs inverting first"):
            prediction.read_images(paths[1:], (28, 28, 1), mnist_style=True, expected_brightness=0.13)
    assert len(caplog.records) == 1 and "try --invert" in caplog.records[0].getMessage()


def test_errors(trained_workdir, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        prediction.predict_files(trained_workdir, [str(tmp_path / "missing.png")])
    with pytest.raises(ValueError, match="not an image file"):
        prediction.predict_files(trained_workdir, [str(not_image)])
    with pytest.raises(ValueError, match="top_k"):
        prediction.predict_files(trained_workdir, [str(not_image)], top_k=0)
    with pytest.raises(ValueError, match="no image files"):
        prediction.predict_files(trained_workdir, [])
    with pytest.raises(ValueError, match="channels"):
        prediction.read_images([str(not_image)], (28, 28, 2))
    segmentation_workdir = tmp_path / "segmentation_run"
    segmentation_workdir.mkdir()
    (segmentation_workdir / "config.json").write_text(json.dumps({"task": "segmentation"}))
    with pytest.raises(ValueError, match="segmentation workdir"):
        prediction.predict_files(str(segmentation_workdir), [str(not_image)])


def test_cli_predict(trained_workdir, test_digits, tmp_path, capsys):
    path = save(tmp_path, "digit.png", test_digits[0][2])
    assert cli.main(["predict", f"--workdir={trained_workdir}", path, "--top=3", "--format=json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["file"] == path and len(row["labels"]) == 3 and row["names"] == [str(i) for i in row["labels"]]
    assert cli.main(["predict", f"--workdir={trained_workdir}", path, "--top=1"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: {row['names'][0]} ")
    assert cli.main(["predict", f"--workdir={trained_workdir}", path]) == 0
    assert capsys.readouterr().out.count("%") == cli.PREDICT_TOP  # the default number of classes
    assert cli.main(["predict", f"--workdir={trained_workdir}", str(tmp_path / "nope.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
