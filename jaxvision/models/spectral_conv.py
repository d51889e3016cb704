"""A convolution whose gradients are computed in the frequency domain (for 5x5 kernels on small
images on CPU).

`spectral_backward_conv` is a drop-in `conv_general_dilated` for `nn.Conv`: the forward pass is
`lax.conv_general_dilated` itself, and only the backward pass changes. A stride-1 convolution is a
product in the frequency domain, one small matrix product per frequency: with the padded input's
spectrum `X[f, b, c]`, the kernel's `W[f, c, o]` and the output cotangent's `G[f, b, o]`, the input
gradient's spectrum is `G[f] W[f]^T` and the kernel gradient's `sum_b X[f]^T conj(G[f])`
(Mathieu, Henaff and LeCun, "Fast training of convolutional networks through FFTs", ICLR 2014).
A k x k kernel costs k^2 C multiply-adds per position directly and about 4 C per frequency bin here
(a complex product as four real ones), so LeNet-5's 5x5 conv2 needs ~3.6x fewer multiply-adds for
its two gradients, plus the transforms.

The transforms are DFT matrices applied with `dot_general` (built in numpy when tracing), not
`jnp.fft`: under data parallelism XLA's SPMD partitioner all-gathers the whole batch before an FFT
(it does not split an FFT along its batch axis), while a `dot_general` stays split. The transform
size is the padded input, so nothing wraps around.

Same function as autodiff of `lax.conv_general_dilated` up to float rounding (gradients ~1e-6
relative in float32). Why only the backward: on the 2-core AMD EPYC (AVX2) the forward and the
input gradient through XLA's YNNPACK convolution ran well, the kernel gradient at half their
speed; LeNet-5's train step (2 devices, batch 128) went 1,514 -> 1,693 img/s with this backward
(`experiments/README.md`, seventeenth session). Computing the forward this way too was no faster.
Cases it does not cover (strides, dilation, groups, layouts other than NHWC/HWIO, dtypes other
than float32/float64, negative padding) are `lax.conv_general_dilated` with its own gradient.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# flax's nn.Conv passes NHWC inputs, HWIO kernels and NHWC outputs.
_NHWC_HWIO = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


def spectral_backward_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                           dimension_numbers=None, feature_group_count=1, precision=None):
    """`lax.conv_general_dilated`'s signature and values; a 2-D stride-1 NHWC/HWIO convolution gets
    its input and kernel gradients through the DFT.

    lhs `[N, H, W, C]`, rhs `[kh, kw, C, O]`, padding a string or ((top, bottom), (left, right));
    returns `[N, H + top + bottom - kh + 1, W + left + right - kw + 1, O]`.
    """
    plain = functools.partial(
        lax.conv_general_dilated, lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision,
    )
    ones = (None, (1, 1), [1, 1])
    covered = (
        lhs.ndim == 4 and rhs.ndim == 4 and feature_group_count == 1 and tuple(window_strides) == (1, 1)
        and lhs_dilation in ones and rhs_dilation in ones
        and (dimension_numbers is None or tuple(dimension_numbers) == tuple(_NHWC_HWIO))
        and lhs.dtype in (jnp.float32, jnp.float64) and rhs.dtype == lhs.dtype and rhs.shape[2] == lhs.shape[3]
    )
    if not covered:
        return plain()
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    padding = tuple((int(low), int(high)) for low, high in padding)
    if any(low < 0 or high < 0 for low, high in padding):
        return plain()
    return _conv(lhs, rhs, (padding, tuple(lhs.shape[1:3]), tuple(rhs.shape[:2])), precision)


# `geometry` is static: (((top, bottom), (left, right)), (H, W), (kh, kw)).
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(lhs, rhs, geometry, precision):
    return lax.conv_general_dilated(lhs, rhs, (1, 1), geometry[0], dimension_numbers=_NHWC_HWIO,
                                    precision=precision)


def _conv_forward(lhs, rhs, geometry, precision):
    return _conv(lhs, rhs, geometry, precision), (lhs, rhs)


def _conv_backward(geometry, precision, residuals, cotangent):
    del precision  # the gradients are DFT products, not convolutions
    lhs, rhs = residuals
    ((top, bottom), (left, right)), (height, width), (kernel_h, kernel_w) = geometry
    size = (height + top + bottom, width + left + right)  # the padded input: the transform size
    inputs = _spectrum(lhs, (top, left), size)  # [Wf, Hp, B, 2, C]
    grads = _spectrum(cotangent, (0, 0), size)  # [Wf, Hp, B, 2, O]
    half_w, full_h, batch, _, out_features = grads.shape
    in_features = inputs.shape[-1]
    kernel_re, kernel_im = _kernel_spectrum(rhs, size)  # [Wf, Hp, C, O] each
    # Input gradient G W^T per frequency, as one real matmul: rows (re, im) x (O), columns (re, im) x (C).
    kernel_t_re, kernel_t_im = jnp.swapaxes(kernel_re, 2, 3), jnp.swapaxes(kernel_im, 2, 3)  # [Wf, Hp, O, C]
    block = jnp.concatenate([
        jnp.concatenate([kernel_t_re, kernel_t_im], axis=-1),  # Gr: (re, im) += (Gr Wr, Gr Wi)
        jnp.concatenate([-kernel_t_im, kernel_t_re], axis=-1),  # Gi: (re, im) += (-Gi Wi, Gi Wr)
    ], axis=-2)  # [Wf, Hp, 2 O, 2 C]
    lhs_grad = jnp.einsum(
        "qpbk,qpkn->qpbn", grads.reshape(half_w, full_h, batch, 2 * out_features), block
    ).reshape(half_w, full_h, batch, 2, in_features)  # [Wf, Hp, B, 2, C]
    lhs_grad = _to_space(lhs_grad, (top, left), size, (height, width))  # [B, H, W, C]
    # Kernel gradient sum_b X conj(G): re = Xr Gr + Xi Gi, im = Xi Gr - Xr Gi = sum_s X_s G'_s with
    # G' = (-Gi, Gr); both from one matmul over (b, s).
    swapped = jnp.stack([-grads[:, :, :, 1], grads[:, :, :, 0]], axis=3)  # [Wf, Hp, B, 2, O]
    both = jnp.stack([grads, swapped], axis=4).reshape(half_w, full_h, batch, 2, 2 * out_features)
    kernel_grad = jnp.einsum("qpbsc,qpbsn->qpcn", inputs, both).reshape(
        half_w, full_h, in_features, 2, out_features)  # [Wf, Hp, C, 2, O]
    kernel_grad = _kernel_from_spectrum(kernel_grad, size, (kernel_h, kernel_w))
    return lhs_grad.astype(lhs.dtype), kernel_grad.astype(rhs.dtype)


_conv.defvjp(_conv_forward, _conv_backward)


# ----------------------------------------------------------------------------- DFT matrices


def _forward_real_dft(num_in: int, offset: int, size: int) -> np.ndarray:
    """`[num_in, 2, size // 2 + 1]`: x[w] (at w + offset in a length-`size` signal) to the real and
    imaginary parts of its half spectrum, sum_w x[w] exp(-2 pi i q (w + offset) / size)."""
    angle = 2 * np.pi * np.outer(np.arange(num_in) + offset, np.arange(size // 2 + 1)) / size
    return np.stack([np.cos(angle), -np.sin(angle)], axis=1)


def _complex_dft(num_in: int, offset: int, num_out: int, size: int, sign: int) -> np.ndarray:
    """`[num_in, 2, 2, num_out]`: a complex DFT along one axis as a real matrix, (re, im) at index
    h to (re, im) at index p, times exp(sign 2 pi i p (h + offset) / size) (offset on the input
    side for the forward transform; for the inverse the caller swaps the roles)."""
    angle = 2 * np.pi * np.outer(np.arange(num_in) + offset, np.arange(num_out)) / size
    cos, sin = np.cos(angle), sign * np.sin(angle)
    matrix = np.empty((num_in, 2, 2, num_out))
    matrix[:, 0, 0], matrix[:, 1, 0], matrix[:, 0, 1], matrix[:, 1, 1] = cos, -sin, sin, cos
    return matrix


def _hermitian_weights(size: int) -> np.ndarray:
    """Half-spectrum bins' weights in a real inverse: 1 for DC (and Nyquist), 2 for the others,
    which stand for their conjugate twins."""
    weights = np.full(size // 2 + 1, 2.0)
    weights[0] = 1.0
    if size % 2 == 0:
        weights[-1] = 1.0
    return weights


def _spectrum(x, offsets, size):
    """x `[B, H, W, C]`, placed at `offsets` in a `size` grid -> its 2-D spectrum `[Wf, Hp, B, 2, C]`
    (half spectrum along W, full along H; re/im on axis 3)."""
    along_w = jnp.asarray(_forward_real_dft(x.shape[2], offsets[1], size[1]), x.dtype)  # [W, 2, Wf]
    along_h = _complex_dft(x.shape[1], offsets[0], size[0], size[0], -1)  # [H, 2, 2, Hp]
    # The H transform takes Wf as a batch axis, so its output comes out frequency-major.
    along_h = jnp.broadcast_to(jnp.asarray(along_h, x.dtype), (along_w.shape[2], *along_h.shape))
    half = jnp.einsum("wtq,bhwc->qtbhc", along_w, x)  # [Wf, 2, B, H, C]
    return jnp.einsum("qtbhc,qhtsp->qpbsc", half, along_h)  # [Wf, Hp, B, 2, C]


def _to_space(spectrum, offsets, size, out_hw):
    """The inverse of `_spectrum` for a `[Wf, Hp, B, 2, C]` spectrum: rows `offsets[0]...` and
    columns `offsets[1]...` of the real signal, `[B, out_h, out_w, C]`."""
    dtype = spectrum.dtype
    along_h = np.transpose(_complex_dft(out_hw[0], offsets[0], size[0], size[0], +1), (3, 1, 2, 0))  # [Hp, 2, 2, Ho]
    frequencies = np.arange(size[1] // 2 + 1)
    angle = 2 * np.pi * np.outer(frequencies, np.arange(out_hw[1]) + offsets[1]) / size[1]
    scale = _hermitian_weights(size[1])[:, None] / (size[0] * size[1])
    along_w = np.stack([np.cos(angle) * scale, -np.sin(angle) * scale], axis=1)  # [Wf, 2, Wo]
    rows = jnp.einsum("qpbsc,psti->qtbci", spectrum, jnp.asarray(along_h, dtype))  # [Wf, 2, B, C, Ho]
    return jnp.einsum("qtbci,qtj->bijc", rows, jnp.asarray(along_w, dtype))  # [B, Ho, Wo, C]


def _complex_dtype(dtype):
    return jnp.complex128 if dtype == jnp.float64 else jnp.complex64


def _kernel_spectrum(kernel, size):
    """kernel `[kh, kw, C, O]` at the origin of a `size` grid -> (re, im) of its spectrum, each
    `[Wf, Hp, C, O]`."""
    complex_dtype = _complex_dtype(kernel.dtype)
    along_h = np.exp(-2j * np.pi * np.outer(np.arange(kernel.shape[0]), np.arange(size[0])) / size[0])
    along_w = np.exp(-2j * np.pi * np.outer(np.arange(kernel.shape[1]), np.arange(size[1] // 2 + 1)) / size[1])
    spectrum = jnp.einsum("uvco,up,vq->qpco", kernel.astype(complex_dtype), jnp.asarray(along_h, complex_dtype),
                          jnp.asarray(along_w, complex_dtype))
    return jnp.real(spectrum), jnp.imag(spectrum)


def _kernel_from_spectrum(spectrum, size, kernel_hw):
    """`[Wf, Hp, C, 2, O]` (re/im on axis 3) -> the real kernel `[kh, kw, C, O]` at the origin."""
    complex_dtype = _complex_dtype(spectrum.dtype)
    along_h = np.exp(2j * np.pi * np.outer(np.arange(size[0]), np.arange(kernel_hw[0])) / size[0])
    along_w = np.exp(2j * np.pi * np.outer(np.arange(size[1] // 2 + 1), np.arange(kernel_hw[1])) / size[1])
    along_w *= _hermitian_weights(size[1])[:, None] / (size[0] * size[1])
    values = lax.complex(spectrum[:, :, :, 0], spectrum[:, :, :, 1])  # [Wf, Hp, C, O]
    kernel = jnp.einsum("qpco,pu,qv->uvco", values, jnp.asarray(along_h, complex_dtype),
                        jnp.asarray(along_w, complex_dtype))
    return jnp.real(kernel)
