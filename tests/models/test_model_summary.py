"""The per-layer table: the course's AlexNet table, published GMACs, the text form, block-level
rows and the `jaxvision summary` command."""

import csv
import io
import json

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


def test_at_depth_merges_each_block_and_keeps_totals():
    table = models.summary(models.create_model("resnet50", num_classes=1000), (224, 224, 3))
    blocks = table.at_depth(1)
    block_names = [f"layer{stage}_{block}" for stage, count in zip(range(1, 5), (3, 4, 6, 3)) for block in range(count)]
    assert [row.name for row in blocks.rows] == ["conv1", "bn1", "maxpool", *block_names, "fc"]
    children = [row for row in table.rows if row.name.startswith("layer2_0/")]
    merged = next(row for row in blocks.rows if row.name == "layer2_0")
    assert len(children) == 8 and merged.kind == "8 layers"
    assert merged.macs == sum(row.macs for row in children)
    assert merged.num_params == sum(row.num_params for row in children)
    assert merged.activation_kb == sum(row.activation_kb for row in children)
    assert merged.output_shape == (28, 28, 512)
    assert sum(row.macs for row in blocks.rows) == blocks.total_macs == table.total_macs
    assert sum(row.num_params for row in blocks.rows) == blocks.total_params == table.total_params
    assert next(row for row in blocks.rows if row.name == "conv1") == table.rows[0]  # single rows kept
    assert table.at_depth(4).rows == table.rows
    with pytest.raises(ValueError, match="depth"):
        table.at_depth(0)


def test_cli_summary_text_json_and_csv(capsys):
    from jaxvision import cli

    assert cli.main(["summary", "alexnet_227"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("alexnet_227 on 227x227x3") and "61,100,840 parameters" in lines[0]
    assert next(line for line in lines if line.startswith("conv2")).split() == ["conv2", "192x27x27", "547", "307", "307", "224"]

    assert cli.main(["summary", "vit_ti_16", "--option=image_size=64", "--num_classes=10", "--depth=1", "--format=json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = models.summary(models.create_model("vit_ti_16", num_classes=10, image_size=64), (64, 64, 3))
    assert data["input_shape"] == [64, 64, 3] and data["total_params"] == expected.total_params
    assert [row["name"] for row in data["rows"]][:3] == ["conv_proj", "encoder_layer_0", "encoder_layer_1"]
    assert data["rows"][1]["output_shape"] == [17, 192]  # 4x4 patches + the class token
    assert sum(row["macs"] for row in data["rows"]) == data["total_macs"] == expected.total_macs

    assert cli.main(["summary", "lenet5", "--format=csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["name"] == "conv1" and rows[0]["output_shape"] == "24x24x6"  # native 28x28x1 input
    lenet = models.summary(models.create_model("lenet5", num_classes=1000), (28, 28, 1))
    assert sum(int(row["macs"]) for row in rows) == lenet.total_macs

    from jaxvision.models import segmentation

    assert cli.main(["summary", "unet_small", "--num_classes=11", "--input_shape=64x64x1", "--format=json"]) == 0
    data = json.loads(capsys.readouterr().out)
    unet = models.summary(segmentation.create_segmentation_model("unet_small", num_classes=11), (64, 64, 1))
    assert data["total_params"] == unet.total_params and data["rows"][-1]["output_shape"] == [64, 64, 11]


@pytest.mark.parametrize(
    "args, message",
    [
        (["resnet18", "--input_shape=224,224"], "three positive sizes"),
        (["resnet18", "--input_shape=a,b,c"], "H,W,C"),
        (["resnet18", "--option=zero_init"], "KEY=VALUE"),
        (["resnet18", "--option=image_size=64"], "has no option 'image_size'"),
        (["resnet5"], "unknown model 'resnet5'; valid names: alexnet"),
        (["resnet18", "--depth=0"], "depth must be >= 1"),
    ],
)
def test_cli_summary_errors(args, message, capsys):
    from jaxvision import cli

    assert cli.main(["summary", *args]) == 2
    assert message in capsys.readouterr().err
