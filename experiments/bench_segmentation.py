"""Transposed convolution against its reformulations, for the decoder shapes of jaxvision's
segmentation models, interleaved in one process (shared/PERF.md protocol).

    python experiments/bench_segmentation.py --out=bench_results/segmentation [--reps=7] [--quick]

XLA's transposed convolution (a convolution over the input dilated by the stride, most of whose
multiplications hit inserted zeros) is known to be slow in some shapes. For each shape we time the
forward pass and forward+backward (gradient w.r.t. input and kernel, as in training) of:
  - learnable layers (U-Net 2x2/2 up-convolutions, FCN 4x4/2 bilinear-initialised upsamplings):
      "transpose"  lax.conv_general_dilated with lhs_dilation (= lax.conv_transpose, flax ConvTranspose)
      "subpixel"   the same layer as a stride-1 convolution + depth-to-space (identical numbers)
      "resize+conv" nearest 2x resize then a 3x3 convolution (Odena et al. 2016): a *different*
                   layer with the same output shape, timed for reference only
  - fixed bilinear upsampling (FCN's final 8x / 32x), depthwise:
      "transpose", "subpixel" (identical), "jax.image.resize" (identical on interior pixels only)
Agreement is checked first (max abs difference to "transpose"). Images/s = batch / median time;
contenders slower than 2 s per call are timed 3 times.
Limit ratio: achieved FLOP/s (useful MACs x 2 of the layer, no zeros counted) over a 2048^3 f32
matmul measured at start-up. Markdown table on stdout, JSON in --out.
"""

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.models.segmentation import upsampling

# (name, batch, input H=W, in channels, out channels, factor, kernel, kind) — the shapes of
# unet_small and fcn*_small on 64x64 digit scenes (batch 32), and of fcn8s_vgg16 at 224 (batch 8).
CASES = [
    ("unet_small upconv3 8->16, 128->64", 32, 8, 128, 64, 2, 2, "learned"),
    ("unet_small upconv2 16->32, 64->32", 32, 16, 64, 32, 2, 2, "learned"),
    ("unet_small upconv1 32->64, 32->16", 32, 32, 32, 16, 2, 2, "learned"),
    ("fcn8s_small upscore 2->4, 11", 32, 2, 11, 11, 2, 4, "learned"),
    ("fcn8s_small upscore 4->8, 11", 32, 4, 11, 11, 2, 4, "learned"),
    ("fcn8s_vgg16 upscore 14->28, 21", 8, 14, 21, 21, 2, 4, "learned"),
    ("fcn8s_small final 8x 8->64, 11", 32, 8, 11, 11, 8, 16, "fixed"),
    ("fcn32s_small final 32x 2->64, 11", 32, 2, 11, 11, 32, 64, "fixed"),
    ("fcn8s_vgg16 final 8x 28->224, 21", 8, 28, 21, 21, 8, 16, "fixed"),
]


