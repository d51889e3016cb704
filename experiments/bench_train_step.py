"""Train-step throughput of jaxvision against the same network in PyTorch, interleaved in one process.

    python experiments/bench_train_step.py --out=bench_results/train_step [--quick] [--skip-default-job]

Contenders (float32, batch 128, SGD with momentum 0.9, softmax cross-entropy, train mode):
  - jaxvision, 1 device: `make_train_step(config)` jitted with the state donated (the library's
    real step) on JAX's default single CPU device, which runs convolutions and dots on every core
    but XLA:CPU's elementwise fusions on one;
  - jaxvision, one device per core: the same step, the batch split over one CPU device per core on
    a 1-D `NamedSharding` mesh (what `jaxvision train` does on a CPU-only machine by default,
    `config.cpu_parallelism="devices"`, `jaxvision.training.cpu_devices`);
  - jaxvision, threads: the same step on one device with XLA:CPU's elementwise fusions on every
    core (`config.cpu_parallelism="threads"`, `jaxvision.training.cpu_fusions`), with the
    network's library convolution kernels (`config.cpu_convolutions`: XLA's Eigen ones for
    ResNet-18, as the CIFAR ResNet configs say; YNNPACK's, XLA's default, for LeNet-5). Its XLA
    flag is fixed when JAX starts, so this contender runs in a worker
    process that the main process asks for each repetition's steps and waits on: the contenders
    still alternate in time, and only one of them runs at once.
  - torch: the same architecture written below in PyTorch 2.13 (CPU), `zero_grad/backward/step`,
    one OpenMP thread per core.
Every process (the main one, torch included, and the worker) runs with `--cpu-allocator`, by default
"reuse", what `jaxvision train` sets (`config.cpu_allocator`, `jaxvision.training.cpu_allocator`):
glibc keeps freed memory for reuse, so neither library page-faults its per-step buffers in again.
Networks: LeNet-5 (table variant, 20/50 filters, FC 500) on 28x28x1 and ResNet-18 with a CIFAR stem
on 32x32x3. Parameter counts are checked equal before timing.

Protocol (shared/PERF.md): build inputs once, compile/warm up every contender (compile time
reported apart), then alternate A B A B ... for >= 7 repetitions of `--steps` steps each; report
the median and spread of images/s, the ratio jaxvision/torch (in bold: the setting the library uses
for that network), and a limit ratio: achieved FLOP/s
(XLA's cost analysis of the compiled step) over a large f32 matmul measured in the same process.
Also measures the time to accuracy of the default job (`jaxvision train`) in a subprocess.
Prints a markdown table and writes JSON to --out.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.cli import DEFAULT_CONFIG, load_config
from jaxvision.training import cpu_allocator, cpu_devices, machine as machine_lib
from jaxvision.training.dispatch import DispatchWindow

BATCH_SIZE = 128
# Versions recorded with the figures (jaxvision.training.machine): both sides of the comparison.
BENCH_PACKAGES = ("jax", "jaxlib", "flax", "optax", "torch")


def matmul_roofline(size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a jitted f32 `size`^3 matmul (best of `repeats`)."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    best = min(_timed(lambda: matmul(a, a).block_until_ready()) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------ jaxvision


def make_jax_contender(model_name: str, image_shape, num_devices: int):
    """The library's train step on a mesh of the first `num_devices` CPU devices."""
    from jaxvision import models
    from jaxvision.trainers.classification import make_train_step
    from jaxvision.training import optimizers, sharding
    from jaxvision.training.config import classification_config
    from jaxvision.training.state import create_train_state, parameter_count

    config = classification_config()
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.01
    config.optimizer.schedule = "constant"
    config.lock()
    model = models.create_model(model_name, num_classes=10)
    tx = optimizers.make_optimizer(config, optimizers.make_learning_rate_schedule(
        config, steps_per_epoch=100, num_steps=1000, global_batch_size=BATCH_SIZE))
    mesh = sharding.make_mesh(num_devices)
    state = sharding.replicate(create_train_state(jax.random.key(0), model, tx, image_shape), mesh)
    rng = np.random.default_rng(0)
    batch = sharding.shard_batch({
        "image": rng.normal(size=(BATCH_SIZE, *image_shape)).astype(np.float32),
        "label": rng.integers(0, 10, BATCH_SIZE).astype(np.int32),
    }, mesh)
    key = jax.random.key(1)
    step = jax.jit(make_train_step(config), donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state, batch, key).compile()
    compile_seconds = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    holder = {"state": state}

    def run(num_steps: int):
        current, window = holder["state"], DispatchWindow()  # as the library's loop dispatches
        for _ in range(num_steps):
            current, metrics = compiled(current, batch, key)
            window.admit(metrics)
        jax.block_until_ready((current, metrics))
        holder["state"] = current

    return run, compile_seconds, parameter_count(state.params), flops


