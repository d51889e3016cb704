"""Vision Transformer (Dosovitskiy et al., "An image is worth 16x16 words", ICLR 2021), laid out
as torchvision's `vit_b_16`: a patch-embedding conv, a class token, a learned position embedding,
pre-norm encoder blocks (LayerNorm eps 1e-6, multi-head self-attention, GELU MLP), a final
LayerNorm and a linear head on the class token. Parameter counts equal torchvision's
(vit_b_16: 86,567,656 at 1,000 classes).

The attention is written out (not `nn.MultiHeadDotProductAttention`) so that every block's map is
returned: `features["attention"]` is `float32[N, depth, heads, T, T]` with T = 1 + number of
patches (index 0 is the class token). `attention_implementation="xla"` or `"cudnn"` instead calls
`jax.nn.dot_product_attention` (the same numbers, no maps in `features`): "cudnn" is cuDNN's fused
flash attention on an NVIDIA GPU (bf16/fp16; what to train with there), "xla" the portable fused
form. Neither has attention-weight dropout.

The logits read only the class token, so by default (`class_token_pass=True`) the last block also
computes that token's row from its own query and the logits read it: a caller that reads only the
logits (a train step's loss) lets XLA drop the last block's attention queries, out_proj and MLP on
the patch tokens as dead code (ViT-B/16's compiled train step: 424 -> 398 GFLOP per CPU device of
batch 4; 9-12% faster). `features` still come from the full pass.

Names: conv_proj, class_token, pos_embedding, encoder_layer_{i}/ln_1, .../self_attention/in_proj
(torchvision's packed `in_proj_weight`/`in_proj_bias`, q|k|v on the output axis),
.../self_attention/out_proj, .../ln_2, .../mlp_fc1, .../mlp_fc2 (torchvision `mlp.0`/`mlp.3`),
encoder_ln, head.
Features: "stem" (tokens after the position embedding, `[N, T, D]`), "stage1".."stage4" (patch
tokens after blocks depth/4, depth/2, 3*depth/4 and depth, as `[N, h, w, D]` maps for dense heads),
"pre_logits" (normalised class token), "attention".
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models import layers

_dense = functools.partial(
    nn.Dense,
    kernel_init=nn.initializers.xavier_uniform(),
    bias_init=nn.initializers.normal(1e-6),
    dot_general=layers.matmul_dot_general,  # same numbers; a faster weight gradient on CPU
)


def resample_position_embedding(pos_embedding, num_tokens: int):
    """A learned position embedding `[1, 1 + h * w, D]` (class token first, a square h x w patch
    grid) resized to `num_tokens = 1 + H * W` tokens for another square grid: the class token's
    entry kept, the grid's resized with bicubic interpolation (antialiased when shrinking). How
    weights trained at one `image_size` start a ViT at another (timm's `resample_abs_pos_embed`,
    whose torch bicubic uses the a = -0.75 cubic kernel where `jax.image.resize` uses a = -0.5).
    Returns the input's dtype, float32 arithmetic."""
    if pos_embedding.ndim != 3 or pos_embedding.shape[0] != 1:
        raise ValueError(f"expected a position embedding [1, tokens, dim], got shape {pos_embedding.shape}")
    old_side, new_side = round((pos_embedding.shape[1] - 1) ** 0.5), round((num_tokens - 1) ** 0.5)
    if old_side**2 + 1 != pos_embedding.shape[1] or new_side**2 + 1 != num_tokens or new_side < 1:
        raise ValueError(
            f"position embeddings resample between square patch grids plus a class token; got "
            f"{pos_embedding.shape[1]} -> {num_tokens} tokens"
        )
    dim = pos_embedding.shape[2]
    grid = pos_embedding[0, 1:].astype(jnp.float32).reshape(old_side, old_side, dim)
    resized = jax.image.resize(grid, (new_side, new_side, dim), method="bicubic")
    tokens = jnp.concatenate([pos_embedding[0, :1].astype(jnp.float32), resized.reshape(-1, dim)])
    return tokens[None].astype(pos_embedding.dtype)


ATTENTION_IMPLEMENTATIONS = ("explicit", "xla", "cudnn")


