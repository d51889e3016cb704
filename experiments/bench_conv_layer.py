"""One 3x3 convolution layer, forward and forward+backward, XLA:CPU against PyTorch CPU.

    python experiments/bench_conv_layer.py --out=bench_results/conv_layer [--batch=128] [--repetitions=7]
        [--cpu-convolutions=eigen|ynnpack]

Why this exists: `bench_train_step.py` finds the ResNet-18 (CIFAR stem) train step below PyTorch's CPU
throughput (0.5x when this was written, 0.74-0.98x with Eigen convolutions), and issue 2 asks for
1.2x. This benchmark isolates the layer that dominates that step's arithmetic (3x3 convolution,
stride 1, padding 1, no bias, NHWC in jax / NCHW in torch as `bench_train_step.py` runs it) at
ResNet-18's four CIFAR shapes, and sets every contender against the f32 matmul roofline measured in
the same process, to show where the gap is. Results: experiments/README.md.

Contenders (float32, batch `--batch`, all threads):
  - xla:        `lax.conv_general_dilated` (what `nn.Conv` lowers to), jitted; fwd+bwd is the VJP
                 for both the input and the kernel, as in training. XLA:CPU runs it with the
                 kernels `--cpu-convolutions` picks (`jaxvision.training.cpu_fusions`): "eigen"
                 (the default here, what the CIFAR ResNet configs use) or "ynnpack" (XLA's default);
  - xla_im2col: the same layer as one matmul over im2col patches `[N*H*W, 9*C] @ [9*C, D]` (XLA's
                 dot emitter, which reaches the roofline on square matmuls) -- the reformulation
                 that helped 1x1 convolutions (`jaxvision.models.layers.matmul_conv`);
  - torch:      `torch.nn.functional.conv2d` (oneDNN), NCHW, `backward()` for both gradients.
Outputs are checked to agree (max abs diff) before timing. Protocol: ../shared/PERF.md (interleaved
A B C A B C ..., median and spread, GFLOP/s and the fraction of the in-process matmul roofline).
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_train_step import BENCH_PACKAGES, matmul_roofline  # experiments/ is on sys.path as a script
from jax import lax

from jaxvision.training import cpu_fusions, machine as machine_lib

# ResNet-18 with a CIFAR stem on 32x32 inputs: (spatial size, channels in = channels out).
RESNET18_CIFAR_SHAPES = ((32, 64), (16, 128), (8, 256), (4, 512))
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def xla_conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DIMENSIONS)


def im2col_conv(x, w):
    """3x3/stride 1/pad 1 conv as one matmul over the nine shifted copies of the padded input."""
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate(
        [padded[:, i : i + height, j : j + width] for i in range(3) for j in range(3)], axis=-1
    )  # [N, H, W, 9C], (i, j, c) order = HWIO's flattening
    return jnp.einsum("nhwk,kd->nhwd", patches, w.reshape(-1, w.shape[-1]))


def _forward_backward(conv):
    def loss(x, w, cotangent):
        out, vjp = jax.vjp(conv, x, w)
        return vjp(cotangent)

    return jax.jit(loss)


def make_contenders(batch: int, size: int, channels: int):
    """Returns `{name: (forward, forward_backward)}` thunks that block until done, and the agreement."""
    import torch

    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (batch, size, size, channels), jnp.float32)
    w = jax.random.normal(keys[1], (3, 3, channels, channels), jnp.float32) * (2.0 / (9 * channels)) ** 0.5
    cotangent = jax.random.normal(keys[2], (batch, size, size, channels), jnp.float32)
    contenders = {}
    outputs = {}
    for name, conv in (("xla", xla_conv), ("xla_im2col", im2col_conv)):
        forward, forward_backward = jax.jit(conv), _forward_backward(conv)
        outputs[name] = (np.asarray(forward(x, w)), [np.asarray(g) for g in forward_backward(x, w, cotangent)])
        contenders[name] = (
            lambda f=forward: f(x, w).block_until_ready(),
            lambda f=forward_backward: jax.block_until_ready(f(x, w, cotangent)),
        )

    tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_()
    tw = torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy()).requires_grad_()
    tg = torch.from_numpy(np.asarray(cotangent).transpose(0, 3, 1, 2).copy())

    def torch_forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(tx, tw, padding=1)

    def torch_forward_backward():
        tx.grad = tw.grad = None
        torch.nn.functional.conv2d(tx, tw, padding=1).backward(tg)

    torch_forward_backward()
    outputs["torch"] = (
        torch_forward().numpy().transpose(0, 2, 3, 1),
        [tx.grad.numpy().transpose(0, 2, 3, 1), tw.grad.numpy().transpose(2, 3, 1, 0)],
    )
    contenders["torch"] = (torch_forward, torch_forward_backward)
    reference = outputs["xla"]
    agreement = {
        name: max(
            float(np.abs(out[0] - reference[0]).max()),
            *(float(np.abs(a - b).max() / max(1.0, np.abs(b).max())) for a, b in zip(out[1], reference[1])),
        )
        for name, out in outputs.items()
    }
    return contenders, agreement


def measure(contenders, repetitions: int):
    """Interleaved timings: `{name: {"forward": [s...], "forward_backward": [s...]}}`."""
    times = {name: {"forward": [], "forward_backward": []} for name in contenders}
    for _ in range(repetitions):
        for name, (forward, forward_backward) in contenders.items():
            for kind, thunk in (("forward", forward), ("forward_backward", forward_backward)):
                start = time.perf_counter()
                thunk()
                times[name][kind].append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_results/conv_layer")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--cpu-convolutions", default="eigen", choices=cpu_fusions.CPU_CONVOLUTIONS,
                        help="XLA:CPU's convolution kernels (set before JAX starts)")
    args = parser.parse_args(argv)
    cpu_fusions.set_ynn_fusion_types(cpu_fusions.ynn_fusion_types("devices", args.cpu_convolutions),
                                     f"--cpu-convolutions={args.cpu_convolutions}")

    import torch

    torch.set_num_threads(os.cpu_count())
    roofline = matmul_roofline()
    machine = machine_lib.describe_machine(packages=BENCH_PACKAGES)
    print(f"machine: {machine_lib.machine_line(machine)}")
    print(f"f32 matmul roofline (2048^3, jax): {roofline / 1e9:.1f} GFLOP/s; load average {os.getloadavg()}; "
          f"XLA:CPU YNNPACK fusions: {cpu_fusions.fusion_types_in_xla_flags() or 'XLA default'}")
    rows = []
    for size, channels in RESNET18_CIFAR_SHAPES:
        flops = 2 * args.batch * size * size * 9 * channels * channels  # one conv; backward is 2x this
        contenders, agreement = make_contenders(args.batch, size, channels)
        for _ in range(2):  # warm-up
            for forward, forward_backward in contenders.values():
                forward(), forward_backward()
        times = measure(contenders, args.repetitions)
        torch_median = {kind: float(np.median(times["torch"][kind])) for kind in ("forward", "forward_backward")}
        for name, kinds in times.items():
            for kind, samples in kinds.items():
                median = float(np.median(samples))
                achieved = flops * (1 if kind == "forward" else 3) / median
                rows.append(
                    dict(
                        layer=f"{size}x{size}x{channels}", contender=name, pass_=kind, ms=median * 1e3,
                        spread_ms=[float(min(samples)) * 1e3, float(max(samples)) * 1e3],
                        gflops=achieved / 1e9, roofline_fraction=achieved / roofline,
                        x_torch=torch_median[kind] / median, max_abs_diff_to_xla=agreement[name],
                    )
                )
    print("\n| layer (N=%d) | contender | pass | ms | spread ms | GFLOP/s | of roofline | x torch | diff to xla |"
          % args.batch)
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['layer']} | {row['contender']} | {row['pass_']} | {row['ms']:.1f} | "
            f"{row['spread_ms'][0]:.0f}-{row['spread_ms'][1]:.0f} | {row['gflops']:.0f} | "
            f"{row['roofline_fraction']:.2f} | {row['x_torch']:.2f} | {row['max_abs_diff_to_xla']:.1e} |"
        )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "conv_layer.json"), "w") as file:
        json.dump(dict(machine=machine, roofline_flops=roofline, batch=args.batch, load_average=os.getloadavg(),
                       cpu_convolutions=args.cpu_convolutions, xla_flags=os.environ.get("XLA_FLAGS", ""),
                       rows=rows), file, indent=1)


if __name__ == "__main__":
    main()
