"""Forward and train-step throughput of jaxvision's ResNet-50 and ViT-B/16 against the same
networks in PyTorch, interleaved in one process.

    python experiments/bench_models.py --out=bench_results/models [--quick]

CPU (default; this machine: 2 cores, PyTorch 2.13 CPU): float32, batch 8 (`--batch`), 224x224.
Contenders per network: jaxvision's model and torchvision's, with the same weights (jaxvision's
converted by `jaxvision.models.torchvision_weights.to_torchvision` and loaded strictly; logits
checked to agree before timing):
  - jaxvision forward: `jax.jit(model.apply)` in eval mode;
  - torch forward: `model.eval()` under `torch.inference_mode()`;
  - jaxvision train step: softmax cross-entropy, SGD momentum 0.9 (optax), BatchNorm in train
    mode with `mutable=["batch_stats"]`, jitted with params/opt state donated;
  - torch train step: `model.train()`, `zero_grad / backward / step` with `torch.optim.SGD`.
Parameter counts of the two implementations are checked equal.

On CPU each network runs with the library's setting for it (`CPU_SETTINGS`; set before JAX starts,
so with several networks each runs in its own process, one after the other): XLA's Eigen
convolutions (`config.cpu_convolutions="eigen"`, `jaxvision.training.cpu_fusions`) for both;
ResNet-50 on one CPU device, ViT-B/16 with the batch split over one CPU device per core
(`config.cpu_parallelism="devices"`, what `jaxvision train` does by default). `--cpu-devices` and
`--cpu-convolutions` override them. The process, torch included, runs with `--cpu-allocator`, by
default "reuse" as `jaxvision train` sets it (`config.cpu_allocator`,
`jaxvision.training.cpu_allocator`: glibc keeps freed memory, so per-step buffers are not
page-faulted in again every step).

GPU (when both jax and torch see one): the "gpu" recipe: bfloat16 compute (float32 parameters,
BatchNorm statistics, logits and loss), batch 256; jaxvision's ViT with cuDNN's fused attention
(`attention_implementation="cudnn"`, the XLA form where cuDNN refuses: `jax_model_options`); torch
runs channels_last under `torch.autocast(bfloat16)` and `torch.compile`. `--recipe=gpu` runs that
recipe on the CPU too (at `--batch`, e.g. 2): how a session without a GPU checks the GPU code path end to end, torch.compile
included (`experiments/gpu_session.sh` is the one command for a session that has a GPU). The
agreement check allows 5e-2 under bf16 (8 bits of mantissa; with `--recipe=gpu` on the CPU,
at batch 2, the bf16 logits differed from float32 torch's by 5.2e-3 of their largest for ResNet-50
and 1.2e-2 for ViT-B/16). Not yet run on a GPU: no session has been lent one.

Protocol (shared/PERF.md): inputs built once; every contender compiled and warmed up first
(compile time reported apart); then A B A B ... for `--reps` repetitions (>= 7 on CPU, >= 20 on
GPU); median and spread (min-max) of images/s, the ratio jaxvision/torch, and a limit ratio:
achieved FLOP/s (analytic: `jaxvision.models.summary` MACs x 2, x 3 for a train step) over a
large matmul measured in the same process at start-up (the faster of XLA's and MKL's on CPU).
Prints a markdown table, writes JSON:
`--out/results.json` is rewritten after every repetition with the figures so far ("complete":
false, each row's "reps" counting them) and finally with all of them, so a run stopped at a time
limit keeps what it timed.
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

# PyTorch's OpenMP threads spin-wait by default; on a shared 2-core machine a spinning thread that
# loses its core stalls every barrier, and torch ran ~5x slower than alone (measured 1.2 vs 6.7
# ResNet-50 img/s at batch 2). Passive waiting is the fair setting for the peer here. Must be set
# before torch (and its OpenMP runtime) is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from torchvision_import import torchvision_models  # noqa: E402

import jaxvision.models as models  # noqa: E402
from jaxvision.models import torchvision_weights  # noqa: E402
from jaxvision.models.summary import count_params  # noqa: E402
from jaxvision.training import cpu_allocator, cpu_devices, cpu_fusions, sharding  # noqa: E402
from jaxvision.training import machine as machine_lib  # noqa: E402

NETWORKS = ("resnet50", "vit_b_16")
# network: (CPU devices, 0 = one per core; config.cpu_convolutions). Batch 8, 224x224, 2 cores,
# alternating processes: Eigen convolutions lift ResNet-50's train step from 4.06 to 4.44-4.79
# images/s (ViT-B/16 equal); two devices slow ResNet-50 (4.41 vs 5.00, 3.97 vs 4.84) and lift
# ViT-B/16 (1.46 vs 1.41, 1.51 vs 1.33).
CPU_SETTINGS = {"resnet50": (1, "eigen"), "vit_b_16": (0, "eigen")}


def on_gpu() -> bool:
    return jax.default_backend() == "gpu" and torch.cuda.is_available()


def _sync():
    if on_gpu():
        torch.cuda.synchronize()


def timed(function) -> float:
    start = time.perf_counter()
    function()
    _sync()
    return time.perf_counter() - start


def matmul_roofline(gpu: bool) -> float:
    """FLOP/s of the best large matmul in this process: f32 4096^3 on CPU, bf16 8192^3 on GPU.

    The larger of XLA's and PyTorch's (MKL on CPU, cuBLAS on GPU), best of 3 each on CPU and of 10 on
    GPU (random data: zeros ran 13% faster on an H200 here). On CPU XLA's Eigen matmul alone (64
    GFLOP/s at 2048^3 here) ran below what ViT-B/16 itself reached, so it is no ceiling.
    """
    size, dtype, repeats = (8192, jnp.bfloat16, 10) if gpu else (4096, jnp.float32, 3)
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    best = min(timed(lambda: matmul(a, a).block_until_ready()) for _ in range(repeats))
    b = torch.randn(size, size, device="cuda" if gpu else "cpu", dtype=torch.bfloat16 if gpu else torch.float32)
    torch.mm(b, b)
    best = min(best, min(timed(lambda: torch.mm(b, b)) for _ in range(repeats)))
    return 2 * size**3 / best


# ------------------------------------------------------------------------------------ jaxvision


def make_jax_contenders(name, variables, images, labels, dtype, options):
    """Forward and train step on all of JAX's devices: the batch split over them, weights replicated.
    `options`: create_model keyword arguments (e.g. ViT's attention_implementation)."""
    model = models.create_model(name, num_classes=1000, dtype=dtype, **options)
    mesh = sharding.make_mesh()
    images, labels = sharding.shard_batch({"images": images, "labels": labels}, mesh).values()
    variables = sharding.replicate(variables, mesh)
    tx = optax.sgd(1e-3, momentum=0.9)

    @jax.jit
    def forward(variables, images):
        logits, _ = model.apply(variables, images, train=False)
        return logits

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(variables, opt_state, images, labels):
        def loss_fn(params):
            (logits, _), updates = model.apply(
                {**variables, "params": params}, images, train=True, mutable=["batch_stats"]
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
        param_updates, opt_state = tx.update(grads, opt_state, variables["params"])
        params = optax.apply_updates(variables["params"], param_updates)
        return {**variables, **updates, "params": params}, opt_state, loss

    compile_seconds = {}
    start = time.perf_counter()
    forward_compiled = forward.lower(variables, images).compile()
    compile_seconds["forward"] = time.perf_counter() - start
    train_variables = jax.tree.map(jnp.copy, variables)
    opt_state = tx.init(train_variables["params"])
    start = time.perf_counter()
    train_compiled = train_step.lower(train_variables, opt_state, images, labels).compile()
    compile_seconds["train"] = time.perf_counter() - start
    carry = {"variables": train_variables, "opt_state": opt_state}

    def run_forward():
        forward_compiled(variables, images).block_until_ready()

    def run_train():
        carry["variables"], carry["opt_state"], loss = train_compiled(
            carry["variables"], carry["opt_state"], images, labels
        )
        loss.block_until_ready()

    return run_forward, run_train, compile_seconds, lambda: forward_compiled(variables, images)


# ---------------------------------------------------------------------------------------- torch


def make_torch_module(name, variables):
    """torchvision's model holding jaxvision's weights."""
    module = getattr(torchvision_models(), name)(num_classes=1000)
    state_dict = torchvision_weights.to_torchvision(name, variables)
    module.load_state_dict({key: torch.from_numpy(value) for key, value in state_dict.items()}, strict=True)
    return module


def make_torch_contenders(module, images, labels, gpu, recipe):
    """`recipe` "gpu": channels_last, bf16 autocast and torch.compile (on whichever device); "cpu": eager f32."""
    device = "cuda" if gpu else "cpu"
    fast = recipe == "gpu"
    module = module.to(device)
    x = torch.from_numpy(np.array(images, dtype=np.float32)).permute(0, 3, 1, 2).contiguous().to(device)
    y = torch.from_numpy(np.array(labels)).long().to(device)
    if fast:
        module = module.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    compile_seconds = {}
    forward_module = torch.compile(module) if fast else module
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    autocast = functools.partial(torch.autocast, device_type=device, dtype=torch.bfloat16, enabled=fast)

    def run_forward():
        module.eval()
        with torch.inference_mode(), autocast():
            forward_module(x)
        _sync()

    def run_train():
        module.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(forward_module(x).float(), y)
        loss.backward()
        optimizer.step()
        _sync()

    # First calls (torch.compile traces here on GPU) count as compile/warm-up time.
    compile_seconds["forward"] = timed(run_forward)
    compile_seconds["train"] = timed(run_train)
    return run_forward, run_train, compile_seconds


# ---------------------------------------------------------------------------------------- bench


def check_agreement(jax_logits, images, torch_module, max_images: int = 8) -> float:
    """Max |logit difference| / max |logit| between jaxvision's logits (eval mode, any dtype/device)
    and torch's float32 ones on the CPU, over the first `max_images` images (the CPU forward of a
    whole GPU batch would take longer than the benchmark)."""
    jax_logits = np.asarray(jax_logits[:max_images], dtype=np.float32)
    torch_module.eval()
    with torch.inference_mode():
        x = torch.from_numpy(np.array(images[:max_images], dtype=np.float32)).permute(0, 3, 1, 2).contiguous()
        torch_logits = torch_module(x).numpy()
    return float(np.abs(jax_logits - torch_logits).max() / (np.abs(torch_logits).max() + 1e-12))


def spread(times, batch):
    rates = sorted(batch / t for t in times)
    return {"median": statistics.median(rates), "min": rates[0], "max": rates[-1]}


# Largest relative logit difference allowed between the two implementations, per recipe.
AGREEMENT_TOLERANCE = {"cpu": 1e-4, "gpu": 5e-2}


def jax_model_options(name, recipe):
    """create_model options for jaxvision's contender, most preferred first. ViT in the GPU recipe:
    cuDNN's fused attention, then jax's fused XLA form for where cuDNN refuses (no GPU, as in the
    recipe's dry run on a CPU, or an old cuDNN). Otherwise the defaults (the CPU recipe keeps ViT's
    explicit attention, which is tuned for XLA:CPU)."""
    if name.startswith("vit") and recipe == "gpu":
        return [{"attention_implementation": "cudnn"}, {"attention_implementation": "xla"}]
    return [{}]


def make_fastest_jax_contenders(name, variables, images, labels, dtype, recipe):
    """`make_jax_contenders` with the first of `jax_model_options` that compiles and runs (its
    forward and one train step, untimed); + the options."""
    candidates = jax_model_options(name, recipe)
    for index, options in enumerate(candidates):
        try:
            contenders = make_jax_contenders(name, variables, images, labels, dtype, options)
            jax.block_until_ready(contenders[3]())  # a kernel can also refuse when it first runs
            contenders[1]()
            return (*contenders, options)
        except Exception as error:  # noqa: BLE001 - any refusal by the fused kernel: try the next form
            if index == len(candidates) - 1:
                raise
            print(f"  {name}: {options} does not compile or run here ({type(error).__name__}: {error}); "
                  f"trying {candidates[index + 1]}", flush=True)


def bench_network(name, batch, reps, gpu, recipe, roofline, on_rep=None):
    """Rows (forward, train) for one network. `on_rep(rows)`, if given, gets the rows of the
    repetitions timed so far after each one (so a run stopped by a time limit leaves figures)."""
    dtype = jnp.bfloat16 if recipe == "gpu" else jnp.float32
    model = models.create_model(name, num_classes=1000)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(batch, 224, 224, 3)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, 1000, batch).astype(np.int32))
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images[:1])
    if "head" in variables["params"]:
        # ViT's head is zero-initialised: give it weights so the agreement check means something.
        head = variables["params"]["head"]
        variables["params"]["head"] = {
            **head,
            "kernel": 0.02 * jax.random.normal(jax.random.key(1), head["kernel"].shape),
        }
    torch_module = make_torch_module(name, variables)
    jax_fwd, jax_train, jax_compile, jax_logits, options = make_fastest_jax_contenders(
        name, variables, images, labels, dtype, recipe)
    jax_count = count_params(variables["params"])
    torch_count = sum(p.numel() for p in torch_module.parameters())
    if jax_count != torch_count:
        raise RuntimeError(f"{name}: parameter counts differ: jaxvision {jax_count:,}, torch {torch_count:,}")
    # jaxvision's logits (on its device, in the recipe's dtype) against torch's float32 ones on the CPU.
    agreement = check_agreement(jax_logits(), images, torch_module)
    if agreement > AGREEMENT_TOLERANCE[recipe]:
        raise RuntimeError(f"{name}: logits disagree (relative max error {agreement:.2e}, "
                           f"{recipe} recipe allows {AGREEMENT_TOLERANCE[recipe]:.0e})")
    # Built after the check: warming up the train step updates the weights.
    torch_fwd, torch_train, torch_compile = make_torch_contenders(torch_module, images, labels, gpu, recipe)

    # Warm-up, untimed: torch's first calls ran above; jax's compiled steps have not run yet, and a
    # first execution pays one-time costs (the allocator growing its heap, page faults), as a
    # second one can when fragmentation leaves the first heap too small.
    for run in (jax_fwd, jax_train, jax_fwd, jax_train, torch_fwd, torch_train):
        run()
    macs = models.summary(model, (224, 224, 3)).total_macs
    flops = {"forward": 2 * macs * batch, "train": 6 * macs * batch}
    times = {(impl, mode): [] for impl in ("jaxvision", "torch") for mode in ("forward", "train")}
    rows_so_far = functools.partial(summarize, times, name, recipe, batch, jax_count, flops, roofline,
                                    jax_compile, torch_compile, agreement, options)
    for rep in range(reps):
        for mode, jax_run, torch_run in (("forward", jax_fwd, torch_fwd), ("train", jax_train, torch_train)):
            times["jaxvision", mode].append(timed(jax_run))
            times["torch", mode].append(timed(torch_run))
        print(f"  {name} rep {rep + 1}/{reps} done", flush=True)
        if on_rep is not None and rep + 1 < reps:
            on_rep(rows_so_far())
    return rows_so_far()