def check_attention_implementation(implementation: str, attention_dropout_rate: float) -> None:
    """ValueError for an unknown `attention_implementation`, or a fused one asked for dropout."""
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"unknown attention_implementation {implementation!r}; valid: {', '.join(ATTENTION_IMPLEMENTATIONS)}"
        )
    if implementation != "explicit" and attention_dropout_rate:
        raise ValueError(
            f"attention_implementation={implementation!r} (jax.nn.dot_product_attention) has no dropout "
            f"on the attention weights; use 'explicit' for attention_dropout_rate={attention_dropout_rate}"
        )


def dropout_mask(rate: float, deterministic: bool, shape, name: str):
    """Inverted-dropout multiplier `float32[shape]` (0 or 1 / (1 - rate)), or None where nothing
    is dropped. Drawn once per call (from an `nn.Dropout` submodule called `name`, so it takes the
    "dropout" RNG stream as `nn.Dropout` does) so that the class-token pass can apply the very
    mask rows the full pass applies. Call inside a compact method."""
    if deterministic or rate == 0.0:
        return None
    return nn.Dropout(rate, deterministic=False, name=name)(jnp.ones(shape, jnp.float32))


def _apply_mask(x, mask):
    # The product in float32, rounded once to x's dtype: a bf16 copy of 1 / (1 - rate) would
    # scale every kept activation by the same rounding error (up to 0.2%).
    return x if mask is None else (x * mask).astype(x.dtype)


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention over `[N, T, D]` tokens; returns `(out, weights)`.

    `weights` is `float32[N, heads, T, T]` (the softmax runs in float32 whatever `dtype` is), or
    None with a fused `implementation` ("xla" / "cudnn": `jax.nn.dot_product_attention`, which never
    forms the weights in memory on cuDNN; its softmax is float32 too).

    With `class_token=True` it returns `(out, weights, class_token_out)`: the class token's row
    (`[N, 1, D]`) computed again from its query alone, with the same parameters and the same
    attention-dropout mask row, so that a caller reading only that row lets XLA drop the other
    T - 1 queries' work. It is always written out (one query: a fused kernel gains nothing).
    """

    num_heads: int
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    implementation: str = "explicit"

    @nn.compact
    def __call__(self, x, *, train: bool, class_token: bool = False):
        batch, tokens, dim = x.shape
        if dim % self.num_heads:
            raise ValueError(f"token dim {dim} is not divisible by num_heads={self.num_heads}")
        head_dim = dim // self.num_heads
        check_attention_implementation(self.implementation, self.dropout_rate)
        half_precision = jnp.dtype(self.dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
        if self.implementation == "cudnn" and (jax.default_backend() != "gpu" or not half_precision):
            raise ValueError(
                f"attention_implementation='cudnn' needs an NVIDIA GPU and dtype bfloat16 or float16; here "
                f"the backend is {jax.default_backend()!r} and dtype {jnp.dtype(self.dtype).name}: use 'xla'"
            )
        qkv = _dense(3 * dim, dtype=self.dtype, name="in_proj")(x)  # [N, T, 3D]
        out_proj = _dense(dim, dtype=self.dtype, name="out_proj")
        qkv = qkv.reshape((batch, tokens, 3, self.num_heads, head_dim))  # [N, T, 3, H, Dh]
        # One explicit transpose to heads-major [3, N, H, T, Dh], so both attention matmuls are
        # plain batched matmuls over (N, H): on CPU the token-major einsums made XLA transpose
        # inside each of them (attention forward 80 -> 51 ms, ViT-B/16 block at batch 8). The
        # fused forms read `qkv` instead; XLA drops the transpose where nothing else reads it.
        heads_major = qkv.transpose((2, 0, 3, 1, 4))
        weights = mask = None
        if self.implementation != "explicit":
            out = jax.nn.dot_product_attention(
                qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], scale=1.0 / head_dim**0.5,
                implementation=self.implementation,
            )  # [N, T, H, Dh]
            out = out_proj(out.reshape((batch, tokens, dim)))
        else:
            mask = dropout_mask(self.dropout_rate, not train, (batch, self.num_heads, tokens, tokens),
                                name="attention_dropout")
            out, weights = self._attend(heads_major[0], heads_major[1], heads_major[2], mask)
            out = out_proj(out)
        if not class_token:
            return out, weights
        query = heads_major[0][:, :, :1]  # [N, H, 1, Dh]: the class token's query alone
        class_out, _ = self._attend(query, heads_major[1], heads_major[2], None if mask is None else mask[:, :, :1])
        return out, weights, out_proj(class_out)

    def _attend(self, query, key, value, mask):
        """Heads-major `[N, H, Q, Dh]` queries over `[N, H, T, Dh]` keys/values -> `([N, Q, D],
        float32 weights [N, H, Q, T])`; `mask` multiplies the weights (attention dropout)."""
        batch, heads, queries, head_dim = query.shape
        query = query * jnp.asarray(1.0 / head_dim**0.5, self.dtype)
        logits = jnp.einsum("nhqd,nhkd->nhqk", query, key)
        weights = nn.softmax(logits.astype(jnp.float32), axis=-1)  # [N, H, Q, T]
        dropped = _apply_mask(weights, mask)
        out = jnp.einsum("nhqk,nhkd->nhqd", dropped.astype(self.dtype), value)  # [N, H, Q, Dh]
        return out.transpose((0, 2, 1, 3)).reshape((batch, queries, heads * head_dim)), weights


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)).

    `x` `[N, T, D]` -> `(x [N, T, D], attention weights)`; with `class_token=True`, `(x, weights,
    class_token_x [N, 1, D])`, the class token's row computed again from its own query (see
    `MultiHeadSelfAttention`) with the same dropout masks: equal to `x[:, :1]` up to float
    rounding, and all a caller that reads only the class token needs.
    """

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    attention_implementation: str = "explicit"

    @nn.compact
    def __call__(self, x, *, train: bool, class_token: bool = False):
        batch, tokens, dim = x.shape
        ln_1 = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="ln_1")
        ln_2 = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="ln_2")
        fc1 = _dense(self.mlp_dim, dtype=self.dtype, name="mlp_fc1")
        fc2 = _dense(dim, dtype=self.dtype, name="mlp_fc2")
        masks = [
            dropout_mask(self.dropout_rate, not train, (batch, tokens, width), name=name)
            for width, name in ((dim, "attention_out_dropout"), (self.mlp_dim, "mlp_dropout"), (dim, "mlp_out_dropout"))
        ]

        def mlp_residual(x, masks):
            y = nn.gelu(fc1(ln_2(x)), approximate=False)
            return x + _apply_mask(fc2(_apply_mask(y, masks[1])), masks[2])

        attended, weights, *class_attended = MultiHeadSelfAttention(
            self.num_heads, self.attention_dropout_rate, dtype=self.dtype,
            implementation=self.attention_implementation, name="self_attention",
        )(ln_1(x), train=train, class_token=class_token)
        out = mlp_residual(x + _apply_mask(attended, masks[0]), masks)
        if not class_token:
            return out, weights
        class_masks = [None if mask is None else mask[:, :1] for mask in masks]
        class_x = x[:, :1] + _apply_mask(class_attended[0], class_masks[0])
        return out, weights, mlp_residual(class_x, class_masks)


