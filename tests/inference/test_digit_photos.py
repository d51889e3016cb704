"""`mnist_style`: a real digit made into a "photo" (large, off centre, gray paper, noise) comes back
in MNIST's framing; the box and centre-of-mass rules; errors."""

import numpy as np
import pytest
from PIL import Image

from jaxvision.data import tfds as datasets
from jaxvision.inference import digit_photos


@pytest.fixture(scope="module")
def real_digits(digits_data_dir):
    source = datasets.load_data_source("embedded_digits", "test", data_dir=digits_data_dir)
    return [source[i]["image"][..., 0].astype(np.float32) / 255.0 for i in range(6)]


def as_photo(digit, *, scale=6, canvas=(260, 360), corner=(30, 170), paper=0.35, seed=0):
    """The digit enlarged, put off centre on a larger gray-ground canvas with noise (light on dark)."""
    big = np.asarray(Image.fromarray(digit, mode="F").resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR))
    photo = np.full(canvas, paper, np.float32)
    window = photo[corner[0]: corner[0] + big.shape[0], corner[1]: corner[1] + big.shape[1]]
    np.maximum(window, paper + (1 - paper) * np.clip(big, 0, 1), out=window)
    noise = np.random.default_rng(seed).normal(0.0, 0.02, canvas)
    return np.clip(photo + noise, 0.0, 1.0)


def centre_of_mass(image):
    rows, cols = np.indices(image.shape)
    return (rows * image).sum() / image.sum(), (cols * image).sum() / image.sum()


def test_a_photographed_digit_comes_back_in_mnist_framing(real_digits):
    for index, digit in enumerate(real_digits):
        framed = digit_photos.mnist_style(as_photo(digit, seed=index))
        assert framed.shape == (28, 28) and framed.dtype == np.float32
        assert framed.min() >= 0.0 and framed.max() <= 1.0
        correlation = np.corrcoef(framed.ravel(), digit.ravel())[0, 1]
        assert correlation > 0.9, (index, correlation)
        assert np.abs(framed - digit).mean() < 0.06, index


def test_mnist_convention_and_digits_already_in_it(digits_data_dir):
    # The convention mnist_style follows, read off the data: every test digit's centre of mass lies
    # within half a pixel of (14, 14); and such a digit comes back (nearly) unchanged.
    source = datasets.load_data_source("embedded_digits", "test", data_dir=digits_data_dir)
    digits = [source[i]["image"][..., 0].astype(np.float32) / 255.0 for i in range(len(source))]
    centres = np.array([centre_of_mass(digit) for digit in digits])
    assert np.all(np.abs(centres - 14.0) <= 0.5)
    correlations = [np.corrcoef(digit_photos.mnist_style(digit).ravel(), digit.ravel())[0, 1] for digit in digits[:100]]
    assert np.median(correlations) > 0.999 and np.mean(np.array(correlations) > 0.95) > 0.9


def test_box_and_centre_of_mass_rules():
    # A thin off-centre vertical stroke (a "1") and a wide bar: the longer side becomes 20 pixels
    # and the centre of mass lands on pixel (14, 14) to within half a pixel.
    tall = np.zeros((100, 80), np.float32)
    tall[10:70, 60:66] = 1.0
    wide = np.zeros((50, 300), np.float32)
    wide[40:46, 10:250] = 0.8
    for image, long_axis in ((tall, 0), (wide, 1)):
        framed = digit_photos.mnist_style(image)
        rows, cols = np.nonzero(framed > 0.1)
        extents = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
        assert extents[long_axis] in (20, 21)  # 20 plus at most one antialiased edge pixel
        assert extents[1 - long_axis] < 8
        np.testing.assert_allclose(centre_of_mass(framed), (14.0, 14.0), atol=0.5)
    # Mass far from the middle (a heavy bottom bar, a thin stem): centring it would push the digit's
    # top out of the square, so the digit sits at the top edge instead, whole.
    heavy_bottom = np.zeros((40, 40), np.float32)
    heavy_bottom[36:40, :] = 1.0
    heavy_bottom[:, 0:1] = 1.0
    framed = digit_photos.mnist_style(heavy_bottom)
    rows, cols = np.nonzero(framed > 0.1)
    assert rows.min() == 0 and rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 == 20


def test_other_sizes_and_errors():
    image = np.zeros((64, 64), np.float32)
    image[20:40, 30:35] = 1.0
    assert digit_photos.mnist_style(image, size=56).shape == (56, 56)
    with pytest.raises(ValueError, match="no stroke"):
        digit_photos.mnist_style(np.full((20, 20), 0.4))
    with pytest.raises(ValueError, match="gray image"):
        digit_photos.mnist_style(np.zeros((8, 8, 3)))
