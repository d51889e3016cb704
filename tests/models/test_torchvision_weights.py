"""torchvision weights in jaxvision models: every name and shape against torchvision's own model
definitions, logits of converted random models against torchvision's, round trips, files and errors.

torchvision (0.28, the release paired with torch 2.13) is imported for its pure-Python model
definitions only, through `experiments/torchvision_import.py` (its compiled operators are built for
CUDA torch and do not load beside the CPU torch). No test here uses torchvision.ops.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxvision import models
from jaxvision.models import torchvision_weights

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tv_models():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "experiments"))
    from torchvision_import import torchvision_models

    return torchvision_models()


def _torchvision_model(tv_models, name, **kwargs):
    if name.startswith("googlenet"):
        kwargs.update(aux_logits=name.endswith("_aux"), init_weights=False, transform_input=False)
    return getattr(tv_models, name.removesuffix("_aux"))(**kwargs)


def _randomized_state_dict(torch_model, seed):
    """Default init plus random BatchNorm affine and running statistics, so eval-mode BN is not the
    identity and a swapped mean/var or scale/bias would show in the logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in torch_model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                size = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(size, generator=generator))
                module.bias.copy_(0.2 * torch.randn(size, generator=generator))
                module.running_mean.copy_(0.2 * torch.randn(size, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
    return {key: value.numpy() for key, value in torch_model.state_dict().items()}


@pytest.mark.parametrize("name", torchvision_weights.TORCHVISION_MODELS)
def test_every_torchvision_key_maps_to_one_jaxvision_leaf_of_the_same_size(tv_models, name):
    with torch.device("meta"):  # shapes only: no memory for vit_l_16's 300M parameters
        expected = {
            key: tuple(value.shape)
            for key, value in _torchvision_model(tv_models, name).state_dict().items()
            if not key.endswith("num_batches_tracked")
        }
    template = torchvision_weights._template(name, {"num_classes": 1000})
    names = torchvision_weights.torchvision_names(name, template)
    assert len(set(names.values())) == len(names)
    assert set(names.values()) == set(expected)
    zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32), template)
    converted = torchvision_weights.to_torchvision(name, zeros)
    assert {k: v.shape for k, v in converted.items() if not k.endswith("num_batches_tracked")} == expected


# Sizes chosen so that each adaptive pool has work to do where the net has one (AlexNet 96 -> 2x2
# map pooled to 6x6, VGG 64 -> 2x2 to 7x7) and compiles stay small.
_LOGIT_CASES = [
    ("alexnet", 96, {}),
    ("vgg11_bn", 64, {}),
    ("googlenet", 64, {}),
    ("resnet18", 48, {}),
    ("resnext50_32x4d", 32, {}),
    ("densenet121", 32, {}),
    ("vit_b_16", 32, {"image_size": 32, "hidden_dim": 48, "depth": 4, "num_heads": 4, "mlp_dim": 96}),
]


@pytest.mark.parametrize("name,size,vit_kwargs", _LOGIT_CASES, ids=[case[0] for case in _LOGIT_CASES])
def test_converted_random_torchvision_model_gives_torchvisions_logits(tv_models, name, size, vit_kwargs):
    torch.manual_seed(0)
    if vit_kwargs:
        torch_model = tv_models.VisionTransformer(
            image_size=size, patch_size=16, num_layers=vit_kwargs["depth"], num_heads=vit_kwargs["num_heads"],
            hidden_dim=vit_kwargs["hidden_dim"], mlp_dim=vit_kwargs["mlp_dim"], num_classes=10,
        )  # fmt: skip
    else:
        torch_model = _torchvision_model(tv_models, name, num_classes=10)
    state_dict = _randomized_state_dict(torch_model.eval(), seed=1)
    images = np.random.default_rng(2).normal(size=(2, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()

    variables = torchvision_weights.from_torchvision(name, state_dict, **vit_kwargs)
    model = models.create_model(name, num_classes=10, **vit_kwargs)
    logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(images))

    assert logits.shape == expected.shape == (2, 10)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-4 * scale)


