"""End to end: the CLI, determinism, resume after SIGKILL, SIGTERM, data parallel, multi-process,
and bad input. Subprocess scenarios live in scenarios.py next to this file."""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxvision import cli
from jaxvision.trainers import classification
from jaxvision.training import cpu_devices, cpu_fusions

SCENARIOS = os.path.join(os.path.dirname(__file__), "scenarios.py")
SMOKE_ARGS = ["train", "--config=digits_lenet:smoke", "--config.checkpoint.every_steps=4"]


def run_python(args, *, env_extra=None, timeout=300, check=True):
    """Run Python in a new process on one CPU device (the count the in-process runs have, so their
    fingerprints compare) unless `env_extra` sets JAX_NUM_CPU_DEVICES (None: the CLI's default)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1", **(env_extra or {})}
    env = {name: value for name, value in env.items() if value is not None}
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nSTDOUT:\n{result.stdout[-3000:]}\nSTDERR:\n{result.stderr[-3000:]}")
    return result


def smoke_cli_args(workdir, data_dir):
    return [*SMOKE_ARGS, f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}"]


def read_results(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def restored_state(workdir, like=None):
    """The newest checkpointed state of `workdir`; `like` (a restored state) gives the target
    shapes for restoring a checkpoint written with another topology onto this single device."""
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    path = os.path.join(workdir, "checkpoints", str(steps[-1]), "state")
    target = None
    if like is not None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), like)
    return ocp.StandardCheckpointer().restore(path, target)


def flat_params(state):
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(state["params"])[0]}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, digits_data_dir):
    """An uninterrupted smoke run through the CLI, in its own process."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    result = run_python(["-m", "jaxvision.cli", *smoke_cli_args(workdir, digits_data_dir)])
    return workdir, result


