"""Starting runs from torchvision weights (`config.init_from`) and the linear probe
(`config.trainable = "classifier"`): what is loaded, what is kept, what learns."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util
from jax import lax
from safetensors.numpy import save_file

from jaxvision.cli import load_config
from jaxvision.models import create_model, timm_weights, torchvision_weights, vit
from jaxvision.trainers import classification
from jaxvision.training import loop, pretrained


def _conv(images, kernel):
    dimension_numbers = ("NHWC", "HWIO", "NHWC")
    return lax.conv_general_dilated(images, kernel, (1, 1), "SAME", dimension_numbers=dimension_numbers)


def test_gray_kernel_gives_the_rgb_kernels_outputs_on_a_gray_image(key):
    gray = jax.random.normal(key, (2, 9, 9, 1))
    rgb_kernel = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (3, 3, 3, 5)))
    gray_kernel = pretrained.adapt_input_channels(rgb_kernel, 1)
    assert gray_kernel.shape == (3, 3, 1, 5)
    np.testing.assert_allclose(_conv(gray, gray_kernel), _conv(jnp.tile(gray, (1, 1, 1, 3)), rgb_kernel), atol=1e-5)


def test_other_channel_counts_repeat_and_rescale():
    rgb_kernel = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    five = pretrained.adapt_input_channels(rgb_kernel, 5)
    np.testing.assert_array_equal(five, np.concatenate([rgb_kernel, rgb_kernel[:, :, :2]], axis=2) * 0.6)
    np.testing.assert_array_equal(pretrained.adapt_input_channels(rgb_kernel, 3), rgb_kernel)
    with pytest.raises(ValueError, match="RGB conv kernel"):
        pretrained.adapt_input_channels(rgb_kernel[:, :, :2], 1)


@pytest.fixture(scope="module")
def published_resnet18(tmp_path_factory):
    """`(variables, path)`: a resnet18 (1000 classes, random weights) saved as torchvision's
    `state_dict` in a .safetensors file, standing in for a published checkpoint."""
    model = create_model("resnet18", num_classes=1000)
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, 32, 3)), train=False))(jax.random.key(7))
    path = str(tmp_path_factory.mktemp("weights") / "resnet18.safetensors")
    save_file(torchvision_weights.to_torchvision("resnet18", variables), path)
    return jax.device_get(variables), path


def _flat(tree):
    return traverse_util.flatten_dict(jax.device_get(tree))


def test_merge_loads_every_layer_adapts_the_stem_and_keeps_a_new_classifier(published_resnet18):
    published, path = published_resnet18
    run = create_model("resnet18", num_classes=10).init(jax.random.key(1), jnp.zeros((1, 28, 28, 1)), train=False)
    params, batch_stats = pretrained.merge_weights(
        "resnet18", torchvision_weights.read_state_dict(path), run["params"], run["batch_stats"], num_classes=10
    )
    loaded, original, own = _flat(params), _flat(published["params"]), _flat(run["params"])
    assert loaded.keys() == own.keys()
    np.testing.assert_allclose(loaded[("conv1", "kernel")], original[("conv1", "kernel")].sum(2, keepdims=True), rtol=1e-6)
    for path_ in (("layer1_0", "conv1", "kernel"), ("layer4_1", "bn2", "scale")):
        np.testing.assert_array_equal(loaded[path_], original[path_])
    for path_ in (("fc", "kernel"), ("fc", "bias")):  # 10 classes, not 1000: the run's own init
        np.testing.assert_array_equal(loaded[path_], own[path_])
    for path_, value in _flat(batch_stats).items():
        np.testing.assert_array_equal(value, _flat(published["batch_stats"])[path_])


def test_same_classes_load_the_published_classifier(published_resnet18):
    published, path = published_resnet18
    run = create_model("resnet18", num_classes=1000).init(jax.random.key(1), jnp.zeros((1, 32, 32, 3)), train=False)
    params, _ = pretrained.merge_weights(
        "resnet18", torchvision_weights.read_state_dict(path), run["params"], run["batch_stats"], num_classes=1000
    )
    np.testing.assert_array_equal(params["fc"]["kernel"], published["params"]["fc"]["kernel"])


def test_weights_of_another_architecture_are_refused(published_resnet18):
    _, path = published_resnet18
    run = jax.eval_shape(
        lambda: create_model("resnet34", num_classes=10).init(jax.random.key(1), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    with pytest.raises(ValueError, match="missing"):
        pretrained.merge_weights("resnet34", torchvision_weights.read_state_dict(path), run["params"],
                                 run["batch_stats"], num_classes=10)


def _probe_config(digits_data_dir, weights_path, trainable):
    config = load_config("digits_lenet:smoke")
    config.dataset.data_dir = digits_data_dir
    config.model = "resnet18"
    config.model_kwargs = {}
    config.init_from = weights_path
    config.trainable = trainable
    config.batch_size, config.num_train_steps, config.eval_every_steps = 16, 2, 2
    config.optimizer.weight_decay = 0.1  # must not reach the frozen backbone either
    return config


def test_linear_probe_trains_only_the_classifier_from_the_published_weights(
    published_resnet18, digits_data_dir, tmp_path
):
    published, path = published_resnet18
    results = classification.train_and_evaluate(
        _probe_config(digits_data_dir, path, "classifier"), str(tmp_path), show_progress=False
    )
    assert results["num_steps"] == 2
    state = ocp.StandardCheckpointer().restore(str(tmp_path / "checkpoints" / "2" / "state"))
    trained, original = _flat(state["params"]), _flat(published["params"])
    np.testing.assert_array_equal(trained[("conv1", "kernel")], original[("conv1", "kernel")].sum(2, keepdims=True))
    for path_, value in trained.items():
        if path_[0] != "fc" and path_ != ("conv1", "kernel"):
            np.testing.assert_array_equal(value, original[path_], err_msg=str(path_))
    for path_, value in _flat(state["batch_stats"]).items():  # inference mode: statistics unchanged
        np.testing.assert_array_equal(value, _flat(published["batch_stats"])[path_], err_msg=str(path_))
    initial = _flat(create_model("resnet18", num_classes=10).init(
        jax.random.fold_in(jax.random.key(0), loop.INIT_PURPOSE), jnp.zeros((1, 28, 28, 1)), train=False)["params"])  # fmt: skip
    assert trained[("fc", "kernel")].shape == (512, 10)
    assert not np.array_equal(trained[("fc", "kernel")], initial[("fc", "kernel")])


def test_bad_transfer_settings_name_the_key(digits_data_dir, published_resnet18, tmp_path):
    _, path = published_resnet18
    config = _probe_config(digits_data_dir, path, "backbone")
    with pytest.raises(ValueError, match="unknown config.trainable 'backbone'; valid: all, classifier"):
        classification.build_experiment(config)
    config = _probe_config(digits_data_dir, path, "all")
    config.model = "lenet5"
    with pytest.raises(ValueError, match="config.init_from needs a model with torchvision or timm weights; 'lenet5'"):
        classification.build_experiment(config)
    config = _probe_config(digits_data_dir, path, "all")
    config.input_size = -1
    with pytest.raises(ValueError, match=r"config.input_size must be >= 0 \(0: the data set's size\), got -1"):
        classification.build_experiment(config)
    config = _probe_config(digits_data_dir, str(tmp_path / "absent.pth"), "all")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        classification.train_and_evaluate(config, str(tmp_path / "run"), show_progress=False)


def test_a_timm_vit_file_probes_digits_resized_to_its_patch_grid(digits_data_dir, tmp_path):
    """A ViT-Ti/16 (1000 classes, random weights) saved as timm's `state_dict`, probed on the 28x28
    gray digits resized to 32x32 (`config.input_size`): the blocks load bitwise, the stem is summed
    over RGB, the position embedding resampled from 14x14 to the 2x2 grid, only the head learns."""
    published = jax.jit(lambda k: create_model("vit_ti_16", num_classes=1000).init(
        k, jnp.zeros((1, 224, 224, 3)), train=False))(jax.random.key(5))  # fmt: skip
    path = str(tmp_path / "model.safetensors")
    save_file(timm_weights.to_timm("vit_ti_16", published), path)
    config = _probe_config(digits_data_dir, path, "classifier")
    config.model = "vit_ti_16"
    config.model_kwargs = {"image_size": 32}
    config.input_size = 32
    results = classification.train_and_evaluate(config, str(tmp_path / "run"), show_progress=False)
    assert results["num_steps"] == 2
    state = ocp.StandardCheckpointer().restore(str(tmp_path / "run" / "checkpoints" / "2" / "state"))
    trained, original = _flat(state["params"]), _flat(published["params"])
    np.testing.assert_array_equal(trained[("encoder_layer_7", "mlp_fc2", "kernel")],
                                  original[("encoder_layer_7", "mlp_fc2", "kernel")])
    np.testing.assert_allclose(trained[("conv_proj", "kernel")],
                               original[("conv_proj", "kernel")].sum(2, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(trained[("pos_embedding",)],
                               vit.resample_position_embedding(original[("pos_embedding",)], 5), rtol=1e-6)
    assert trained[("head", "kernel")].shape == (192, 10)
    assert np.abs(trained[("head", "kernel")]).sum() > 0  # a zero-initialised head that learned
    # `jaxvision eval` rebuilds the resizing model from the workdir's config.json.
    evaluated = classification.evaluate_workdir(str(tmp_path / "run"))
    assert evaluated["test_accuracy"] == pytest.approx(results["test_accuracy"])