class VisionTransformer(nn.Module):
    """ViT. Input `float32[N, image_size, image_size, 3]`; returns `(logits float32[N, num_classes], features)`.

    `attention_implementation`: "explicit" (default; `features["attention"]` holds the maps),
    "xla" or "cudnn" (`jax.nn.dot_product_attention`; no "attention" in `features`; "cudnn" needs an
    NVIDIA GPU and bf16/fp16 `dtype`). The parameters are the same whichever is used.

    `class_token_pass` (default True): the last block also computes the class token's row from its
    own query (same parameters and dropout masks), and the logits read that row. The values are
    the full pass's up to float rounding, but a caller that reads only the logits (a train step's
    loss) skips the last block's attention queries, out_proj and MLP on the T - 1 patch tokens:
    ViT-B/16's train step compiles to 6% fewer FLOPs and ran 11% faster on a 2-core CPU. False:
    the logits read the full pass's class token (torchvision's computation).
    """

    num_classes: int
    image_size: int = 224
    patch_size: int = 16
    hidden_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    attention_implementation: str = "explicit"
    class_token_pass: bool = True

    @nn.compact
    def __call__(self, images, *, train: bool):
        if images.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(
                f"images must be {self.image_size}x{self.image_size} (the position embedding's size), "
                f"got {images.shape}"
            )
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.depth < 4:
            raise ValueError(f"depth must be >= 4 (features has four stages), got {self.depth}")
        features = {}
        patch = self.patch_size
        x = nn.Conv(
            self.hidden_dim,
            (patch, patch),
            strides=(patch, patch),
            padding="VALID",
            kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
            dtype=self.dtype,
            conv_general_dilated=layers.matmul_conv,  # patchify + matmul, same numbers
            name="conv_proj",
        )(images.astype(self.dtype))
        batch, grid_h, grid_w, dim = x.shape
        x = x.reshape((batch, grid_h * grid_w, dim))  # [N, P, D]
        class_token = self.param("class_token", nn.initializers.zeros, (1, 1, dim))
        x = jnp.concatenate([jnp.broadcast_to(class_token, (batch, 1, dim)).astype(x.dtype), x], axis=1)
        pos_embedding = self.param(
            "pos_embedding", nn.initializers.normal(0.02), (1, grid_h * grid_w + 1, dim)
        )
        x = x + pos_embedding.astype(x.dtype)  # [N, T, D]
        x = features["stem"] = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        stage_ends = {(self.depth * k) // 4: k for k in range(1, 5)}
        attention = []
        for i in range(self.depth):
            last = i == self.depth - 1
            x, weights, *class_token_x = EncoderBlock(
                self.num_heads,
                self.mlp_dim,
                self.dropout_rate,
                self.attention_dropout_rate,
                dtype=self.dtype,
                attention_implementation=self.attention_implementation,
                name=f"encoder_layer_{i}",
            )(x, train=train, class_token=last and self.class_token_pass)
            attention.append(weights)
            if i + 1 in stage_ends:
                features[f"stage{stage_ends[i + 1]}"] = x[:, 1:].reshape((batch, grid_h, grid_w, dim))
        # The logits read only the class token. With `class_token_pass` the last block also gives
        # that token's row computed from its own query; where the full output goes unused (a train
        # step's loss) XLA drops the last block's work on the patch tokens as dead code.
        if self.class_token_pass:
            x = class_token_x[0]  # [N, 1, D]
        x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="encoder_ln")(x)
        x = features["pre_logits"] = x[:, 0]
        if self.attention_implementation == "explicit":
            features["attention"] = jnp.stack(attention, axis=1)  # [N, depth, H, T, T]
        logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, dtype=self.dtype,
                          dot_general=layers.matmul_dot_general, name="head")(x)
        return logits.astype(jnp.float32), features