def matmul_roofline() -> float:
    a = jnp.ones((2048, 2048), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * 2048**3 / min(times)


def contenders(case):
    _, batch, size, cin, cout, factor, kernel_size, kind = case
    if kind == "learned":
        def make(formulation):
            return lambda x, k: upsampling.transposed_conv(x, k, factor, formulation=formulation)

        def resize_conv(x, k3):
            up = jax.image.resize(x, (x.shape[0], factor * x.shape[1], factor * x.shape[2], x.shape[3]), "nearest")
            return jax.lax.conv_general_dilated(up, k3, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

        return {"transpose": make("transpose"), "subpixel": make("subpixel"), "resize+conv": resize_conv}

    def fixed(formulation):
        return lambda x, k: upsampling.bilinear_upsample(x, factor, formulation=formulation) + 0 * jnp.sum(k)

    return {"transpose": fixed("transpose"), "subpixel": fixed("subpixel"), "jax.image.resize": fixed("resize")}


def useful_flops(case) -> float:
    """2 x MACs of the layer without the inserted zeros: each input pixel meets k^2 taps (learned),
    each output pixel ~ (k / f)^2 taps per channel (fixed, depthwise)."""
    _, batch, size, cin, cout, factor, kernel_size, kind = case
    if kind == "learned":
        return 2.0 * batch * size * size * kernel_size**2 * cin * cout
    return 2.0 * batch * (size * factor) ** 2 * (kernel_size / factor) ** 2 * cin


def time_case(case, reps: int):
    name, batch, size, cin, cout, factor, kernel_size, kind = case
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
    kernel = jnp.asarray(upsampling.bilinear_kernel(factor, cin, cout) if kind == "fixed" or kernel_size == 2 * factor
                         else rng.normal(size=(kernel_size, kernel_size, cin, cout)), jnp.float32)
    kernel3 = jnp.asarray(rng.normal(size=(3, 3, cin, cout)), jnp.float32)
    functions = contenders(case)
    results = {}
    reference_output = None
    for label, fn in functions.items():
        k = kernel3 if label == "resize+conv" else kernel
        forward = jax.jit(fn)
        backward = jax.jit(jax.grad(lambda x, k, fn=fn: jnp.sum(fn(x, k) ** 2), argnums=(0, 1)))
        start = time.perf_counter()
        out = forward(x, k).block_until_ready()
        compile_forward = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(backward(x, k))
        compile_backward = time.perf_counter() - start
        if label == "transpose":
            reference_output = np.asarray(out)
        if label in ("subpixel",):
            error = float(np.abs(np.asarray(out) - reference_output).max())
        elif label == "jax.image.resize":
            margin = factor // 2 + 1
            error = float(np.abs(np.asarray(out) - reference_output)[:, margin:-margin, margin:-margin].max())
        else:
            error = 0.0 if label == "transpose" else None
        results[label] = {"forward": forward, "backward": backward, "kernel": k, "times": {"forward": [], "train": []},
                          "compile_s": compile_forward + compile_backward, "max_abs_diff": error}
    for rep in range(reps):  # interleaved: A B C A B C ...
        for label, entry in results.items():
            # A contender whose compiled call takes seconds (the dilated fixed 32x upsampling) is
            # timed 3 times, not `reps` times: its median is clear and the run stays minutes long.
            if rep >= 3 and entry["times"]["train"] and min(entry["times"]["train"]) > 2.0:
                continue
            for phase, fn in (("forward", entry["forward"]), ("train", entry["backward"])):
                start = time.perf_counter()
                jax.block_until_ready(fn(x, entry["kernel"]))
                entry["times"][phase].append(time.perf_counter() - start)
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench_results/segmentation")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="first 2 cases, 3 reps (a check that it runs)")
    parser.add_argument("--cases", default="", help="comma-separated indices into CASES (default: all)")
    args = parser.parse_args()
    cases = CASES[:2] + CASES[6:7] if args.quick else CASES
    if args.cases:
        cases = [CASES[int(i)] for i in args.cases.split(",")]
    reps = 3 if args.quick else args.reps
    roofline = matmul_roofline()
    print(f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}; f32 matmul roofline {roofline / 1e9:.1f} GFLOP/s\n")
    print("| decoder shape | formulation | fwd img/s | fwd+bwd img/s | spread fwd+bwd | x transpose (fwd+bwd) | limit ratio fwd | max abs diff | compile s |")
    print("|---|---|---|---|---|---|---|---|---|")
    records = []
    for case in cases:
        results = time_case(case, reps)
        batch = case[1]
        base = statistics.median(results["transpose"]["times"]["train"])
        for label, entry in results.items():
            forward = statistics.median(entry["times"]["forward"])
            train = statistics.median(entry["times"]["train"])
            spread = f"{batch / max(entry['times']['train']):.0f}-{batch / min(entry['times']['train']):.0f}"
            limit = useful_flops(case) / forward / roofline if label != "resize+conv" else float("nan")
            diff = entry["max_abs_diff"]
            print(f"| {case[0]} | {label} | {batch / forward:,.0f} | {batch / train:,.0f} | {spread} | "
                  f"{base / train:.2f} | {limit:.3f} | {'n/a (other layer)' if diff is None else f'{diff:.1e}'} | "
                  f"{entry['compile_s']:.2f} |")
            records.append({"case": case[0], "formulation": label, "batch": batch,
                            "forward_images_per_second": batch / forward, "train_images_per_second": batch / train,
                            "forward_times": entry["times"]["forward"], "train_times": entry["times"]["train"],
                            "speedup_vs_transpose_train": base / train, "limit_ratio_forward": limit,
                            "max_abs_diff": diff, "compile_seconds": entry["compile_s"]})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_segmentation.json"), "w") as f:
        json.dump({"device": jax.devices()[0].device_kind, "roofline_flops": roofline, "reps": reps,
                   "results": records}, f, indent=2)


if __name__ == "__main__":
    main()
