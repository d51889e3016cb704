"""Building blocks shared by the classification models.

Pooling is wrapped in parameter-free modules (rather than called as `nn.max_pool`) so that each
pool has a name: `jaxvision.models.summary` records it as a row of the per-layer table, as the
course's tables list `pool1`, `pool2`, ...

Padding is always explicit and symmetric, as PyTorch pads, so that ported torchvision weights give
the same outputs (flax's "SAME" pads stride-2 layers asymmetrically).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def _pads(size: int, window: int, stride: int, padding: int, ceil_mode: bool) -> tuple[int, int]:
    """(low, high) padding of one spatial axis, reproducing PyTorch's `ceil_mode` output size."""
    span = size + 2 * padding - window
    if ceil_mode:
        num_out = -(-span // stride) + 1
        # PyTorch drops a last window that would start inside the right padding only.
        if (num_out - 1) * stride >= size + padding:
            num_out -= 1
    else:
        num_out = span // stride + 1
    high = max((num_out - 1) * stride + window - size - padding, 0)
    return padding, high


def _argmax_pool(padded, window: int, stride: int):
    """(max `[N, out_h, out_w, C]`, index of the first maximal entry in row-major window order, int8)."""
    index_dtype = jnp.int8 if window * window <= 127 else jnp.int32
    out_h = (padded.shape[1] - window) // stride + 1
    out_w = (padded.shape[2] - window) // stride + 1
    best, index = None, None
    for position in range(window * window):
        i, j = divmod(position, window)
        view = padded[:, i : i + (out_h - 1) * stride + 1 : stride, j : j + (out_w - 1) * stride + 1 : stride, :]
        if best is None:
            best, index = view, jnp.zeros(view.shape, index_dtype)
            continue
        # PyTorch's rule: a later entry wins only if strictly larger, or NaN (NaN propagates).
        wins = (view > best) | jnp.isnan(view)
        best = jnp.where(wins, view, best)
        index = jnp.where(wins, jnp.asarray(position, index_dtype), index)
    return best, index


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool_padded(padded, window: int, stride: int):
    """Max over `window`x`window` windows at `stride` of an already padded NHWC array (no padding added).

    Forward: the elementwise maximum of the window's strided slices. Gradient: each output's
    cotangent goes to the first maximal entry of its window (PyTorch's `max_pool2d` rule, ties
    included), scattered back with strided pads. Only an int8 argmax is kept for the backward pass.
    Why not autodiff: XLA's `select_and_scatter` (the gradient of `nn.max_pool`) took 188 ms for
    the ResNet stem pool on CPU (batch 8, 112x112x64), and the autodiff of the strided-slice
    maximum re-ran the producer (BatchNorm + ReLU) inside each of its nine selects: 81 ms in the
    ResNet-50 train step, against 22 ms for the pool alone.
    """
    return _argmax_pool(padded, window, stride)[0]


def _max_pool_forward(padded, window, stride):
    best, index = _argmax_pool(padded, window, stride)
    return best, (index, padded.shape)


def _max_pool_backward(window, stride, residuals, cotangent):
    index, padded_shape = residuals
    out_h, out_w = index.shape[1:3]
    grad = None
    for position in range(window * window):
        i, j = divmod(position, window)
        routed = jnp.where(index == position, cotangent, jnp.zeros((), cotangent.dtype))
        # Put output (r, c) at padded (i + r*stride, j + c*stride): interior padding stride-1.
        placed = lax.pad(
            routed,
            jnp.zeros((), cotangent.dtype),
            (
                (0, 0, 0),
                (i, padded_shape[1] - i - (out_h - 1) * stride - 1, stride - 1),
                (j, padded_shape[2] - j - (out_w - 1) * stride - 1, stride - 1),
                (0, 0, 0),
            ),
        )
        grad = placed if grad is None else grad + placed
    return (grad,)


max_pool_padded.defvjp(_max_pool_forward, _max_pool_backward)


class MaxPool(nn.Module):
    """Max-pooling over `window`x`window` windows (PyTorch `MaxPool2d` semantics, NHWC input).

    Values and gradients equal PyTorch's, ties included (see `max_pool_padded` for the reasons
    it is not `nn.max_pool`).
    """

    window: int
    stride: int
    padding: int = 0
    ceil_mode: bool = False

    @nn.compact
    def __call__(self, x):
        pads = tuple(
            _pads(size, self.window, self.stride, self.padding, self.ceil_mode) for size in x.shape[1:3]
        )
        # -inf padding: padded cells never win.
        padded = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-jnp.inf)
        return max_pool_padded(padded, self.window, self.stride)


class AvgPool(nn.Module):
    """Average-pooling (PyTorch `AvgPool2d` with `count_include_pad`, NHWC input)."""

    window: int
    stride: int
    padding: int = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    @nn.compact
    def __call__(self, x):
        pads = tuple(
            _pads(size, self.window, self.stride, self.padding, self.ceil_mode) for size in x.shape[1:3]
        )
        return nn.avg_pool(
            x,
            (self.window, self.window),
            (self.stride, self.stride),
            pads,
            count_include_pad=self.count_include_pad,
        )


