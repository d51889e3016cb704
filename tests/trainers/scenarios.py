"""Training scenarios run in a separate Python process by tests/trainers/test_classification.py.

    python scenarios.py kill-after-checkpoint STEP -- CLI_ARGS...   # SIGKILL right after step STEP is saved
    python scenarios.py sigterm-at-step STEP -- CLI_ARGS...         # SIGTERM to itself during step STEP
    python scenarios.py data-parallel OUT_NPZ                       # 1 vs 8 devices (needs 8 CPU devices)
    python scenarios.py multiprocess PROCESS_ID NUM_PROCESSES PORT -- CLI_ARGS...
"""

import os
import signal
import sys


def kill_after_checkpoint(step: int, cli_args):
    from jaxvision import cli
    from jaxvision.training import checkpoint

    original_save = checkpoint.Checkpointer.save

    def save_then_die(self, current_step, *args, **kwargs):
        original_save(self, current_step, *args, **kwargs)
        if current_step == step:
            self.wait()
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.Checkpointer.save = save_then_die
    return cli.main(cli_args)


def sigterm_at_step(step: int, cli_args):
    from jaxvision import cli
    from jaxvision.trainers import classification

    original_check = classification.check_batch
    calls = {"count": 0}

    def check_then_signal(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_check(*args, **kwargs)

    classification.check_batch = check_then_signal
    return cli.main(cli_args)


def data_parallel(out_path: str):
    """Train a BatchNorm + dropout net 5 steps on a 1-device and an 8-device mesh."""
    import flax.linen as nn
    import jax
    import numpy as np
    import optax

    from jaxvision.trainers.classification import make_train_step
    from jaxvision.training import sharding
    from jaxvision.training.config import classification_config
    from jaxvision.training.state import create_train_state

    assert jax.device_count() == 8, jax.devices()

    class BatchNormDropoutNet(nn.Module):
        num_classes: int = 10

        @nn.compact
        def __call__(self, images, *, train):
            x = nn.Conv(8, (3, 3), use_bias=False)(images)
            x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
            x = x.mean(axis=(1, 2))
            x = nn.Dropout(0.3, deterministic=not train)(x)
            return nn.Dense(self.num_classes)(x), {"pre_logits": x}

    config = classification_config()
    config.lock()
    rng = np.random.default_rng(0)
    batches = [
        {"image": rng.normal(size=(16, 8, 8, 1)).astype(np.float32), "label": rng.integers(0, 10, 16).astype(np.int32)}
        for _ in range(5)
    ]
    results = {}
    for num_devices in (1, 8):
        mesh = sharding.make_mesh(num_devices)
        model = BatchNormDropoutNet()
        tx = optax.adam(1e-2)
        state = jax.jit(lambda k: create_train_state(k, model, tx, (8, 8, 1)),
                        out_shardings=sharding.replicated_sharding(mesh))(jax.random.key(0))
        step = jax.jit(make_train_step(config), donate_argnums=0)
        losses = []
        for batch in batches:
            state, metrics = step(state, sharding.shard_batch(batch, mesh), jax.random.key(1))
            losses.append(float(metrics["loss"][0] / metrics["loss"][1]))
        flat = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(
            {"params": state.params, "batch_stats": state.batch_stats})[0]}
        results.update({f"{num_devices}/{k}": v for k, v in flat.items()})
        results[f"{num_devices}/losses"] = np.asarray(losses)
        if num_devices == 8:
            # Save on the 8-device mesh, restore onto a 1-device mesh through an abstract target.
            from jaxvision.training.checkpoint import Checkpointer

            checkpointer = Checkpointer(os.path.join(os.path.dirname(out_path), "ckpt"))
            checkpointer.save(5, state, {"next_index": 5})
            checkpointer.wait()
            one_device = sharding.replicated_sharding(sharding.make_mesh(1))
            abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=one_device), state)
            restored, _, _ = checkpointer.restore(abstract)
            checkpointer.close()
            assert all(leaf.sharding.num_devices == 1 for leaf in jax.tree.leaves(restored))
            results["restored_on_1/params_equal"] = np.asarray(all(
                np.array_equal(np.asarray(a), np.asarray(b))
                for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state))
            ))
    np.savez(out_path, **results)


def multiprocess(process_id: int, num_processes: int, port: int, cli_args):
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id
    )
    from jaxvision import cli

    return cli.main(cli_args)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    cli_args = arguments[arguments.index("--") + 1:] if "--" in arguments else []
    head = arguments[: arguments.index("--")] if "--" in arguments else arguments
    scenario = head[0]
    if scenario == "kill-after-checkpoint":
        sys.exit(kill_after_checkpoint(int(head[1]), cli_args))
    if scenario == "sigterm-at-step":
        sys.exit(sigterm_at_step(int(head[1]), cli_args))
    if scenario == "data-parallel":
        sys.exit(data_parallel(head[1]))
    if scenario == "multiprocess":
        sys.exit(multiprocess(int(head[1]), int(head[2]), int(head[3]), cli_args))
    raise SystemExit(f"unknown scenario {scenario!r}")
