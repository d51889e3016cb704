"""The course's initialisation experiment: per-layer activation std of a deep MLP under each init.

A 10-layer, width-512 MLP (`jaxvision.models.linear.DeepMLP`) with tanh or ReLU, fed 1,000 real held-out digits
(normalized as in training), initialised with each of `small_gaussian` (std 0.01), `xavier`,
`kaiming` and `lecun`; prints the standard deviation of every hidden layer's post-activation output
and plots it (log scale) to a PNG. What the course shows (CS231n "Neural Networks Part 2"; Glorot &
Bengio 2010; He et al. 2015): small random numbers make the activations collapse toward zero; Xavier
keeps tanh activations at a stable scale; ReLU halves the variance at every layer under Xavier/LeCun,
and Kaiming's factor 2 compensates.

    python experiments/init_activation_scales.py --out=workdirs/init_activation_scales

writes `activation_std.png` and `activation_std.json`; takes a few seconds on a CPU.
Recorded table: experiments/README.md.
"""

import argparse
import json
import os
import sys

import numpy as np

INITS = ("small_gaussian", "xavier", "kaiming", "lecun")
ACTIVATIONS = ("tanh", "relu")


def digit_batch(num_images: int, data_dir: str | None) -> np.ndarray:
    """`float32[num_images, 28, 28, 1]` held-out digits, normalized with the training statistics."""
    from jaxvision.data import pipeline
    from jaxvision.data import tfds as datasets

    spec = datasets.get_dataset_spec("embedded_digits")
    mean, std = datasets.normalization_stats("embedded_digits", data_dir=data_dir)
    source = datasets.load_data_source("embedded_digits", spec.test_split, data_dir=data_dir)
    batch = next(iter(pipeline.make_eval_iterator(source, global_batch_size=num_images, mean=mean, std=std)))
    return np.asarray(batch["image"])[np.asarray(batch["mask"], bool)]


def activation_stds(images, *, activation: str, kernel_init: str, depth: int, width: int, seed: int) -> list[float]:
    """Std of each hidden layer's output at initialisation (over the batch and the units)."""
    import jax

    from jaxvision.models.linear import DeepMLP

    model = DeepMLP(num_classes=10, hidden_sizes=(width,) * depth, activation=activation, kernel_init=kernel_init)
    variables = model.init(jax.random.key(seed), images[:1], train=False)
    _, features = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    return [float(np.std(np.asarray(features[f"layer{i}"]))) for i in range(1, depth + 1)]


def format_table(results: dict, depth: int) -> str:
    header = "| activation | init | " + " | ".join(f"L{i}" for i in range(1, depth + 1)) + " |"
    lines = [header, "|" + "---|" * (depth + 2)]
    for (activation, init), stds in results.items():
        lines.append(f"| {activation} | {init} | " + " | ".join(f"{value:.2g}" for value in stds) + " |")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(ACTIVATIONS), figsize=(10, 4), sharey=True)
    for axis, activation in zip(axes, ACTIVATIONS):
        for init in INITS:
            stds = results[(activation, init)]
            axis.plot(range(1, len(stds) + 1), stds, marker="o", label=init)
        axis.set_yscale("log")
        axis.set_title(f"{activation} MLP")
        axis.set_xlabel("layer")
        axis.grid(True, alpha=0.3)
    axes[0].set_ylabel("activation std")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--num_images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--out", default="workdirs/init_activation_scales")
    args = parser.parse_args(argv)
    images = digit_batch(args.num_images, args.data_dir)
    print(f"input std {np.std(images):.3f} over {len(images)} digits; {args.depth} layers of {args.width}")
    results = {(activation, init): activation_stds(images, activation=activation, kernel_init=init, depth=args.depth,
                                                   width=args.width, seed=args.seed)
               for activation in ACTIVATIONS for init in INITS}
    table = format_table(results, args.depth)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    plot(results, os.path.join(args.out, "activation_std.png"))
    with open(os.path.join(args.out, "activation_std.json"), "w") as f:
        json.dump({f"{a}/{i}": stds for (a, i), stds in results.items()}, f, indent=2)
    print(f"written to {args.out}/activation_std.png and activation_std.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