def test_cli_train_writes_every_artifact(reference_run):
    workdir, result = reference_run
    assert "test accuracy" in result.stdout
    results = read_results(workdir)
    assert results["num_steps"] == 12 and len(results["params_fingerprint"]) == 64
    assert 0.0 <= results["test_accuracy"] <= 1.0 and results["wall_time_seconds"] > 0
    # What a bitwise reproduction must match besides the config: devices, XLA flags, processor, jaxlib.
    assert results["machine"]["jax"] == jax.__version__ and results["machine"]["accelerator"] == "cpu"
    assert results["machine"]["logical_cores"] == os.cpu_count() and results["machine"]["cpu_model"]
    for name in ("config.json", "metrics.jsonl", "learning_curves.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir))
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert {r["split"] for r in records} == {"train", "test"}
    assert [r["step"] for r in records if r["split"] == "test"] == [6, 12]
    steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
    assert steps[-1] == 12 and len(steps) <= 4  # latest 3 + best


def test_same_seed_gives_bitwise_identical_parameters(reference_run, smoke_config, tmp_path):
    results = classification.train_and_evaluate(smoke_config, str(tmp_path), show_progress=False)
    assert results["params_fingerprint"] == read_results(reference_run[0])["params_fingerprint"]


def test_other_seed_gives_other_parameters(reference_run, smoke_config, tmp_path):
    smoke_config.seed = 1
    results = classification.train_and_evaluate(smoke_config, str(tmp_path), show_progress=False)
    assert results["params_fingerprint"] != read_results(reference_run[0])["params_fingerprint"]


def test_resume_after_sigkill_is_bitwise_identical(reference_run, digits_data_dir, tmp_path):
    workdir = str(tmp_path)
    killed = run_python([SCENARIOS, "kill-after-checkpoint", "8", "--", *smoke_cli_args(workdir, digits_data_dir)],
                        check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    resumed = run_python(["-m", "jaxvision.cli", *smoke_cli_args(workdir, digits_data_dir)])
    assert "test accuracy" in resumed.stdout
    assert read_results(workdir)["params_fingerprint"] == read_results(reference_run[0])["params_fingerprint"]
    # The resumed run logged steps 9..12 only once more, not from scratch.
    train_steps = [json.loads(l)["step"] for l in open(os.path.join(workdir, "metrics.jsonl")) if '"train"' in l]
    assert train_steps == sorted(train_steps)


def test_sigterm_saves_a_checkpoint_and_exits(digits_data_dir, tmp_path):
    workdir = str(tmp_path)
    result = run_python([SCENARIOS, "sigterm-at-step", "6", "--", *smoke_cli_args(workdir, digits_data_dir)],
                        check=False)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "interrupted" in result.stderr
    assert "6" in os.listdir(os.path.join(workdir, "checkpoints"))


def test_eight_devices_match_one_device(tmp_path):
    out = str(tmp_path / "dp.npz")
    run_python([SCENARIOS, "data-parallel", out], env_extra={"JAX_NUM_CPU_DEVICES": "8"})
    arrays = np.load(out)
    np.testing.assert_allclose(arrays["8/losses"], arrays["1/losses"], atol=1e-5, rtol=1e-5)
    assert bool(arrays["restored_on_1/params_equal"])  # 8-device checkpoint restored onto 1 device
    names = [k[2:] for k in arrays.files if k.startswith("1/") and k != "1/losses"]
    assert any("BatchNorm" in n for n in names)
    for name in names:
        np.testing.assert_allclose(arrays[f"8/{name}"], arrays[f"1/{name}"], atol=1e-5, rtol=1e-5, err_msg=name)


def test_cli_default_splits_the_batch_over_one_cpu_device_per_core(reference_run, digits_data_dir, tmp_path):
    """With no count pinned, `jaxvision train` exposes one CPU device per core (as many as divide the
    batch sizes) and trains the same model as on one device, up to float32 rounding."""
    workdir = str(tmp_path)
    result = run_python(["-m", "jaxvision.cli", *smoke_cli_args(workdir, digits_data_dir)],
                        env_extra={"JAX_NUM_CPU_DEVICES": None})
    expected = cpu_devices.automatic_cpu_device_count((64, 500), cpu_devices.usable_cores())
    assert f"on {expected} CPU device" in result.stdout
    results, reference = read_results(workdir), read_results(reference_run[0])
    assert results["num_devices"] == expected and results["num_steps"] == reference["num_steps"]
    assert results["test_loss"] == pytest.approx(reference["test_loss"], abs=1e-4)
    reference_params = flat_params(restored_state(reference_run[0]))
    params = flat_params(restored_state(workdir, like=restored_state(reference_run[0])))
    for name in reference_params:
        np.testing.assert_allclose(params[name], reference_params[name], atol=1e-4, err_msg=name)


def test_cli_threads_and_eigen_convolutions_train_on_one_device(reference_run, digits_data_dir, tmp_path):
    """`--config.cpu_parallelism=threads --config.cpu_convolutions=eigen` (the CIFAR ResNet
    configs' setting): one CPU device, YNNPACK elementwise fusions and XLA's Eigen convolutions
    (recorded in results.json), the same model as XLA's defaults up to float32 rounding."""
    workdir = str(tmp_path)
    result = run_python(["-m", "jaxvision.cli", *smoke_cli_args(workdir, digits_data_dir),
                         "--config.cpu_parallelism=threads", "--config.cpu_convolutions=eigen"],
                        env_extra=dict.fromkeys(cpu_devices.CPU_SETUP_VARIABLES))
    fusion_types = cpu_fusions.ynn_fusion_types("threads", "eigen")
    flag = f"{cpu_fusions.YNN_FUSION_FLAG}={fusion_types}"
    assert f"on 1 CPU device (XLA:CPU YNNPACK fusions: {fusion_types})" in result.stdout
    results, reference = read_results(workdir), read_results(reference_run[0])
    assert results["xla_flags"] == flag and flag not in reference["xla_flags"]
    assert results["num_devices"] == 1 and results["num_steps"] == reference["num_steps"]
    reference_params = flat_params(restored_state(reference_run[0]))
    params = flat_params(restored_state(workdir))
    for name in reference_params:
        np.testing.assert_allclose(params[name], reference_params[name], atol=1e-4, err_msg=name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(digits_data_dir, tmp_path):
    common = ["train", "--config=digits_lenet:smoke", "--config.num_train_steps=3", "--config.batch_size=16",
              "--config.eval_every_steps=3", f"--config.dataset.data_dir={digits_data_dir}"]
    single = str(tmp_path / "single")
    run_python(["-m", "jaxvision.cli", *common, f"--workdir={single}"])
    multi = str(tmp_path / "multi")
    port = free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1"}
    processes = [
        subprocess.Popen([sys.executable, SCENARIOS, "multiprocess", str(i), "2", str(port), "--", *common,
                          f"--workdir={multi}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    single_results, multi_results = read_results(single), read_results(multi)
    assert multi_results["num_devices"] == 2 and multi_results["num_steps"] == 3
    assert multi_results["test_loss"] == pytest.approx(single_results["test_loss"], abs=1e-5)
    single_state = restored_state(single)
    single_params, multi_params = flat_params(single_state), flat_params(restored_state(multi, like=single_state))
    for name in single_params:
        np.testing.assert_allclose(multi_params[name], single_params[name], atol=1e-5, err_msg=name)


# ----------------------------------------------------------------------------------- bad input


def test_nan_loss_names_the_step_and_keeps_earlier_checkpoints(smoke_config, tmp_path, monkeypatch):
    from jaxvision.data import pipeline

    original = pipeline.make_train_iterator

    class PoisonAtFifthBatch:
        def __init__(self, inner):
            self.inner, self.count = inner, 0

        def __iter__(self):
            return self

        def __next__(self):
            batch = next(self.inner)
            self.count += 1
            if self.count == 5:
                batch = {**batch, "image": np.full_like(batch["image"], np.nan)}
            return batch

        def get_state(self):
            return self.inner.get_state()

        def set_state(self, state):
            self.inner.set_state(state)

    monkeypatch.setattr(pipeline, "make_train_iterator", lambda *a, **k: PoisonAtFifthBatch(original(*a, **k)))
    smoke_config.checkpoint.every_steps = 4
    smoke_config.log_every_steps = 100
    with pytest.raises(classification.NonFiniteLossError, match="at step 5"):
        classification.train_and_evaluate(smoke_config, str(tmp_path), show_progress=False)
    assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()) == [4]


def good_batch():
    return {"image": np.zeros((4, 28, 28, 1), np.float32), "label": np.array([0, 1, 2, 9], np.int32)}


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"image": np.zeros((4, 28, 28), np.float32)}, ValueError, r"shape \[B, H, W, C\]"),
        ({"image": np.zeros((4, 32, 32, 1), np.float32)}, ValueError, "per-image shape"),
        ({"image": np.zeros((4, 28, 28, 1), np.uint8)}, TypeError, "floating point"),
        ({"label": np.array([0, 1, 2, 10], np.int32)}, ValueError, r"must be in \[0, 10\)"),
        ({"label": np.array([0, -1, 2, 3], np.int32)}, ValueError, r"must be in \[0, 10\)"),
        ({"label": np.zeros(4, np.float32)}, TypeError, "integers"),
    ],
)
def test_bad_batches_get_clear_errors(change, error, message):
    with pytest.raises(error, match=message):
        classification.check_batch({**good_batch(), **change}, image_shape=(28, 28, 1), num_classes=10)


def test_train_step_rejects_wrong_rank_at_trace_time(smoke_config):
    from jaxvision import models
    from jaxvision.training.state import create_train_state
    import optax

    model = models.create_model("lenet5", num_classes=10)
    state = create_train_state(jax.random.key(0), model, optax.sgd(0.1), (28, 28, 1))
    step = jax.jit(classification.make_train_step(smoke_config))
    with pytest.raises(ValueError, match="images must have shape"):
        step(state, {"image": jnp.zeros((4, 28, 28)), "label": jnp.zeros(4, jnp.int32)}, jax.random.key(1))


def test_mixed_precision_step_keeps_float32_params_and_metrics(smoke_config):
    from jaxvision import models
    from jaxvision.training.state import create_train_state
    import optax

    model = models.create_model("lenet5", num_classes=10, dtype=jnp.bfloat16)
    state = create_train_state(jax.random.key(0), model, optax.sgd(0.1), (28, 28, 1))
    batch = {"image": jnp.ones((4, 28, 28, 1)), "label": jnp.arange(4, dtype=jnp.int32)}
    logits, _ = model.apply(state.variables, batch["image"], train=False)
    assert logits.dtype == jnp.float32
    new_state, metrics = jax.jit(classification.make_train_step(smoke_config))(state, batch, jax.random.key(1))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(new_state.params))
    assert metrics["loss"][0].dtype == jnp.float32 and bool(jnp.isfinite(metrics["loss"][0]))


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--config=no_such_config"], "unknown config 'no_such_config'; valid names: .*digits_lenet"),
        (["train", "--config=digits_lenet:smoke", "--config.optimzer.name=sgd"], "valid keys: .*optimizer"),
        (["train", "--config=digits_lenet:smoke", "--config.model=resnet9000"], "unknown model 'resnet9000'; valid names: .*lenet5"),
        (["train", "--config=digits_lenet:smoke", "--config.dataset.name=imagenet"], "unknown data set 'imagenet'"),
        (["train", "--config=digits_lenet:smoke", "--config.batch_size=big"], "bad value for config key 'batch_size'"),
        # digits_lenet's model_kwargs (dropout_rate) do not fit a ResNet: named, with the valid options.
        (["train", "--config=digits_lenet:smoke", "--config.model=resnet18"],
         "model 'resnet18' has no option 'dropout_rate' .*its options: avg_down, .*drop_path_rate"),
        (["train", "--config=digits_lenet:smoke", "--config.model_kwargs=[1]"], "expected a dict literal"),
    ],
)
def test_cli_rejects_unknown_names_listing_valid_ones(args, message, capsys, tmp_path, digits_data_dir):
    code = cli.main([*args, f"--workdir={tmp_path}", f"--config.dataset.data_dir={digits_data_dir}"])
    assert code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_model_kwargs_take_any_option_of_the_chosen_model():
    config = cli.apply_overrides(cli.load_config("digits_lenet:smoke"), [
        "model=resnet18", "model_kwargs={}", "model_kwargs.drop_path_rate=0.1", "model_kwargs.cifar_stem=True",
    ])  # fmt: skip
    assert config.model_kwargs.to_dict() == {"drop_path_rate": 0.1, "cifar_stem": True}
    config = cli.apply_overrides(cli.load_config("digits_lenet:smoke"), ["model_kwargs.dropout_rate=0.25"])
    assert config.model_kwargs.dropout_rate == 0.25
    with pytest.raises(ValueError, match="unknown config key 'optimizer.nme': optimizer has no 'nme'"):
        cli.apply_overrides(cli.load_config("digits_lenet:smoke"), ["optimizer.nme=sgd"])


