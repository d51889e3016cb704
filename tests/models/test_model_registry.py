"""Every registry entry: abstract init and forward, parameter counts, features; real forwards of
the cheap ones (jit, finite outputs, BatchNorm train/eval behaviour, bfloat16)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxvision.models as models
from jaxvision.models.summary import count_params

# torchvision's counts at 1,000 classes (`sum(p.numel() for p in m.parameters())`).
TORCHVISION_PARAMS = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "wide_resnet50_2": 68_883_240,
    "densenet121": 7_978_856,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "vit_b_16": 86_567_656,
    "vit_b_32": 88_224_232,
    "vit_l_16": 304_326_632,
    "vit_l_32": 306_535_400,
}
# Other published counts: the course's AlexNet (same layers as torchvision's), torchvision
# GoogLeNet with aux heads, timm's resnet50d / seresnet50 / vit_tiny / vit_small (1,000 classes).
OTHER_PARAMS_1000 = {
    "alexnet_227": 61_100_840,
    "googlenet_aux": 13_004_888,
    "resnet50d": 25_576_264,
    "se_resnet50": 28_088_024,
    "vit_ti_16": 5_717_416,
    "vit_s_16": 22_050_664,
}
# CIFAR models at 10 classes: He et al. 2016 ResNet-20/56 with option A (0.27M / 0.85M; exact
# counts as printed by akamaster/pytorch_resnet_cifar10) and kuangliu/pytorch-cifar's ResNet18.
CIFAR_PARAMS_10 = {"resnet20": 269_722, "resnet56": 853_018, "resnet18_cifar": 11_173_962}

CIFAR_SIZED = {"resnet20", "resnet56", "resnet18_cifar", "vit_cifar", "linear", "mlp", "lenet5", "lenet5_table"}
LEGACY = {"linear", "mlp", "lenet5", "lenet5_table"}  # the course's first classifiers: no stages
NO_STAGE4 = {"resnet20", "resnet56", "nin"}


def native_shape(name):
    return (2, *models.native_input_shape(name))


def abstract_init_and_apply(name, num_classes):
    model = models.create_model(name, num_classes=num_classes)
    images = jax.ShapeDtypeStruct(native_shape(name), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
    logits, features = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
    return variables, logits, features


@pytest.mark.parametrize("name", models.list_models())
def test_abstract_forward_shapes_features_and_parameter_count(name):
    num_classes = 10 if name in CIFAR_PARAMS_10 else 1000
    variables, logits, features = abstract_init_and_apply(name, num_classes=num_classes)
    assert logits.shape == (2, num_classes) and logits.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))
    expected_count = {**TORCHVISION_PARAMS, **OTHER_PARAMS_1000, **CIFAR_PARAMS_10}.get(name)
    if expected_count is not None:
        assert count_params(variables["params"]) == expected_count
    if name in LEGACY:
        assert "pre_logits" in features
        return
    expected = {"stem", "stage1", "stage2", "stage3", "pre_logits"}
    if name not in NO_STAGE4:
        expected.add("stage4")
    if name.startswith("vit"):
        expected.add("attention")
    assert expected <= set(features)
    assert features["pre_logits"].shape[0] == 2


@pytest.mark.parametrize("name", models.list_models())
def test_abstract_train_mode_forward(name, key):
    """Training mode traces too (dropout / drop path rngs, BatchNorm statistics as updates)."""
    model = models.create_model(name, num_classes=7)
    images = jax.ShapeDtypeStruct(native_shape(name), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(key, x, train=False), images)
    (logits, _), updates = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": key}),
        variables,
        images,
    )
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    assert jax.tree.structure(updates.get("batch_stats", {})) == jax.tree.structure(variables.get("batch_stats", {}))


def test_every_non_legacy_model_has_a_reference_or_shape_test():
    # Guards against a registry entry slipping through the count tests below unnoticed.
    counted = set(TORCHVISION_PARAMS) | set(OTHER_PARAMS_1000) | set(CIFAR_PARAMS_10)
    uncounted = set(models.list_models()) - counted - LEGACY
    assert uncounted == {"nin", "vit_ti_32", "vit_s_32", "vit_cifar"}


def test_parameter_names_follow_torchvision():
    variables, _, _ = abstract_init_and_apply("resnet50", num_classes=10)
    params = variables["params"]
    assert {"conv1", "bn1", "fc"} <= set(params)
    assert set(params["layer1_0"]) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample_conv", "downsample_bn"}
    assert "downsample_conv" not in params["layer1_1"]
    assert params["layer2_0"]["conv2"]["kernel"].shape == (3, 3, 128, 128)  # stride on the 3x3
    vit_params = abstract_init_and_apply("vit_b_16", num_classes=10)[0]["params"]
    assert vit_params["encoder_layer_0"]["self_attention"]["in_proj"]["kernel"].shape == (768, 2304)
    assert vit_params["pos_embedding"].shape == (1, 197, 768)
    dense_params = abstract_init_and_apply("densenet121", num_classes=10)[0]["params"]
    assert set(dense_params["denseblock1_denselayer1"]) == {"norm1", "conv1", "norm2", "conv2"}


def test_feature_strides_resnet50():
    _, _, features = abstract_init_and_apply("resnet50", num_classes=10)
    shapes = {k: features[k].shape for k in ("stem", "stage1", "stage2", "stage3", "stage4")}
    assert shapes == {
        "stem": (2, 56, 56, 64),
        "stage1": (2, 56, 56, 256),
        "stage2": (2, 28, 28, 512),
        "stage3": (2, 14, 14, 1024),
        "stage4": (2, 7, 7, 2048),
    }


def test_vit_attention_shape_and_stage_maps():
    _, _, features = abstract_init_and_apply("vit_b_16", num_classes=10)
    assert features["attention"].shape == (2, 12, 12, 197, 197)
    assert features["attention"].dtype == jnp.float32
    assert features["stage4"].shape == (2, 14, 14, 768)


def test_unknown_model_and_bad_num_classes():
    with pytest.raises(ValueError, match="unknown model"):
        models.create_model("resnet9000", num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        models.create_model("resnet18", num_classes=0)


def test_googlenet_aux_logits_only_in_training(key):
    model = models.create_model("googlenet_aux", num_classes=10)
    images = jnp.zeros((2, 64, 64, 3))
    variables = jax.eval_shape(lambda: model.init(key, images, train=False))
    assert {"aux1", "aux2"} <= set(variables["params"])
    _, eval_features = jax.eval_shape(lambda v: model.apply(v, images, train=False), variables)
    (_, train_features), _ = jax.eval_shape(
        lambda v: model.apply(v, images, train=True, mutable=["batch_stats"], rngs={"dropout": key}), variables
    )
    assert "aux1_logits" not in eval_features
    assert train_features["aux1_logits"].shape == (2, 10)
    assert train_features["aux2_logits"].dtype == jnp.float32


def test_vit_rejects_wrong_image_size(key):
    model = models.create_model("vit_cifar", num_classes=10)
    with pytest.raises(ValueError, match="32x32"):
        jax.eval_shape(lambda: model.init(key, jnp.zeros((1, 64, 64, 3)), train=False))


# ---- Real forwards, on cheap models and tiny inputs. ----

# Small members of each family that exercise the same code paths as the big ones.
CHEAP = {
    # ResNet-20's code path with one block per stage (ResNet-8); option B is checked abstractly.
    "resnet20": dict(name="resnet20", kwargs={"blocks_per_stage": 1}, size=16),
    "bottleneck_all_options": dict(
        name="resnet50",
        kwargs={
            "stage_sizes": (1, 1),
            "groups": 2,
            "deep_stem": True,
            "avg_down": True,
            "se_reduction": 16,
            "zero_init_last_bn": True,
        },
        size=32,
    ),
    "densenet_small": dict(name="densenet121", kwargs={"block_config": (2, 1)}, size=32),
    "vit_cifar": dict(name="vit_cifar", kwargs={}, size=32),
}


def _build(case, dtype=jnp.float32):
    spec = CHEAP[case]
    model = models.create_model(spec["name"], num_classes=10, dtype=dtype, **spec["kwargs"])
    images = jax.random.normal(jax.random.key(1), (2, spec["size"], spec["size"], 3))
    return model, images


@functools.cache
def _variables(case):
    """Real float32 variables of a CHEAP case, initialised once per session (compiles are slow)."""
    model, images = _build(case)
    return jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)


@pytest.mark.parametrize("case", sorted(CHEAP))
def test_real_forward_jit_finite_and_batchnorm_modes(case):
    model, images = _build(case)
    variables = _variables(case)
    apply_eval = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["batch_stats"]))
    (logits, features), eval_updates = apply_eval(variables, images)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()
    assert all(np.isfinite(np.asarray(f)).all() for f in jax.tree.leaves(features))

    apply_train = jax.jit(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)})
    )
    (train_logits, train_features), train_updates = apply_train(variables, images)
    assert np.isfinite(np.asarray(train_logits)).all()
    if "batch_stats" in variables:
        # Eval leaves the running statistics alone; training moves them.
        jax.tree.map(np.testing.assert_array_equal, eval_updates["batch_stats"], variables["batch_stats"])
        moved = jax.tree.map(
            lambda a, b: not np.array_equal(np.asarray(a), np.asarray(b)),
            train_updates["batch_stats"],
            variables["batch_stats"],
        )
        assert all(jax.tree.leaves(moved))
    if case == "vit_cifar":
        np.testing.assert_allclose(np.asarray(features["attention"]).sum(-1), 1.0, rtol=1e-5)


def test_jit_matches_eager(key):
    from jaxvision.models.resnet import BasicBlock

    block = BasicBlock(8, stride=2)  # conv, BatchNorm, projection shortcut
    images = jax.random.normal(key, (2, 8, 8, 4))
    variables = block.init(key, images, train=False)
    eager = block.apply(variables, images, train=False)
    jitted = jax.jit(lambda v, x: block.apply(v, x, train=False))(variables, images)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["resnet20", "vit_cifar"])
def test_bfloat16_compute_with_float32_params(case, key):
    model, images = _build(case)
    model16, _ = _build(case, dtype=jnp.bfloat16)
    variables = _variables(case)
    variables16 = jax.eval_shape(lambda x: model16.init(key, x, train=False), images)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables16))
    logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    logits16, features16 = jax.jit(lambda v, x: model16.apply(v, x, train=False))(variables, images)
    assert logits16.dtype == jnp.float32
    assert features16["stage1"].dtype == jnp.bfloat16
    scale = float(np.abs(np.asarray(logits)).max()) + 1e-3
    np.testing.assert_allclose(np.asarray(logits16), np.asarray(logits), atol=0.1 * scale)


def test_zero_init_last_bn():
    real = _variables("bottleneck_all_options")["params"]
    assert real["layer1_0"]["bn3"]["scale"].shape == (256,)
    assert not np.asarray(real["layer1_0"]["bn3"]["scale"]).any()
    assert np.asarray(real["layer1_0"]["bn1"]["scale"]).all()


def test_shortcut_a_has_no_projection_parameters(key):
    images = jnp.zeros((1, 32, 32, 3))
    params_a = jax.eval_shape(lambda: models.create_model("resnet20", num_classes=10).init(key, images, train=False))
    params_b = jax.eval_shape(
        lambda: models.create_model("resnet20", num_classes=10, shortcut="B").init(key, images, train=False)
    )
    assert "downsample_conv" not in params_a["params"]["layer2_0"]
    assert "downsample_conv" in params_b["params"]["layer2_0"]


def test_drop_path_needs_rng_only_when_training_with_positive_rate(key):
    images = jnp.ones((4, 32, 32, 3))
    model = models.create_model("resnet18_cifar", num_classes=10, stage_sizes=(1, 1, 1, 1), drop_path_rate=0.5)
    variables = jax.eval_shape(lambda: model.init(key, images, train=False))
    jax.eval_shape(lambda v: model.apply(v, images, train=False), variables)  # no rng needed
    with pytest.raises(Exception, match="dropout"):
        jax.eval_shape(lambda v: model.apply(v, images, train=True, mutable=["batch_stats"]), variables)
    no_drop = model.clone(drop_path_rate=0.0)
    jax.eval_shape(lambda v: no_drop.apply(v, images, train=True, mutable=["batch_stats"]), variables)


def test_drop_path_drops_whole_examples_and_rescales(key):
    from jaxvision.models.layers import DropPath

    x = jnp.ones((1000, 2, 2, 3))
    y = DropPath(0.25).apply({}, x, train=True, rngs={"dropout": key})
    per_example = np.asarray(y).reshape(1000, -1)
    assert np.all(np.isclose(per_example, 0.0) | np.isclose(per_example, 1.0 / 0.75))
    assert (per_example == per_example[:, :1]).all()
    assert abs(per_example.mean() - 1.0) < 0.1
    np.testing.assert_array_equal(DropPath(0.25).apply({}, x, train=False), x)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in models.list_models() if n not in LEGACY])
def test_real_forward_every_model(name, key):
    """Real init + forward of each registry entry on a small input (minutes on 2 CPU cores)."""
    size = {"nin": 96, "alexnet_227": 227}.get(name, 32 if name in CIFAR_SIZED else 64)
    kwargs = {}
    if name.startswith("vit") and name != "vit_cifar":
        kwargs["image_size"] = size
    model = models.create_model(name, num_classes=10, **kwargs)
    images = jax.random.normal(key, (1, size, size, 3))
    variables = jax.jit(lambda x: model.init(key, x, train=False))(images)
    logits, _ = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    assert logits.shape == (1, 10)
    assert np.isfinite(np.asarray(logits)).all()


def test_options_are_each_models_fields_and_others_are_refused_by_name():
    assert "drop_path_rate" in models.model_options(models.MODELS["resnet18"])
    assert {"image_size", "patch_size", "dropout_rate"} <= set(models.model_options(models.MODELS["vit_ti_16"]))
    assert "num_classes" not in models.model_options(models.MODELS["lenet5"])
    with pytest.raises(ValueError, match="model 'resnet18' has no option 'dropout_rate'.*its options: avg_down"):
        models.create_model("resnet18", num_classes=10, dropout_rate=0.1)
    from jaxvision.models.segmentation import create_segmentation_model

    with pytest.raises(ValueError, match="segmentation model 'unet_small' has no option 'blocks'.*its options: base_width, depth"):
        create_segmentation_model("unet_small", num_classes=3, blocks=4)


def test_native_input_shape():
    assert models.native_input_shape("lenet5") == (28, 28, 1)
    assert models.native_input_shape("resnet56") == (32, 32, 3)
    assert models.native_input_shape("alexnet_227") == (227, 227, 3)
    assert models.native_input_shape("resnet50") == (224, 224, 3)
    assert models.native_input_shape("vit_cifar") == (32, 32, 3)  # the registry entry's own default
    assert models.native_input_shape("vit_b_16", image_size=384) == (384, 384, 3)
    with pytest.raises(ValueError, match="unknown model 'vit'; valid names"):
        models.native_input_shape("vit")