class WorkerContender:
    """`make_jax_contender` in a fresh process whose JAX starts with `strategy`'s and
    `convolutions`' XLA settings (`cpu_devices.configure_cpu_parallelism`).

    `__call__(num_steps)` runs the steps there and returns when they are done, like the in-process
    contenders' `run`; the pipe round trip is well under a millisecond against steps of 50+ ms.
    """

    def __init__(self, model_name: str, image_shape, strategy: str, convolutions: str, allocator: str):
        env = {key: value for key, value in os.environ.items() if key not in cpu_devices.CPU_SETUP_VARIABLES}
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", model_name, strategy, convolutions, allocator,
             *map(str, image_shape)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        ready = self.process.stdout.readline()
        if not ready:
            raise RuntimeError(f"the {strategy} worker for {model_name} exited (code {self.process.wait()})")
        ready = json.loads(ready)
        self.compile_seconds, self.parameters = ready["compile_seconds"], ready["parameters"]
        self.xla_flags, self.num_devices = ready["xla_flags"], ready["num_devices"]

    def __call__(self, num_steps: int):
        self.process.stdin.write(f"{num_steps}\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "done":
            raise RuntimeError("the worker contender failed")

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def worker(model_name: str, strategy: str, convolutions: str, allocator: str, image_shape):
    """The worker side of `WorkerContender`: set up before JAX starts, then run steps on request."""
    cpu_allocator.configure_cpu_allocator(allocator)
    cpu_devices.configure_cpu_parallelism(strategy, 0, (BATCH_SIZE,), convolutions)
    run, compile_seconds, parameters, _ = make_jax_contender(model_name, image_shape, jax.device_count())
    run(2)
    print(json.dumps({"compile_seconds": compile_seconds, "parameters": parameters,
                      "xla_flags": os.environ.get("XLA_FLAGS", ""), "num_devices": jax.device_count()}), flush=True)
    for line in sys.stdin:
        run(int(line))
        print("done", flush=True)


# ---------------------------------------------------------------------------------------- torch


def torch_models():
    import torch
    from torch import nn

    class LeNet5Table(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 20, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(20, 50, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(50 * 7 * 7, 500), nn.ReLU(), nn.Linear(500, 10))

        def forward(self, x):
            return self.classifier(self.features(x))

    class BasicBlock(nn.Module):
        def __init__(self, in_planes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or in_planes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet18Cifar(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            layers, in_planes = [], 64
            for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                layers += [BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)]
                in_planes = planes
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(512, 10)

        def forward(self, x):
            x = self.layers(torch.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return {"lenet5_table": LeNet5Table, "resnet18_cifar": ResNet18Cifar}


def make_torch_contender(model_name: str, image_shape):
    import torch

    model = torch_models()[model_name]().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    height, width, channels = image_shape
    images = torch.from_numpy(rng.normal(size=(BATCH_SIZE, channels, height, width)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 10, BATCH_SIZE).astype(np.int64))

    def run(num_steps: int):
        for _ in range(num_steps):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()

    start = time.perf_counter()
    run(2)  # warm-up: allocator and oneDNN primitive caches
    warmup_seconds = time.perf_counter() - start
    return run, warmup_seconds, sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------ protocol


def benchmark_network(model_name, image_shape, *, jax_contenders, library_contender, convolutions, allocator,
                      repetitions, steps, roofline):
    """`jax_contenders`: contender name -> CPU devices in its mesh (the 1-device one first), plus
    "jaxvision_threads" in a worker process with `convolutions` (`config.cpu_convolutions`);
    `library_contender`: the one `jaxvision train` uses for the network."""
    runs, result = {}, {"model": model_name, "image_shape": list(image_shape), "batch_size": BATCH_SIZE,
                        "library_contender": library_contender}
    step_flops = None
    for name, num_devices in jax_contenders.items():
        runs[name], result[f"{name}_compile_seconds"], jax_params, flops = make_jax_contender(
            model_name, image_shape, num_devices)
        step_flops = step_flops or flops  # the 1-device module's count: the whole batch's work
        runs[name](2)
    threads = runs["jaxvision_threads"] = WorkerContender(model_name, image_shape, "threads", convolutions, allocator)
    result.update(jaxvision_threads_compile_seconds=threads.compile_seconds,
                  jaxvision_threads_xla_flags=threads.xla_flags)
    runs["torch"], result["torch_warmup_seconds"], torch_params = make_torch_contender(model_name, image_shape)
    if not jax_params == threads.parameters == torch_params:
        raise RuntimeError(f"{model_name}: parameter counts differ: jaxvision {jax_params} "
                           f"(threads worker {threads.parameters}), torch {torch_params}")
    result.update(parameters=jax_params, step_gflop=step_flops / 1e9,
                  num_devices={**jax_contenders, "jaxvision_threads": threads.num_devices})
    times = {name: [] for name in runs}
    for _ in range(repetitions):  # interleaved: A B C A B C ...
        for name, run in runs.items():
            times[name].append(_timed(lambda: run(steps)) / steps)
    threads.close()
    for name, values in times.items():
        values = np.asarray(values)
        result[f"{name}_images_per_second_median"] = BATCH_SIZE / float(np.median(values))
        result[f"{name}_images_per_second_min"] = BATCH_SIZE / float(values.max())
        result[f"{name}_images_per_second_max"] = BATCH_SIZE / float(values.min())
    for name in [*jax_contenders, "jaxvision_threads"]:
        result[f"ratio_{name}_over_torch"] = (
            result[f"{name}_images_per_second_median"] / result["torch_images_per_second_median"]
        )
        achieved = step_flops / float(np.median(times[name]))
        result[f"{name}_limit_ratio"] = achieved / roofline if step_flops else None
    return result


def markdown(rows, per_core: int) -> str:
    contenders = {"jaxvision_1_device": "1 device", "jaxvision_per_core": f"{per_core} devices",
                  "jaxvision_threads": "threads"}

    def images_per_second(row, name):
        return (f"{row[f'{name}_images_per_second_median']:,.0f} ({row[f'{name}_images_per_second_min']:,.0f}-"
                f"{row[f'{name}_images_per_second_max']:,.0f})")

    def ratio(row, name):
        text = f"{row[f'ratio_{name}_over_torch']:.2f}x"
        return f"**{text}**" if name == row["library_contender"] else text

    lines = [
        "\n| network | params | " + " | ".join(f"jaxvision {label} img/s" for label in contenders.values())
        + " | torch img/s | " + " | ".join(f"ratio {label}" for label in contenders.values())
        + " | limit ratio " + " / ".join(contenders.values()) + " | compile s " + " / ".join(contenders.values()) + " |",
        "|---" * (4 + 2 * len(contenders)) + "|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['parameters']:,} | "
            + " | ".join(images_per_second(row, name) for name in contenders)
            + f" | {images_per_second(row, 'torch')} | "
            + " | ".join(ratio(row, name) for name in contenders)
            + " | " + " / ".join(f"{row[f'{name}_limit_ratio']:.2f}" for name in contenders)
            + " | " + " / ".join(f"{row[f'{name}_compile_seconds']:.1f}" for name in contenders) + " |"
        )
    return "\n".join(lines)


def default_job(workdir: str) -> dict:
    """Run `jaxvision train` (defaults) in a subprocess; wall time includes start-up and compiles."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jaxvision.cli", "train", f"--workdir={workdir}"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total = time.perf_counter() - start
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    return {"test_accuracy": results["test_accuracy"], "train_wall_seconds": results["wall_time_seconds"],
            "process_wall_seconds": total, "num_steps": results["num_steps"]}


def main():
    if sys.argv[1:2] == ["--worker"]:  # WorkerContender's process: model, strategy, convolutions, allocator, image shape
        return worker(*sys.argv[2:6], tuple(int(size) for size in sys.argv[6:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_results/train_step")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and steps")
    parser.add_argument("--skip-default-job", action="store_true")
    parser.add_argument("--networks", default="lenet5_table,resnet18_cifar", help="comma-separated subset")
    parser.add_argument("--cpu-allocator", default="reuse", choices=cpu_allocator.CPU_ALLOCATORS,
                        help="host malloc setting of every process, torch's included (config.cpu_allocator)")
    args = parser.parse_args()
    allocator_applied = cpu_allocator.configure_cpu_allocator(args.cpu_allocator)
    # Before any JAX operation: one CPU device per core, as many as split the batch (as `jaxvision
    # train` does); the 1-device contender uses the first, which still runs its convolutions on every core.
    cpu_devices.configure_cpu_devices(0, (BATCH_SIZE,))
    jax_contenders = {"jaxvision_1_device": 1, "jaxvision_per_core": jax.device_count()}
    import torch

    torch.set_num_threads(os.cpu_count())
    repetitions = 7 if args.quick else 11
    roofline = matmul_roofline()
    machine = machine_lib.describe_machine(packages=BENCH_PACKAGES)
    print(f"machine: {machine_lib.machine_line(machine)}")
    print(f"devices: {jax.devices()[0].device_kind} x{jax.device_count()}; cpu_allocator {args.cpu_allocator} "
          f"({'applied' if allocator_applied else 'malloc unchanged'}); f32 matmul roofline {roofline / 1e9:.1f} GFLOP/s")
    networks = {  # name: (image shape, steps per timed repetition (quick, full), the config that trains it)
        "lenet5_table": ((28, 28, 1), (10, 20), DEFAULT_CONFIG),
        "resnet18_cifar": ((32, 32, 3), (1, 2), "cifar10_resnet18_recipe"),
    }
    chosen = args.networks.split(",")
    if unknown := sorted(set(chosen) - set(networks)):
        parser.error(f"unknown networks {unknown}; valid: {', '.join(networks)}")
    rows = []
    for name in chosen:
        image_shape, steps, config_name = networks[name]
        config = load_config(config_name)  # the library's CPU setting for the network
        rows.append(benchmark_network(
            name, image_shape, jax_contenders=jax_contenders, convolutions=config.cpu_convolutions,
            allocator=args.cpu_allocator,
            library_contender="jaxvision_threads" if config.cpu_parallelism == "threads" else "jaxvision_per_core",
            repetitions=repetitions, steps=steps[0 if args.quick else 1], roofline=roofline))
    print(markdown(rows, jax_contenders["jaxvision_per_core"]))
    report = {"machine": machine, "roofline_flops": roofline, "jax": jax.__version__, "torch": torch.__version__,
              "cpu_allocator": args.cpu_allocator, "cpu_allocator_applied": allocator_applied, "networks": rows}
    if not args.skip_default_job:
        job = default_job(tempfile.mkdtemp(prefix="jaxvision_default_job_"))
        report["default_job"] = job
        print(f"\ndefault job (`jaxvision train`): test accuracy {job['test_accuracy']:.4f} in "
              f"{job['process_wall_seconds']:.1f} s wall (process, incl. start-up and compiles), {job['num_steps']} steps")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_train_step.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
