"""timm ViT weights in jaxvision ViTs: names and shapes against timm's own models, logits of a
converted random ViT-Ti/16 against timm's, round trips, refused variants, and position-embedding
resampling.

timm imports torchvision, whose compiled operators do not load beside the CPU torch; importing it
through `experiments/torchvision_import.py` first (as the torchvision tests do) makes that work.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxvision import models
from jaxvision.models import timm_weights, torchvision_weights, vit
from jaxvision.training import pretrained

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def timm():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "experiments"))
    from torchvision_import import torchvision_models

    torchvision_models()
    return pytest.importorskip("timm")


def _randomized(torch_model, seed):
    """The model's state_dict with every entry redrawn (timm initialises biases, class token and
    LayerNorms to constants, under which swapped names would not show in the logits)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        key: (0.5 * torch.randn(value.shape, generator=generator) / max(1, value.shape[-1]) ** 0.25).numpy()
        for key, value in torch_model.state_dict().items()
    }


_ARCHITECTURES = [
    ("vit_ti_16", "vit_tiny_patch16_224", {}),
    ("vit_ti_16", "deit_tiny_patch16_224", {}),
    ("vit_s_16", "vit_small_patch16_224", {}),
    ("vit_s_32", "vit_small_patch32_224", {}),
    ("vit_b_16", "vit_base_patch16_384", {"image_size": 384}),
    ("vit_l_32", "vit_large_patch32_224", {}),
]


@pytest.mark.parametrize("name,architecture,kwargs", _ARCHITECTURES, ids=[case[1] for case in _ARCHITECTURES])
def test_every_timm_key_maps_to_one_jaxvision_leaf_of_the_same_size(timm, name, architecture, kwargs):
    with torch.device("meta"):  # shapes only
        state_dict = timm.create_model(architecture, pretrained=False, num_classes=1000).state_dict()
    renamed = timm_weights.timm_to_torchvision(state_dict)
    model = models.create_model(name, num_classes=1000, **kwargs)
    size = kwargs.get("image_size", 224)
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
    leaves = traverse_util.flatten_dict(template["params"])
    assert sum(int(np.prod(leaf.shape)) for leaf in leaves.values()) == sum(v.numel() for v in state_dict.values())
    names = torchvision_weights.torchvision_names(name, template)
    by_key = {key: leaves[path[1:]].shape for path, key in names.items()}
    assert by_key.keys() == renamed.keys()
    for key, value in renamed.items():
        assert int(np.prod(by_key[key])) == value.numel(), key


@pytest.fixture(scope="module")
def random_vit_tiny(timm):
    """`(timm model, state_dict)`: timm's vit_tiny_patch16_224 with every weight redrawn, eval mode."""
    torch_model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    state_dict = _randomized(torch_model, seed=1)
    torch_model.load_state_dict({key: torch.from_numpy(value) for key, value in state_dict.items()})
    return torch_model, state_dict


def test_converted_random_vit_tiny_gives_timms_logits(random_vit_tiny):
    torch_model, state_dict = random_vit_tiny
    images = np.random.default_rng(2).normal(size=(2, 224, 224, 3)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    variables = timm_weights.from_timm("vit_ti_16", state_dict)
    model = models.create_model("vit_ti_16", num_classes=1000)
    logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(images))
    assert logits.shape == expected.shape == (2, 1000)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_round_trip_is_exact_and_timm_loads_it_strictly(timm, random_vit_tiny):
    _, state_dict = random_vit_tiny
    back = timm_weights.to_timm("vit_ti_16", timm_weights.from_timm("vit_ti_16", state_dict))
    assert back.keys() == state_dict.keys()
    for key, value in state_dict.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    fresh = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    fresh.load_state_dict({key: torch.from_numpy(value) for key, value in back.items()}, strict=True)


def test_a_384_checkpoint_loads_at_its_own_image_size(random_vit_tiny):
    _, state_dict = random_vit_tiny
    at_384 = {**state_dict, "pos_embed": np.asarray(vit.resample_position_embedding(state_dict["pos_embed"], 1 + 24 * 24))}
    variables = timm_weights.from_timm("vit_ti_16", at_384)  # image_size read from pos_embed
    np.testing.assert_array_equal(variables["params"]["pos_embedding"], at_384["pos_embed"])
    with pytest.raises(ValueError, match="does not fit"):
        timm_weights.from_timm("vit_ti_16", at_384, image_size=224)