_tiny = dict(hidden_dim=192, depth=12, num_heads=3, mlp_dim=768)
_small = dict(hidden_dim=384, depth=12, num_heads=6, mlp_dim=1536)
_base = dict(hidden_dim=768, depth=12, num_heads=12, mlp_dim=3072)
_large = dict(hidden_dim=1024, depth=24, num_heads=16, mlp_dim=4096)

vit_ti_16 = functools.partial(VisionTransformer, patch_size=16, **_tiny)
vit_ti_32 = functools.partial(VisionTransformer, patch_size=32, **_tiny)
vit_s_16 = functools.partial(VisionTransformer, patch_size=16, **_small)
vit_s_32 = functools.partial(VisionTransformer, patch_size=32, **_small)
vit_b_16 = functools.partial(VisionTransformer, patch_size=16, **_base)
vit_b_32 = functools.partial(VisionTransformer, patch_size=32, **_base)
vit_l_16 = functools.partial(VisionTransformer, patch_size=16, **_large)
vit_l_32 = functools.partial(VisionTransformer, patch_size=32, **_large)
# For 32x32 CIFAR images: 8x8 = 64 patches of 4x4, 7 blocks of width 192 (2,103,562 parameters
# at 10 classes), in the spirit of Hassani et al. 2021's ViT-Lite-7/4.
vit_cifar = functools.partial(
    VisionTransformer, image_size=32, patch_size=4, hidden_dim=192, depth=7, num_heads=3, mlp_dim=384
)