def summarize(times, name, recipe, batch, params, flops, roofline, jax_compile, torch_compile, agreement,
              options=None):
    """One row per mode from the repetitions timed so far (`times[impl, mode]`: seconds per step);
    `options`: the create_model options jaxvision's contender ran with."""
    rows = []
    for mode in ("forward", "train"):
        jax_stats, torch_stats = spread(times["jaxvision", mode], batch), spread(times["torch", mode], batch)
        rows.append(
            {
                "network": name,
                "mode": mode,
                "recipe": recipe,
                "batch": batch,
                "params": params,
                "reps": len(times["jaxvision", mode]),
                "jaxvision_images_per_s": jax_stats,
                "torch_images_per_s": torch_stats,
                "ratio": jax_stats["median"] / torch_stats["median"],
                "jaxvision_limit_ratio": flops[mode] / (batch / jax_stats["median"]) / roofline,
                "torch_limit_ratio": flops[mode] / (batch / torch_stats["median"]) / roofline,
                "jaxvision_compile_s": jax_compile[mode],
                "torch_first_call_s": torch_compile[mode],
                "logit_relative_error": agreement,
                "jaxvision_model_options": options or {},
            }
        )
    return rows


def markdown(rows) -> str:
    setups = {(row["network"], row["device"], row["roofline_flops"]) for row in rows}
    lines = [
        *sorted(f"{name}: {device}; roofline (matmul) {roofline / 1e9:.1f} GFLOP/s" for name, device, roofline in setups),
        "",
        "| network | mode | batch | jaxvision img/s (min-max) | torch img/s (min-max) | ratio jax/torch "
        "| limit ratio jax / torch | jax compile s | torch first call s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        j, t = row["jaxvision_images_per_s"], row["torch_images_per_s"]
        options = ", ".join(f"{key}={value}" for key, value in row.get("jaxvision_model_options", {}).items())
        lines.append(
            f"| {row['network']}{f' ({options})' if options else ''} | {row['mode']} | {row['batch']} "
            f"| {j['median']:.2f} ({j['min']:.2f}-{j['max']:.2f}) "
            f"| {t['median']:.2f} ({t['min']:.2f}-{t['max']:.2f}) "
            f"| {row['ratio']:.2f}x | {row['jaxvision_limit_ratio']:.2f} / {row['torch_limit_ratio']:.2f} "
            f"| {row['jaxvision_compile_s']:.1f} | {row['torch_first_call_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for results.json")
    parser.add_argument("--quick", action="store_true", help="batch 2, 3 reps: a plumbing check, not a result")
    parser.add_argument("--recipe", default="auto", choices=("auto", "cpu", "gpu"),
                        help="gpu: bf16, channels_last, torch.compile; cpu: float32 eager; auto: gpu where "
                             "a GPU is present. --recipe=gpu on a CPU checks the GPU code path")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--networks", default="resnet50,vit_b_16")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="CPU devices for jaxvision (0: one per core); default: CPU_SETTINGS'")
    parser.add_argument("--cpu-convolutions", default=None, choices=cpu_fusions.CPU_CONVOLUTIONS,
                        help="XLA:CPU kernels for jaxvision's convolutions; default: CPU_SETTINGS'")
    parser.add_argument("--cpu-allocator", default="reuse", choices=cpu_allocator.CPU_ALLOCATORS,
                        help="host malloc setting of the process, torch's included (config.cpu_allocator)")
    args = parser.parse_args(argv)
    networks = args.networks.split(",")
    if unknown := sorted(set(networks) - set(NETWORKS)):
        parser.error(f"unknown networks {unknown}; valid: {', '.join(NETWORKS)}")
    if len(networks) > 1:
        return bench_in_processes(networks, args, argv if argv is not None else sys.argv[1:])
    cpu_batch = args.batch or (2 if args.quick else 8)
    default_devices, default_convolutions = CPU_SETTINGS[networks[0]]
    # Before JAX starts; a GPU ignores the last two.
    allocator_applied = cpu_allocator.configure_cpu_allocator(args.cpu_allocator)
    cpu_devices.configure_cpu_parallelism(
        "devices", default_devices if args.cpu_devices is None else args.cpu_devices, (cpu_batch,),
        args.cpu_convolutions or default_convolutions,
    )
    gpu = on_gpu()
    recipe = args.recipe if args.recipe != "auto" else ("gpu" if gpu else "cpu")
    batch = args.batch or (256 if gpu and not args.quick else cpu_batch)
    reps = args.reps or (3 if args.quick else 20 if gpu else 7)
    machine = machine_lib.describe_machine(packages=("jax", "jaxlib", "flax", "optax", "torch", "torchvision"))
    device = (
        f"{recipe} recipe; {jax.device_count()} {jax.default_backend()} device(s); "
        f"{machine_lib.machine_line(machine)}; "
        f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
        + ("" if gpu else f", XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
        + f", cpu_allocator {args.cpu_allocator} ({'applied' if allocator_applied else 'malloc unchanged'})"
    )
    roofline = matmul_roofline(gpu)
    print(f"roofline {roofline / 1e9:.1f} GFLOP/s on {device}", flush=True)

    def with_setup(rows):
        for row in rows:
            row.update(device=device, machine=machine, roofline_flops=roofline)
        return rows

    def write_partial(rows):
        # Overwritten after every repetition and finally by the complete rows: gpu_session.sh stops
        # a network at its time limit, and what was timed by then should not be lost.
        write_results(args.out, with_setup(rows), args.quick, complete=False)

    rows = with_setup(bench_network(networks[0], batch, reps, gpu, recipe, roofline, on_rep=write_partial))
    print(markdown(rows))
    write_results(args.out, rows, args.quick)


def bench_in_processes(networks, args, argv):
    """Each network in a fresh process of this script (its CPU setting is fixed when JAX starts)."""
    rows = []
    for name in networks:
        out = os.path.join(args.out, name)
        command = [sys.executable, os.path.abspath(__file__), *argv, f"--networks={name}", f"--out={out}"]
        subprocess.run(command, check=True)
        with open(os.path.join(out, "results.json")) as f:
            rows.extend(json.load(f)["rows"])
    print("\nAll networks:\n" + markdown(rows))
    write_results(args.out, rows, args.quick)


def write_results(out, rows, quick, complete=True):
    """`results.json` under `out`: {"quick", "complete", "rows"}; `complete` is false while (or if
    stopped before) all repetitions have run, each row's "reps" saying how many were timed.
    Written to a temporary file and renamed, so a stop mid-write leaves the previous file whole."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"quick": quick, "complete": complete, "rows": rows}, f, indent=2)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
