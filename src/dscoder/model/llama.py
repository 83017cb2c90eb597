"""The DeepSeek-Coder decoder: LLaMA with RMSNorm, SwiGLU and rotary embeddings, in one file.

One module serves training (causal attention over whole sequences, optional activation
checkpointing) and generation (a key/value cache written at per-row positions, so rows of a
batch may hold sequences of different lengths at different stages: continuous batching).

Parameter names follow the Hugging Face layout (`layers.N.self_attn.q_proj`, ...) so that
checkpoints map by a prefix, and q/k projections use the same rotate-half RoPE layout, so
Hugging Face weights load without permutation. The LM head is `output`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from dscoder.errors import UserError
from dscoder.model import onednn
from dscoder.model.config import ModelConfig
from dscoder.model.memory import huge_page_zeros


class Linear(nn.Linear):
    """A bias-free nn.Linear whose large fp32 CPU products run through oneDNN (model/onednn.py)."""

    def __init__(self, in_features: int, out_features: int, device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, bias=False, device=device)

    def forward(self, x: Tensor) -> Tensor:
        return onednn.linear(x, self.weight)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == self.weight.dtype == torch.float32:
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)  # one fused kernel
        # Normalise in fp32 and cast back before applying the gain, as the reference does,
        # so bf16/fp16 activations round the same way.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_tables(config: ModelConfig, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotary angles, [max_position_embeddings, head_dim], in fp32.

    Linear scaling divides every position by the factor (for short inputs too). The angles are
    formed as the reference forms them (frequencies scaled, then multiplied by integer
    positions in fp32) so the tables agree with it to the last bit.
    """
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, device=device).float() / dim))
    inv_freq = inv_freq * config.rope_position_scale
    positions = torch.arange(config.max_position_embeddings, device=device).float()
    angles = torch.outer(positions, inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x [B, T, H, D] by the angles in cos/sin [B or 1, T, 1, D] (rotate-half layout)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class KVCache(nn.Module):
    """One layer's keys and values for every position seen so far, allocated once.

    k, v: [max_batch, num_kv_heads, max_seq_len, head_dim]. Slot i of a row holds the token at
    absolute position i of the sequence that row is serving.
    """

    def __init__(self, max_batch_size: int, max_seq_len: int, num_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        shape = (max_batch_size, num_kv_heads, max_seq_len, head_dim)
        for name in ("k", "v"):
            if torch.device(device).type == "cpu":  # read end to end every step: 2 MB pages
                cache = huge_page_zeros(shape, dtype)
            else:
                cache = torch.zeros(shape, dtype=dtype, device=device)
            self.register_buffer(name, cache, persistent=False)

    def update(self, k: Tensor, v: Tensor, access: CacheAccess) -> tuple[Tensor, Tensor]:
        """Store k, v [B, T, Hkv, D] at the slots of `access`; return the rows' keys and values
        for slots [0, kv_len) as [B, Hkv, kv_len, D]."""
        # Advanced indices on dims 0 and 2 broadcast to [B, T], so the indexed view is
        # [B, T, Hkv, D]: exactly k's layout, no transpose copy needed.
        self.k[access.row_index, :, access.input_pos] = k.to(self.k.dtype)
        self.v[access.row_index, :, access.input_pos] = v.to(self.v.dtype)
        keys, values = self.k[:, :, : access.kv_len], self.v[:, :, : access.kv_len]
        if access.rows is None:
            batch = k.shape[0]
            return keys[:batch], values[:batch]
        return keys.index_select(0, access.rows), values.index_select(0, access.rows)


@dataclass
class CacheAccess:
    """Where one forward call writes into the caches and what its queries may read back.

    Built once per forward call and shared by every layer.
    """

    input_pos: Tensor  # [B, T] absolute position (= cache slot) of each new token
    rows: Tensor | None  # [B] cache row of each batch row; None = rows 0..B-1
    row_index: Tensor  # [B, 1] the cache row of each batch row, for indexed writes
    kv_len: int  # slots [0, kv_len) are read
    mask: Tensor  # [B, 1, T, kv_len] bool: a query sees the slots up to its own position


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        hidden, kv_dim = config.hidden_size, config.num_kv_heads * config.head_dim
        self.q_proj = Linear(hidden, config.num_heads * config.head_dim)
        self.k_proj = Linear(hidden, kv_dim)
        self.v_proj = Linear(hidden, kv_dim)
        self.o_proj = Linear(config.num_heads * config.head_dim, hidden)
        self.qkv_proj: nn.Linear | None = None  # set by fuse_projections
        self.kv_cache: KVCache | None = None

    def fuse_projections(self) -> None:
        """Replace q_proj, k_proj and v_proj by one projection to [q; k; v] (for inference:
        one matrix product reads the three matrices in a single pass, with a third of the calls)."""
        self.qkv_proj = _concatenated(self.q_proj, self.k_proj, self.v_proj)
        del self.q_proj, self.k_proj, self.v_proj

    def _rotated_qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q [B, T, H, D] and k [B, T, Hkv, D] with RoPE applied, and v [B, T, Hkv, D]."""
        batch, length, _ = x.shape
        heads, kv_heads, dim = self.num_heads, self.num_kv_heads, self.head_dim
        if self.qkv_proj is None:
            q = self.q_proj(x).view(batch, length, heads, dim)
            k = self.k_proj(x).view(batch, length, kv_heads, dim)
            v = self.v_proj(x).view(batch, length, kv_heads, dim)
            return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v
        # q and k sit side by side in the fused output: one rotation serves both heads' sets
        # (decoding pays per operation, not per element).
        qkv = self.qkv_proj(x).view(batch, length, heads + 2 * kv_heads, dim)
        qk = apply_rope(qkv[:, :, : heads + kv_heads], cos, sin)
        return qk[:, :, :heads], qk[:, :, heads:], qkv[:, :, heads + kv_heads:]

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, access: CacheAccess | None) -> Tensor:
        batch, length, _ = x.shape
        q, k, v = self._rotated_qkv(x, cos, sin)
        grouped = self.num_heads != self.num_kv_heads
        if access is None:
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True, enable_gqa=grouped)
        else:
            assert self.kv_cache is not None
            keys, values = self.kv_cache.update(k, v, access)
            y = F.scaled_dot_product_attention(q.transpose(1, 2), keys.to(q.dtype), values.to(q.dtype),
                                               attn_mask=access.mask, enable_gqa=grouped)
        return self.o_proj(y.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size)
        self.gate_up_proj: nn.Linear | None = None  # set by fuse_projections

    def fuse_projections(self) -> None:
        """Replace gate_proj and up_proj by one projection to [gate; up] (for inference)."""
        self.gate_up_proj = _concatenated(self.gate_proj, self.up_proj)
        del self.gate_proj, self.up_proj

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_up_proj is None:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


def _concatenated(*linears: nn.Linear) -> nn.Linear:
    """One bias-free, frozen nn.Linear whose output is the outputs of `linears`, concatenated."""
    weight = torch.cat([linear.weight.detach() for linear in linears])
    fused = Linear(weight.shape[1], weight.shape[0], device="meta")
    fused.weight = nn.Parameter(weight, requires_grad=False)
    return fused


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = FeedForward(config)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, access: CacheAccess | None) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, access)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    """The decoder. `forward` gives fp32 logits; `forward_hidden` the final-norm hidden states
    (training may apply `output` and the loss in chunks)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.output = Linear(config.hidden_size, config.vocab_size)
        # Recompute each layer's activations in the backward pass instead of storing them.
        self.gradient_checkpointing = False
        table_shape = (config.max_position_embeddings, config.head_dim)
        self.register_buffer("rope_cos", torch.empty(table_shape), persistent=False)
        self.register_buffer("rope_sin", torch.empty(table_shape), persistent=False)
        self.init_weights()

    def tie_weights(self) -> None:
        """Share the embedding matrix with the LM head when the config asks for it."""
        if self.config.tie_word_embeddings:
            self.output.weight = self.embed_tokens.weight

    def init_rope(self, device: torch.device | str | None = None) -> None:
        """(Re)compute the RoPE tables, e.g. after building on the meta device or `to_empty`.

        They are derived from the config, not stored in checkpoints.
        """
        device = self.rope_cos.device if device is None else device
        self.rope_cos, self.rope_sin = rope_tables(self.config, device)

    def init_weights(self, std: float = 0.02) -> None:
        """LLaMA initialisation: normal(0, std) matrices, unit norm gains; rebuilds RoPE tables."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        self.tie_weights()
        self.init_rope()

    def setup_cache(self, max_batch_size: int, max_seq_len: int, dtype: torch.dtype | None = None,
                    device: torch.device | str | None = None) -> None:
        """Allocate every layer's key/value cache (replacing any previous one).

        dtype and device default to the model's.
        """
        if max_seq_len > self.config.max_position_embeddings:
            raise UserError(f"a cache of {max_seq_len} positions exceeds the model's "
                            f"max_position_embeddings {self.config.max_position_embeddings}")
        if max_batch_size <= 0 or max_seq_len <= 0:
            raise UserError("cache batch size and length must be positive")
        weight = self.embed_tokens.weight  # the activations' dtype (linear layers may be quantized)
        dtype = weight.dtype if dtype is None else dtype
        device = weight.device if device is None else device
        for layer in self.layers:
            layer.self_attn.kv_cache = KVCache(max_batch_size, max_seq_len, self.config.num_kv_heads,
                                               self.config.head_dim, dtype, device)

    def fuse_projections(self) -> None:
        """Merge each layer's q/k/v and gate/up projections into one matrix each, for decoding.

        Checkpoints are not written from a fused model (its parameter names differ from the
        Hugging Face layout), and it does not train: the fused weights are frozen.
        """
        for layer in self.layers:
            layer.self_attn.fuse_projections()
            layer.mlp.fuse_projections()

    @property
    def cache(self) -> KVCache | None:
        """The first layer's cache (every layer's has the same shape), or None."""
        return self.layers[0].self_attn.kv_cache

    def forward_hidden(self, tokens: Tensor, input_pos: Tensor | None = None,
                       rows: Tensor | None = None) -> Tensor:
        """Final-norm hidden states [B, T, hidden] for tokens [B, T].

        input_pos None: positions 0..T-1 in every row, causal attention, the cache untouched
        (training, scoring). input_pos [B, T] with a cache: each token's k/v is written at slot
        input_pos of cache row rows[b] (rows None = 0..B-1), and each query attends to the
        slots up to its own position. Without a cache, input_pos only sets the rotary positions.
        """
        if tokens.dim() != 2:
            raise UserError(f"tokens must be [batch, length], got shape {tuple(tokens.shape)}")
        batch, length = tokens.shape
        x = self.embed_tokens(tokens)
        if input_pos is None:
            if length > self.config.max_position_embeddings:
                raise UserError(f"{length} tokens exceed the model's max_position_embeddings "
                                f"{self.config.max_position_embeddings}")
            cos, sin = self.rope_cos[:length][None, :, None], self.rope_sin[:length][None, :, None]
            access = None
        else:
            if input_pos.shape != tokens.shape:
                raise UserError(f"input_pos shape {tuple(input_pos.shape)} differs from tokens "
                                f"shape {tuple(tokens.shape)}")
            cos, sin = self.rope_cos[input_pos][:, :, None], self.rope_sin[input_pos][:, :, None]
            access = self._cache_access(input_pos, rows) if self.cache is not None else None
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if checkpointing:
                x = checkpoint(layer, x, cos, sin, access, use_reentrant=False)
            else:
                x = layer(x, cos, sin, access)
        return self.norm(x)

    def forward(self, tokens: Tensor, input_pos: Tensor | None = None, rows: Tensor | None = None) -> Tensor:
        """fp32 logits [B, T, vocab]; arguments as in `forward_hidden`."""
        return self.output(self.forward_hidden(tokens, input_pos, rows)).float()

    def _cache_access(self, input_pos: Tensor, rows: Tensor | None) -> CacheAccess:
        cache = self.cache
        assert cache is not None
        max_batch, _, cache_len, _ = cache.k.shape
        batch = input_pos.shape[0]
        if rows is None:
            if batch > max_batch:
                raise UserError(f"batch of {batch} rows exceeds the cache's {max_batch}")
            row_index = torch.arange(batch, device=input_pos.device)
        else:
            if rows.shape != (batch,):
                raise UserError(f"rows must have shape ({batch},), got {tuple(rows.shape)}")
            row_index = rows
        if input_pos.device.type == "cpu":
            # On CPU the largest position is free to read, and attending over the filled prefix
            # of the cache instead of all of it is what keeps decoding fast with a long cache.
            # On an accelerator that read would stall the stream, so attend over every slot.
            kv_len = int(input_pos.max()) + 1
            if kv_len > cache_len or int(input_pos.min()) < 0:
                raise UserError(f"positions must lie in [0, {cache_len}), the cache's length")
        else:
            kv_len = cache_len
        slots = torch.arange(kv_len, device=input_pos.device)
        mask = (slots <= input_pos[:, :, None])[:, None]
        return CacheAccess(input_pos=input_pos, rows=rows, row_index=row_index[:, None],
                           kv_len=kv_len, mask=mask)