def test_round_trip_is_exact_and_torch_loads_it_strictly(tv_models):
    torch_model = _torchvision_model(tv_models, "resnet18", num_classes=7)
    state_dict = _randomized_state_dict(torch_model, seed=3)
    variables = torchvision_weights.from_torchvision("resnet18", state_dict)
    assert variables["params"]["fc"]["kernel"].shape == (512, 7)  # num_classes read from the checkpoint
    back = torchvision_weights.to_torchvision("resnet18", variables)
    for key, value in state_dict.items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(back[key], value, err_msg=key)
    fresh = _torchvision_model(tv_models, "resnet18", num_classes=7)
    fresh.load_state_dict({key: torch.from_numpy(value) for key, value in back.items()}, strict=True)


def test_flattened_fc6_rows_reorder_from_chw_to_hwc():
    """AlexNet fc6 input column (c, h, w) in torch must land on row (h, w, c) in jaxvision."""
    template = torchvision_weights._template("alexnet", {"num_classes": 10})
    state_dict = torchvision_weights.to_torchvision("alexnet", jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32), template))
    channel, row, column, unit = 5, 2, 4, 7
    weight = np.zeros((4096, 256 * 6 * 6), np.float32)
    weight[unit, channel * 36 + row * 6 + column] = 1.0
    state_dict["classifier.1.weight"] = weight
    kernel = torchvision_weights.from_torchvision("alexnet", state_dict)["params"]["fc6"]["kernel"]
    assert kernel.reshape(6, 6, 256, 4096)[row, column, channel, unit] == 1.0
    assert kernel.sum() == 1.0


def test_googlenet_skips_the_untrained_auxiliary_heads_that_googlenet_aux_loads(tv_models):
    torch_model = _torchvision_model(tv_models, "googlenet_aux", num_classes=5)
    state_dict = {key: value.numpy() for key, value in torch_model.state_dict().items()}
    plain = torchvision_weights.from_torchvision("googlenet", state_dict)
    with_aux = torchvision_weights.from_torchvision("googlenet_aux", state_dict)
    assert "aux1" not in plain["params"] and "aux1" in with_aux["params"]
    np.testing.assert_array_equal(
        with_aux["params"]["aux2"]["fc2"]["kernel"], state_dict["aux2.fc2.weight"].T
    )


def _resnet18_state_dict():
    template = torchvision_weights._template("resnet18", {"num_classes": 10})
    zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32), template)
    return torchvision_weights.to_torchvision("resnet18", zeros)