def test_cli_missing_dataset_offline(capsys, tmp_path):
    code = cli.main(["train", "--config=digits_lenet:smoke", "--config.dataset.name=cifar10",
                     f"--config.dataset.data_dir={tmp_path}", f"--workdir={tmp_path / 'w'}"])
    assert code == 2
    assert "jaxvision prepare cifar10" in capsys.readouterr().err


def test_cli_list_and_eval(reference_run, capsys):
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "lenet5_table" in listing and "embedded_digits" in listing and "digits_lenet" in listing
    assert cli.main(["eval", f"--workdir={reference_run[0]}"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["step"] == 12
    assert evaluated["test_accuracy"] == pytest.approx(read_results(reference_run[0])["test_accuracy"], abs=1e-6)


def test_on_device_augmentation_runs_in_the_step_without_callbacks(smoke_config):
    from jaxvision import models
    from jaxvision.training.state import create_train_state
    import optax

    smoke_config.augment.random_crop_padding = 2
    smoke_config.augment.affine_degrees = 10.0
    smoke_config.augment.mixup_alpha = 0.2
    smoke_config.augment.cutmix_alpha = 1.0
    model = models.create_model("lenet5", num_classes=10)
    state = create_train_state(jax.random.key(0), model, optax.sgd(0.1), (28, 28, 1))
    step = classification.make_train_step(smoke_config, mean=np.array([0.13]), std=np.array([0.31]), num_classes=10)
    batch = {"image": jnp.ones((4, 28, 28, 1)), "label": jnp.arange(4, dtype=jnp.int32)}
    jaxpr = str(jax.make_jaxpr(step)(state, batch, jax.random.key(1)))
    assert "callback" not in jaxpr
    first, metrics = jax.jit(step)(state, batch, jax.random.key(1))
    again, _ = jax.jit(step)(state, batch, jax.random.key(1))
    assert bool(jnp.isfinite(metrics["loss"][0]))
    assert all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(again.params)))
    with pytest.raises(ValueError, match="needs mean, std and num_classes"):
        classification.make_train_step(smoke_config)