class AdaptiveAvgPool(nn.Module):
    """PyTorch `AdaptiveAvgPool2d(output_size)`: bin i spans [floor(i*H/out), ceil((i+1)*H/out)).

    When H is a multiple of `output_size` this is a plain average pool; when the input already has
    the output size it is the identity (the case at the classifiers' training size).
    """

    output_size: int

    @nn.compact
    def __call__(self, x):
        height, width = x.shape[1:3]
        out = self.output_size
        if height == out and width == out:
            return x
        if height % out == 0 and width % out == 0:
            window = (height // out, width // out)
            return nn.avg_pool(x, window, window)
        if out % height == 0 and out % width == 0:
            # Every bin covers exactly one input cell.
            x = jnp.repeat(x, out // height, axis=1)
            return jnp.repeat(x, out // width, axis=2)  # [N, out, out, C]
        rows = []
        for i in range(out):
            top, bottom = (i * height) // out, -(-((i + 1) * height) // out)
            cols = []
            for j in range(out):
                left, right = (j * width) // out, -(-((j + 1) * width) // out)
                cols.append(jnp.mean(x[:, top:bottom, left:right, :], axis=(1, 2)))
            rows.append(jnp.stack(cols, axis=1))  # [N, out, C]
        return jnp.stack(rows, axis=1)  # [N, out, out, C]


class GlobalAvgPool(nn.Module):
    """Mean over the spatial axes: `[N, H, W, C] -> [N, C]`."""

    @nn.compact
    def __call__(self, x):
        return jnp.mean(x, axis=(1, 2))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): zero a whole residual branch per example.

    Surviving branches are scaled by 1/(1-rate) so eval needs no rescaling (timm's `drop_path`).
    Draws from the 'dropout' rng only when `train` and `rate > 0`.
    """

    rate: float

    @nn.compact
    def __call__(self, x, *, train: bool):
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / keep, jnp.zeros_like(x))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): channel gates from globally pooled features.

    `fc1` reduces to `max(1, channels // reduction)` with ReLU, `fc2` restores with a sigmoid; both
    are 1x1 convolutions with bias, as timm's SE-ResNets.
    """

    reduction: int = 16
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        squeezed = jnp.mean(x, axis=(1, 2), keepdims=True)  # [N, 1, 1, C]
        hidden = max(1, channels // self.reduction)
        gate = nn.relu(nn.Conv(hidden, (1, 1), dtype=self.dtype, name="fc1")(squeezed))
        gate = nn.sigmoid(nn.Conv(channels, (1, 1), dtype=self.dtype, name="fc2")(gate))
        return x * gate


@jax.custom_vjp
def flat_matmul(x, w):
    """`x @ w` for `x [..., K]`, `w [K, M]`, whose gradient is written as two 2-D matmuls.

    Same values as `x @ w` and as its autodiff gradient (up to float summation order). The
    reason is speed on CPU: autodiff's weight gradient contracts `x` and the cotangent over all
    leading axes, and XLA:CPU lowered that by transposing the (larger) cotangent, fusing the
    producer's elementwise work (e.g. exact GELU's erf) into a slow transposing loop. Flattening
    the leading axes and contracting `[T, K] x [T, M] -> [K, M]` took ViT-B/16's MLP
    forward+backward from 400 to 293 ms (batch 8, 2 cores). Mixed dtypes follow `jnp.matmul`.
    """
    return jnp.matmul(x, w)


def _flat_matmul_forward(x, w):
    return jnp.matmul(x, w), (x, w)


def _flat_matmul_backward(residuals, cotangent):
    x, w = residuals
    x_grad = jnp.matmul(cotangent, w.T.astype(cotangent.dtype)).astype(x.dtype)
    w_grad = jnp.einsum(
        "tk,tm->km", x.reshape(-1, x.shape[-1]), cotangent.reshape(-1, cotangent.shape[-1]).astype(x.dtype)
    ).astype(w.dtype)
    return x_grad, w_grad


flat_matmul.defvjp(_flat_matmul_forward, _flat_matmul_backward)


def matmul_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """A `dot_general` for `nn.Dense(dot_general=...)`: `flat_matmul` for Dense's contraction.

    Dense contracts the last axis of the input with the first of the kernel, with no batch axes;
    that case goes to `flat_matmul` (when no precision or result type is asked for). Anything
    else goes to `lax.dot_general` unchanged.
    """
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    if (
        tuple(lhs_contract) == (lhs.ndim - 1,) and tuple(rhs_contract) == (0,) and rhs.ndim == 2
        and not lhs_batch and not rhs_batch and precision is None and preferred_element_type is None
    ):
        return flat_matmul(lhs, rhs)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)


def matmul_conv(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
):
    """`lax.conv_general_dilated` for flax's NHWC/HWIO convs, as a matmul where that is exact.

    Pass as `nn.Conv(..., conv_general_dilated=matmul_conv)`. Two cases become a `flat_matmul`
    over channels: 1x1 kernels (strided ones subsample first) and non-overlapping patch kernels
    (kernel == stride, no padding: ViT's patch embedding). Their gradients are then matmuls too:
    on CPU, XLA's conv weight-gradient ran at about half its forward speed, and a 1x1 conv's
    forward+backward took 123 ms as a conv vs 50 ms as a matmul ([8, 56, 56, 256] -> 64).
    Anything else (dilation, groups, padding, overlapping windows) goes to `lax.conv_general_dilated`.
    """
    kernel_h, kernel_w, in_features, out_features = rhs.shape
    plain = (
        lhs.ndim == 4
        and feature_group_count == 1
        and all(p == (0, 0) for p in padding)
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
    )
    stride_h, stride_w = window_strides
    if plain and precision is None and (kernel_h, kernel_w) == (1, 1):
        return flat_matmul(lhs[:, ::stride_h, ::stride_w, :], rhs[0, 0])
    if plain and precision is None and (kernel_h, kernel_w) == (stride_h, stride_w):
        batch, height, width, _ = lhs.shape
        grid_h, grid_w = height // kernel_h, width // kernel_w
        x = lhs[:, : grid_h * kernel_h, : grid_w * kernel_w, :]
        x = x.reshape((batch, grid_h, kernel_h, grid_w, kernel_w, in_features))  # [N, gh, kh, gw, kw, C]
        patches = x.transpose((0, 1, 3, 2, 4, 5)).reshape((batch, grid_h, grid_w, -1))  # (kh, kw, C) order
        return flat_matmul(patches, rhs.reshape((-1, out_features)))
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        precision=precision,
    )


def padded_features_conv(multiple: int):
    """A `conv_general_dilated` for `nn.Conv` that computes `ceil(M / multiple) * multiple` output
    features (zero kernel columns) and returns the first M: the plain convolution's values (up to float
    summation order) and gradients (the padding's gradient is a slice). Grouped convolutions pass
    through unpadded.

    The reason is speed on CPU: XLA:CPU's convolution kernels run some output widths much faster
    than others, so a wider padded one can win. LeNet-5's conv2 (14x14, 20 -> 50, 5x5, batch 128)
    took 71 ms forward+backward with 50 outputs, 65 ms with 56, 58 ms with 64 (weight gradient
    31 -> 22 ms) and 67 ms with 80, although 64 is 28% more arithmetic. Not a general rule: 20 -> 32
    outputs made LeNet's conv1 slower (16.5 -> 23.2 ms), and on an AVX2-only AMD EPYC 64 outputs
    made conv2 slower too (`lenet.cpu_tuned_conv`), so models opt in per layer, where measured.
    `multiple=1` is `lax.conv_general_dilated` itself.
    """
    if multiple == 1:
        return lax.conv_general_dilated

    def conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
             dimension_numbers=None, feature_group_count=1, precision=None):
        out_features = rhs.shape[-1]
        extra = -out_features % multiple
        if feature_group_count != 1 or extra == 0:
            kernel = rhs
        else:
            kernel = jnp.pad(rhs, ((0, 0),) * (rhs.ndim - 1) + ((0, extra),))
        out = lax.conv_general_dilated(
            lhs, kernel, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers, feature_group_count=feature_group_count, precision=precision,
        )
        return out[..., :out_features]

    return conv


def torch_conv_init(scale: float = 2.0):
    """He-normal fan-out init, as torchvision's ResNet/VGG convs (`kaiming_normal_`, mode fan_out)."""
    return nn.initializers.variance_scaling(scale, "fan_out", "normal")



def fully_connected(
    features: int, *, window: int, fully_convolutional: bool, dtype: Any, name: str
) -> nn.Module:
    """A classifier-head layer: `nn.Dense`, or its convolutional form (OverFeat / FCN).

    The convolutional form is an `nn.Conv` whose `window`x`window` kernel covers exactly the
    features the Dense layer saw flattened (the first head layer), or a 1x1 conv (`window=1`, the
    later ones). Its kernel is the Dense kernel reshaped: see `jaxvision.models.convolutionize`.
    """
    if fully_convolutional:
        return nn.Conv(features, (window, window), padding="VALID", dtype=dtype, name=name)
    return nn.Dense(features, dtype=dtype, name=name)


def batch_norm(train: bool, dtype: Any, name: str, *, epsilon: float = 1e-5, zero_init: bool = False):
    """BatchNorm with PyTorch's defaults (flax momentum 0.9 = PyTorch 0.1); statistics stay float32.

    `zero_init=True` starts the scale at 0 (the last BN of a residual branch, Goyal et al. 2017).
    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=epsilon,
        scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones,
        dtype=dtype,
        name=name,
    )


def conv_no_bias(
    features: int, kernel: int, stride: int, dtype: Any, name: str, *, groups: int = 1, kernel_init=None
) -> nn.Conv:
    """A kxk conv with PyTorch's symmetric padding k//2 and no bias (a BatchNorm follows)."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=kernel // 2,
        feature_group_count=groups,
        use_bias=False,
        kernel_init=kernel_init or torch_conv_init(),
        dtype=dtype,
        conv_general_dilated=matmul_conv,
        name=name,
    )