def test_mismatched_checkpoints_name_what_is_wrong():
    state_dict = _resnet18_state_dict()
    with pytest.raises(ValueError, match=r"missing \['layer1.2.bn1.bias', .*\(80\), unexpected \[\]"):
        torchvision_weights.from_torchvision("resnet34", state_dict)
    extra = dict(state_dict, **{"layer5.0.conv1.weight": np.zeros((1, 1, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"unexpected \['layer5.0.conv1.weight'\]"):
        torchvision_weights.from_torchvision("resnet18", extra)
    wrong = dict(state_dict, **{"conv1.weight": np.zeros((64, 3, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"conv1.weight: converted shape \(3, 3, 3, 64\)"):
        torchvision_weights.from_torchvision("resnet18", wrong)
    with pytest.raises(ValueError, match="model .resnet50d. has no torchvision counterpart.*resnet18"):
        torchvision_weights.from_torchvision("resnet50d", state_dict)
    headless = {key: value for key, value in state_dict.items() if not key.startswith("fc.")}
    with pytest.raises(ValueError, match="pass num_classes"):
        torchvision_weights.from_torchvision("resnet18", headless)
    with pytest.raises(ValueError, match="has 10 classes, not num_classes=3: pass new_classifier_key"):
        torchvision_weights.from_torchvision("resnet18", state_dict, num_classes=3)


@pytest.mark.parametrize("name,classifiers", [
    ("resnet18", {"fc": "fc."}),
    ("googlenet_aux", {"fc": "fc.", "aux1/fc2": "aux1.fc2.", "aux2/fc2": "aux2.fc2."}),
])  # fmt: skip
def test_new_classifier_key_loads_all_but_a_freshly_initialised_classifier(tv_models, name, classifiers):
    state_dict = _randomized_state_dict(_torchvision_model(tv_models, name, num_classes=7), seed=5)
    key = jax.random.key(6)
    variables = torchvision_weights.from_torchvision(name, state_dict, num_classes=3, new_classifier_key=key)

    model = models.create_model(name, num_classes=3)
    # 96x96, not the 64x64 from_torchvision initialises at: the classifier must not depend on it.
    fresh = jax.jit(lambda x: model.init(key, x, train=False))(jnp.zeros((1, 96, 96, 3)))
    ours, theirs = traverse_util.flatten_dict(variables["params"]), traverse_util.flatten_dict(fresh["params"])
    for module in classifiers:
        path = tuple(module.split("/"))
        assert ours[path + ("kernel",)].shape[-1] == 3
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(ours[path + (leaf,)], theirs[path + (leaf,)])
        assert np.abs(ours[path + ("kernel",)]).sum() > 0  # the initialiser's numbers, not a zero stand-in
    # Everything else is the checkpoint's.
    prefixes = tuple(classifiers.values())
    back = torchvision_weights.to_torchvision(name, variables)
    for torch_key, value in state_dict.items():
        if not torch_key.startswith(prefixes) and not torch_key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(back[torch_key], value, err_msg=torch_key)
    # A headless checkpoint (a feature extractor) loads the same way.
    headless = {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}
    again = torchvision_weights.from_torchvision(name, headless, num_classes=3, new_classifier_key=key)
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)


def test_weights_files_load_without_running_code(tmp_path):
    from safetensors.numpy import save_file
    state_dict = _resnet18_state_dict()
    state_dict["conv1.weight"] = np.random.default_rng(0).normal(size=(64, 3, 7, 7)).astype(np.float32)
    expected = state_dict["conv1.weight"].transpose(2, 3, 1, 0)

    save_file(state_dict, str(tmp_path / "resnet18.safetensors"))
    torch.save({key: torch.from_numpy(value) for key, value in state_dict.items()}, tmp_path / "resnet18.pth")
    for filename in ("resnet18.safetensors", "resnet18.pth"):
        variables = torchvision_weights.load_torchvision_weights("resnet18", tmp_path / filename)
        np.testing.assert_array_equal(variables["params"]["conv1"]["kernel"], expected)

    class Payload:  # a pickle that would run code; weights_only loading refuses it
        def __reduce__(self):
            return (print, ("ran code from a checkpoint",))

    torch.save({"conv1.weight": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="(?i)weights.only|unsupported"):
        torchvision_weights.load_torchvision_weights("resnet18", tmp_path / "evil.pth")
    torch.save({"model": {"conv1.weight": torch.zeros(1)}, "epoch": 3}, tmp_path / "training_checkpoint.pth")
    with pytest.raises(ValueError, match="is not a state_dict"):
        torchvision_weights.load_torchvision_weights("resnet18", tmp_path / "training_checkpoint.pth")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        torchvision_weights.load_torchvision_weights("resnet18", tmp_path / "absent.pth")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown weights format"):
        torchvision_weights.load_torchvision_weights("resnet18", tmp_path / "weights.npz")


def test_batch_stats_and_params_split_like_flax_batch_norm(tv_models):
    state_dict = _randomized_state_dict(_torchvision_model(tv_models, "resnet18", num_classes=3), seed=4)
    variables = torchvision_weights.from_torchvision("resnet18", state_dict)
    flat = traverse_util.flatten_dict(variables)
    np.testing.assert_array_equal(flat[("batch_stats", "bn1", "var")], state_dict["bn1.running_var"])
    np.testing.assert_array_equal(flat[("params", "layer2_0", "downsample_bn", "scale")], state_dict["layer2.0.downsample.1.weight"])