@pytest.mark.parametrize(
    "kwargs,named",
    [
        ({"init_values": 1e-5}, "layer scale"),
        ({"reg_tokens": 4}, "register tokens"),
        ({"global_pool": "avg", "fc_norm": True}, "fc_norm"),
        ({"qk_norm": True}, "q/k normalisation"),
    ],
)
def test_timm_variants_that_are_other_networks_are_refused_by_name(timm, kwargs, named):
    with torch.device("meta"):
        state_dict = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs).state_dict()
    with pytest.raises(ValueError, match=named):
        timm_weights.from_timm("vit_ti_16", state_dict)


def test_a_torchvision_state_dict_is_not_taken_for_a_timm_one():
    assert not timm_weights.is_timm_vit({"conv_proj.weight": np.zeros((1,))})
    with pytest.raises(ValueError, match="not a timm ViT"):
        timm_weights.timm_to_torchvision({"conv_proj.weight": np.zeros((1,))})
    with pytest.raises(ValueError, match="'fc.weight' is not a torchvision ViT key"):
        timm_weights.torchvision_to_timm({"fc.weight": np.zeros((1,))})


def test_resampling_keeps_the_class_token_and_same_size_and_follows_a_smooth_grid():
    side, dim = 14, 3
    centres = (np.arange(side) + 0.5) / side
    smooth = lambda c: np.stack(np.broadcast_arrays(  # noqa: E731
        np.sin(2 * c[:, None]), np.cos(3 * c[None, :]), c[:, None] * c[None, :]), axis=-1)  # fmt: skip
    pos = np.concatenate([np.full((1, dim), 7.0), smooth(centres).reshape(-1, dim)])[None].astype(np.float32)
    np.testing.assert_allclose(vit.resample_position_embedding(pos, 1 + side * side), pos, atol=1e-6)
    for new_side in (7, 24):
        resized = np.asarray(vit.resample_position_embedding(pos, 1 + new_side * new_side))
        assert resized.shape == (1, 1 + new_side * new_side, dim)
        np.testing.assert_array_equal(resized[0, 0], pos[0, 0])
        # Away from the border (where the kernel's edge weights renormalise) the grid follows the
        # function sampled at the new pixel centres.
        expected = smooth((np.arange(new_side) + 0.5) / new_side)
        inner = slice(new_side // 4, new_side - new_side // 4)
        got = resized[0, 1:].reshape(new_side, new_side, dim)
        np.testing.assert_allclose(got[inner, inner], expected[inner, inner], atol=0.03)
    with pytest.raises(ValueError, match="square patch grids"):
        vit.resample_position_embedding(pos, 1 + 10 * 11)


def test_merge_loads_a_timm_file_into_a_smaller_gray_vit(random_vit_tiny):
    """The CLI's path (`pretrained.merge_weights`): a 224 RGB checkpoint into a 32x32 one-channel
    ViT-Ti/16 with 10 classes: blocks bitwise, stem summed over RGB, position embedding resampled
    to the 2x2 grid, the run's own head."""
    _, state_dict = random_vit_tiny
    run = jax.jit(lambda k: models.create_model("vit_ti_16", num_classes=10, image_size=32).init(
        k, jnp.zeros((1, 32, 32, 1)), train=False))(jax.random.key(3))  # fmt: skip
    params, batch_stats = pretrained.merge_weights("vit_ti_16", state_dict, run["params"], {}, num_classes=10)
    assert batch_stats == {}
    np.testing.assert_array_equal(params["encoder_layer_5"]["mlp_fc1"]["kernel"], state_dict["blocks.5.mlp.fc1.weight"].T)
    np.testing.assert_allclose(
        params["conv_proj"]["kernel"], state_dict["patch_embed.proj.weight"].transpose(2, 3, 1, 0).sum(2, keepdims=True),
        rtol=1e-6,
    )  # fmt: skip
    assert params["pos_embedding"].shape == (1, 5, 192)
    np.testing.assert_array_equal(params["pos_embedding"][0, 0], state_dict["pos_embed"][0, 0])
    np.testing.assert_array_equal(params["head"]["kernel"], run["params"]["head"]["kernel"])
