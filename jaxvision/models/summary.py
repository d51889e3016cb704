"""Per-layer tables of output shape, activation memory, parameters and multiply-adds.

The course's CNN-architecture lectures print, for AlexNet on a 227x227 image, one row per layer:
output size, memory of the output in KB at float32, parameters in thousands, and FLOPs counted as
millions of multiply-adds. `summary(model, input_shape)` builds that table for any registered
model by intercepting every Conv/Dense/norm/pool/attention call during an abstract
(`jax.eval_shape`) init, so it costs no real computation even for ViT-L.

Counting rules (those of the course, of torchvision's and fvcore's FLOP counters):
- conv MACs = out_h * out_w * out_c * k_h * k_w * in_c / groups; dense MACs = in * out (per token);
  self-attention adds its two batched matmuls, 2 * T * T * D; biases, norms, activations and
  pooling count 0 MACs.
- `num_weights` counts kernel entries only (no biases or norm parameters): the course's "params"
  column. `num_params` counts everything the layer owns. Totals use the whole parameter tree, so
  parameters owned by no recorded layer (ViT's class token and position embedding) are included.
- ViT is tabulated as published, without its class-token pass (`class_token_pass=False`).
"""

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models import layers, vit

_RECORDED = (
    nn.Conv,
    nn.ConvTranspose,
    nn.Dense,
    nn.BatchNorm,
    nn.LayerNorm,
    layers.MaxPool,
    layers.AvgPool,
    layers.AdaptiveAvgPool,
    layers.GlobalAvgPool,
    vit.MultiHeadSelfAttention,
)


@dataclasses.dataclass(frozen=True)
class LayerSummary:
    """One row of the table. Sizes are per example (batch 1); `output_shape` is NHWC without N."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    activation_kb: float
    num_params: int
    num_weights: int
    macs: int


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """The rows in call order and the totals; `str()` gives the text table."""

    rows: list[LayerSummary]
    total_params: int
    total_macs: int
    total_activation_kb: float

    def to_text(self) -> str:
        header = ("layer", "output (CxHxW)", "memory (KB)", "weights (k)", "params (k)", "MFLOP (MACs)")
        lines = [header]
        for row in self.rows:
            lines.append(
                (
                    row.name,
                    _course_shape(row.output_shape),
                    f"{round_half_up(row.activation_kb):,}",
                    f"{round_half_up(row.num_weights / 1e3):,}",
                    f"{round_half_up(row.num_params / 1e3):,}",
                    f"{round_half_up(row.macs / 1e6):,}",
                )
            )
        total_weights = sum(row.num_weights for row in self.rows)
        lines.append(
            (
                "total",
                "",
                f"{round_half_up(self.total_activation_kb):,}",
                f"{round_half_up(total_weights / 1e3):,}",
                f"{round_half_up(self.total_params / 1e3):,}",
                f"{round_half_up(self.total_macs / 1e6):,}",
            )
        )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = []
        for index, line in enumerate(lines):
            cells = [line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])]
            text.append("  ".join(cells))
            if index == 0 or index == len(lines) - 2:
                text.append("  ".join("-" * w for w in widths))
        return "\n".join(text)

    def __str__(self) -> str:
        return self.to_text()

    def at_depth(self, depth: int) -> "ModelSummary":
        """The table with consecutive rows that share their first `depth` name parts merged into one
        (depth 1: one row per ResNet block or ViT encoder layer). A merged row sums memory,
        parameters and MACs and shows the last layer's output shape; totals are unchanged.

        Raises:
          ValueError: if `depth < 1`.
        """
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        groups: list[list[LayerSummary]] = []
        for row in self.rows:
            prefix = row.name.split("/")[:depth]
            if groups and groups[-1][0].name.split("/")[:depth] == prefix:
                groups[-1].append(row)
            else:
                groups.append([row])
        rows = [
            group[0] if len(group) == 1 else LayerSummary(
                name="/".join(group[0].name.split("/")[:depth]),
                kind=f"{len(group)} layers",
                output_shape=group[-1].output_shape,
                activation_kb=sum(row.activation_kb for row in group),
                num_params=sum(row.num_params for row in group),
                num_weights=sum(row.num_weights for row in group),
                macs=sum(row.macs for row in group),
            )
            for group in groups
        ]
        return dataclasses.replace(self, rows=rows)


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves away from zero (as the course's tables do)."""
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def _course_shape(shape: Sequence[int]) -> str:
    # The course prints channels first: 64x56x56 for an NHWC [56, 56, 64] output.
    if len(shape) == 3:
        shape = (shape[2], shape[0], shape[1])
    return "x".join(str(size) for size in shape)


def count_params(params: Any) -> int:
    """Number of scalars in a (possibly abstract) parameter tree."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def _first_array(output):
    return output[0] if isinstance(output, tuple) else output


def _macs(module: nn.Module, inputs: tuple, output, own_params: dict) -> int:
    out_size = math.prod(output.shape[1:])
    if isinstance(module, (nn.Conv, nn.ConvTranspose)):
        kernel = own_params["kernel"]
        return out_size * math.prod(kernel.shape[:-1])
    if isinstance(module, nn.Dense):
        return out_size * own_params["kernel"].shape[0]
    if isinstance(module, vit.MultiHeadSelfAttention):
        _, tokens, dim = inputs[0].shape
        return 2 * tokens * tokens * dim  # q @ k^T and weights @ v
    return 0


def summary(model: nn.Module, input_shape: Sequence[int], *, train: bool = False) -> ModelSummary:
    """Per-layer table of `model` on one image of `input_shape` = (H, W, C).

    Nothing is computed: the model is initialised abstractly with `jax.eval_shape`.

    Raises:
      ValueError: if `input_shape` is not (H, W, C).
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C), got {tuple(input_shape)}")
    calls = []

    def interceptor(next_fun, args, kwargs, context):
        output = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and isinstance(context.module, _RECORDED):
            calls.append((context.module, context.module.path, args, _first_array(output)))
        return output

    if getattr(model, "class_token_pass", False):
        # ViT's class-token pass is an economy of the implementation, not part of the network:
        # tabulate the published computation (the last block and encoder_ln on every token).
        model = model.clone(class_token_pass=False)
    images = jnp.zeros((1, *input_shape), jnp.float32)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    with nn.intercept_methods(interceptor):
        variables = jax.eval_shape(lambda: model.init(rngs, images, train=train))
    params = variables.get("params", {})
    rows = []
    for module, path, args, output in calls:
        subtree = params
        for part in path:
            subtree = subtree.get(part, {}) if isinstance(subtree, dict) else {}
        own = {k: v for k, v in subtree.items() if not isinstance(v, dict)} if isinstance(subtree, dict) else {}
        num_elements = math.prod(output.shape[1:])
        rows.append(
            LayerSummary(
                name="/".join(path),
                kind=type(module).__name__,
                output_shape=tuple(output.shape[1:]),
                activation_kb=num_elements * 4 / 1024,
                num_params=count_params(own),
                num_weights=math.prod(own["kernel"].shape) if "kernel" in own else 0,
                macs=_macs(module, args, output, own),
            )
        )
    return ModelSummary(
        rows=rows,
        total_params=count_params(params),
        total_macs=sum(row.macs for row in rows),
        total_activation_kb=sum(row.activation_kb for row in rows),
    )
