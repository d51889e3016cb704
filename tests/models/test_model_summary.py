"""The per-layer table: the course's AlexNet table, published GMACs, and the text form."""

import pytest

import jaxvision.models as models
from jaxvision.models.summary import round_half_up

# The course's AlexNet table (EECS 498 / CS231n "CNN architectures"), 227x227 input:
# (layer, C, H, W, memory KB, params k, MFLOP).
COURSE_ALEXNET = [
    ("conv1", 64, 56, 56, 784, 23, 73),
    ("pool1", 64, 27, 27, 182, 0, 0),
    ("conv2", 192, 27, 27, 547, 307, 224),
    ("pool2", 192, 13, 13, 127, 0, 0),
    ("conv3", 384, 13, 13, 254, 664, 112),
    ("conv4", 256, 13, 13, 169, 885, 145),
    ("conv5", 256, 13, 13, 169, 590, 100),
    ("pool5", 256, 6, 6, 36, 0, 0),
    ("fc6", 4096, None, None, 16, 37_749, 38),
    ("fc7", 4096, None, None, 16, 16_777, 17),
    ("fc8", 1000, None, None, 4, 4_096, 4),
]


def test_alexnet_227_reproduces_the_course_table():
    table = models.summary(models.create_model("alexnet_227", num_classes=1000), (227, 227, 3))
    assert [row.name for row in table.rows] == [entry[0] for entry in COURSE_ALEXNET]
    for row, (name, channels, height, width, kb, params_k, mflop) in zip(table.rows, COURSE_ALEXNET):
        expected_shape = (channels,) if height is None else (height, width, channels)
        assert row.output_shape == expected_shape, name
        assert round_half_up(row.activation_kb) == kb, name
        # The course counts weights only (no biases): its "params" column is our num_weights.
        assert round_half_up(row.num_weights / 1e3) == params_k, name
        if name == "conv4":
            # The slide prints 145, but 13*13*256 outputs * 3*3*384 = 149,520,384 multiply-adds
            # (conv3 and conv5, same formula, do match the slide): the slide's entry is a typo.
            assert row.macs == 13 * 13 * 256 * 3 * 3 * 384
            assert round_half_up(row.macs / 1e6) == 150
        else:
            assert round_half_up(row.macs / 1e6) == mflop, name
    assert table.total_params == 61_100_840


def test_alexnet_text_table():
    text = str(models.summary(models.create_model("alexnet_227", num_classes=1000), (227, 227, 3)))
    lines = text.splitlines()
    assert lines[0].split()[0] == "layer"
    conv1 = next(line for line in lines if line.startswith("conv1"))
    assert conv1.split() == ["conv1", "64x56x56", "784", "23", "23", "73"]
    fc6 = next(line for line in lines if line.startswith("fc6"))
    assert fc6.split() == ["fc6", "4096", "16", "37,749", "37,753", "38"]
    assert lines[-1].split()[0] == "total"


def test_resnet50_gmacs_match_published():
    # torchvision lists ResNet-50 at 4.09 GFLOPS (multiply-adds); the PERF.md figure is 4.1.
    table = models.summary(models.create_model("resnet50", num_classes=1000), (224, 224, 3))
    assert table.total_macs / 1e9 == pytest.approx(4.09, abs=0.01)
    assert table.total_params == 25_557_032
    assert sum(row.num_params for row in table.rows) == table.total_params


def test_vit_b16_gmacs_match_published():
    # torchvision: vit_b_16 17.56 GFLOPS (multiply-adds), counting the attention matmuls.
    table = models.summary(models.create_model("vit_b_16", num_classes=1000), (224, 224, 3))
    assert table.total_macs / 1e9 == pytest.approx(17.56, abs=0.01)
    # Class token and position embedding belong to no layer row but are in the total.
    assert table.total_params - sum(row.num_params for row in table.rows) == 768 + 197 * 768


def test_summary_rejects_bad_shape():
    with pytest.raises(ValueError, match="input_shape"):
        models.summary(models.create_model("resnet18", num_classes=10), (1, 224, 224, 3))
