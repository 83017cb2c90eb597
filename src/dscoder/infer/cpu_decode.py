"""Inference on CPU through a native kernel (`cpu_decode.c`) for fp32 and bf16 models: linear
layers whose weights live in the kernel's panel layout (`PanelLinear`, for prompts), and
decoding steps that run the whole network in one call (`CpuDecoder`). Activations inside the
kernel are fp32 whatever the weights; a bf16 model keeps bf16 weights, embedding and caches.

The C source is compiled on first use with the system's C compiler (`$CC`, else `cc`) for the
machine it runs on (`-march=native`), and the library is kept under
`$XDG_CACHE_HOME/dscoder/kernels` (default `~/.cache/...`), named by a hash of the source, the
compiler, its flags and the CPU, so a machine never loads a library built for another. Where no
compiler works, `available()` is False and inference stays on PyTorch (slower, same results).
`DSCODER_CPU_KERNEL=0` turns the kernel off.

Every call runs on torch's thread count: the calling thread and helper threads the kernel
starts (POSIX threads, not OpenMP: see "work sharing" in cpu_decode.c for why), which claim
chunks of each product and of attention as they come free.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from dscoder.infer.layout import replace_linears
from dscoder.infer.quant import quantize_rows
from dscoder.model import Transformer
from dscoder.model.memory import huge_page_bytes

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_decode.c")
PANEL = 32  # output rows per panel, as in cpu_decode.c
MAX_HEAD_DIM = 256  # widest attention head, as MAX_HEAD_VECTORS in cpu_decode.c
# Tried in order: the fastest build first, then builds for compilers that lack a feature.
_FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp-simd", "-pthread"],
    ["-O3", "-fopenmp-simd", "-pthread"],
    ["-O3", "-pthread"],
)


# Weight formats, as in cpu_decode.c.
FP32, INT8, BF16 = 0, 1, 2


class _Matrix(ctypes.Structure):
    _fields_ = [("panels", ctypes.c_void_p), ("scales", ctypes.c_void_p), ("format", ctypes.c_int32)]


class _Layer(ctypes.Structure):
    _fields_ = [("attn_norm", ctypes.c_void_p), ("qkv", _Matrix), ("o", _Matrix), ("mlp_norm", ctypes.c_void_p),
                ("gate_up", _Matrix), ("down", _Matrix), ("k_cache", ctypes.c_void_p), ("v_cache", ctypes.c_void_p)]


class _Model(ctypes.Structure):
    _fields_ = [*((name, ctypes.c_int64) for name in
                  ("hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "layers", "max_seq")),
                ("eps", ctypes.c_float),
                ("bf16", ctypes.c_int32),
                *((name, ctypes.c_void_p) for name in ("embed", "norm", "rope_cos", "rope_sin")),
                ("output", _Matrix),
                ("layer", ctypes.POINTER(_Layer))]


def _cpu_fingerprint() -> str:
    """What the compiled code depends on: the CPU's model and instruction-set flags."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            return "".join(sorted({line for line in cpuinfo if line.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return platform.machine() + platform.processor()


def _kernel_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dscoder" / "kernels"


def _compile(compiler: str, flags: list[str], target: Path) -> bool:
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: processes starting together never load
    # a half-written library.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        command = [compiler, *flags, "-shared", "-fPIC", str(SOURCE), "-o", str(built), "-lm"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            log.debug("%s failed: %s", " ".join(command), result.stderr.strip())
            return False
        os.replace(built, target)
    return True


@functools.cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("DSCODER_CPU_KERNEL", "1") == "0":
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        log.info("no C compiler found: CPU decoding runs on PyTorch (install gcc for the faster kernel)")
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
        built_from = [SOURCE.read_bytes(), version.encode(), _cpu_fingerprint().encode()]
        for flags in _FLAG_SETS:
            key = hashlib.sha256(b"\0".join([*built_from, " ".join(flags).encode()])).hexdigest()[:16]
            target = _kernel_dir() / f"cpu_decode-{key}.so"
            if target.exists() or _compile(compiler, flags, target):
                library = ctypes.CDLL(str(target))
                library.decode_step.argtypes = [ctypes.POINTER(_Model), *[ctypes.c_void_p] * 3, ctypes.c_int64,
                                                ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
                library.decode_step.restype = ctypes.c_int
                library.panel_linear.argtypes = [*[ctypes.c_void_p] * 3, ctypes.c_int32, ctypes.c_void_p,
                                                 *[ctypes.c_int64] * 3, ctypes.c_int]
                library.panel_linear.restype = None
                library.pack_panels.argtypes = [*[ctypes.c_void_p] * 2, *[ctypes.c_int64] * 2, ctypes.c_int,
                                                ctypes.c_int]
                library.pack_panels.restype = None
                return library
    except (OSError, subprocess.SubprocessError) as error:
        log.info("the CPU decoding kernel could not be built (%s): decoding runs on PyTorch", error)
        return None
    log.info("%s could not compile the CPU decoding kernel: decoding runs on PyTorch", compiler)
    return None


def available() -> bool:
    """Whether the kernel is (or can be) built on this machine; builds it on first call."""
    return _library() is not None


def _kernel() -> ctypes.CDLL:
    library = _library()
    if library is None:
        raise RuntimeError("the CPU kernel is not available (no working C compiler, or DSCODER_CPU_KERNEL=0)")
    return library


class PanelLinear(nn.Module):
    """A bias-free linear layer for inference on CPU, its weight [out, in] (copied) held in the
    kernel's panels: `panels[q, i, j]` = weight[q * PANEL + j, i], zero-padded. bf16 weights stay
    bf16 (a bf16 model: bf16 inputs and outputs), others become fp32; either gives the
    nn.Linear's results up to the order of fp32 sums (bf16 outputs rounded once). `int8` stores
    them as int8 with one fp32 scale per output row (`quant.quantize_rows`, as Int8Linear), a
    quarter of fp32's bytes to read per token. No gradients."""

    def __init__(self, weight: Tensor, int8: bool = False, storage: Tensor | None = None) -> None:
        """`storage`: where to keep the panels (uint8, `panel_bytes` long, 64-byte aligned);
        by default a buffer of their own."""
        super().__init__()
        # The dtype of inputs and outputs: the model's.
        self.dtype = torch.bfloat16 if weight.dtype == torch.bfloat16 else torch.float32
        weight = weight.detach().to("cpu", torch.float32 if int8 else self.dtype).contiguous()
        self.out_features, self.in_features = weight.shape
        count = -(-self.out_features // PANEL)
        scales = None
        if int8:
            weight, row_scales = quantize_rows(weight)
            scales = torch.zeros(count * PANEL)
            scales[: self.out_features] = row_scales
        self.format = INT8 if int8 else BF16 if weight.dtype == torch.bfloat16 else FP32
        self.register_buffer("scales", scales)
        if storage is None:
            (storage,) = huge_page_arena([panel_bytes(weight, int8)])
        self.register_buffer("panels", storage.view(weight.dtype).view(count, self.in_features, PANEL))
        kernel = _kernel()
        kernel.pack_panels(weight.data_ptr(), self.panels.data_ptr(), self.out_features, self.in_features,
                           weight.element_size(), torch.get_num_threads())

    def matrix(self) -> _Matrix:
        """The kernel's description of this weight."""
        return _Matrix(self.panels.data_ptr(), None if self.scales is None else self.scales.data_ptr(), self.format)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != self.dtype or x.device.type != "cpu":
            raise TypeError(f"this PanelLinear takes {self.dtype} CPU inputs, got {x.dtype} on {x.device}")
        if x.requires_grad and torch.is_grad_enabled():
            raise RuntimeError("PanelLinear is for inference: it computes no gradients")
        rows = x.reshape(-1, self.in_features).float().contiguous()
        y = torch.empty(rows.shape[0], self.out_features)
        matrix = self.matrix()
        _kernel().panel_linear(rows.data_ptr(), matrix.panels, matrix.scales, matrix.format, y.data_ptr(),
                               rows.shape[0], self.in_features, self.out_features, torch.get_num_threads())
        return y.to(self.dtype).view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        weights = {FP32: "fp32", INT8: "int8", BF16: "bf16"}[self.format]
        return f"in_features={self.in_features}, out_features={self.out_features}, panels={PANEL}, {weights}"


def panel_bytes(weight: Tensor, int8: bool = False) -> int:
    """Bytes of the panels a PanelLinear keeps `weight` [out, in] in: int8 if asked, else bf16
    for bf16 weights and fp32 for the others."""
    out_features, in_features = weight.shape
    element = 1 if int8 else 2 if weight.dtype == torch.bfloat16 else 4
    return -(-out_features // PANEL) * PANEL * in_features * element


def huge_page_arena(sizes: list[int]) -> list[Tensor]:
    """Pieces (uint8, of these byte sizes, each 64-byte aligned) of one allocation in 2 MB pages
    (`model.memory`): one arena gives small matrices 2 MB pages too, which an allocation of
    their own would not get."""
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += -(-size // 64) * 64
    arena = huge_page_bytes(total)
    return [arena[offset: offset + size] for offset, size in zip(offsets, sizes, strict=True)]


def use_panels(model: nn.Module, int8: bool = False) -> nn.Module:
    """Replace, in place, every bias-free nn.Linear of `model` by a PanelLinear (with int8
    weights if `int8`), all panels in one `huge_page_arena`; returns `model`."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.bias is None]
    storage = huge_page_arena([panel_bytes(m.weight, int8) for m in linears])
    pieces = dict(zip(map(id, linears), storage, strict=True))
    return replace_linears(model, lambda linear: PanelLinear(linear.weight, int8, pieces[id(linear)]))


# The dtypes of models the kernel runs (their embedding, caches and activations at its edges).
KERNEL_DTYPES = (torch.float32, torch.bfloat16)


def unsupported_reason(model: Transformer) -> str | None:
    """Why `CpuDecoder` cannot run `model`, or None if it can."""
    if not available():
        return "the CPU kernel is not available"
    if model.cache is None:
        return "the model has no key/value cache"
    if model.config.head_dim > MAX_HEAD_DIM:
        return f"the heads are {model.config.head_dim} wide; the kernel takes at most {MAX_HEAD_DIM}"
    embedding, cache = model.embed_tokens.weight, model.cache.k
    if embedding.dtype not in KERNEL_DTYPES or cache.dtype != embedding.dtype or cache.device.type != "cpu":
        return (f"the embedding is {embedding.dtype} and the cache {cache.dtype} on {cache.device.type}; the "
                "kernel takes both fp32 or both bf16, on the CPU")
    if embedding.device.type != "cpu" or not embedding.is_contiguous():
        return "the embedding is not a contiguous CPU tensor"
    tensors = [model.norm.weight, model.rope_cos, model.rope_sin]
    linears = [model.output]
    for layer in model.layers:
        attention, mlp = layer.self_attn, layer.mlp
        if attention.qkv_proj is None or mlp.gate_up_proj is None:
            return "the projections are not fused (Transformer.fuse_projections)"
        tensors += [layer.input_layernorm.weight, layer.post_attention_layernorm.weight]
        linears += [attention.qkv_proj, attention.o_proj, mlp.gate_up_proj, mlp.down_proj]
    if not all(isinstance(linear, PanelLinear) for linear in linears):
        return "the linear layers are not PanelLinear (use_panels)"
    if any(linear.dtype != embedding.dtype for linear in linears):
        return "the linear layers' dtype differs from the embedding's"
    if not all(tensor.device.type == "cpu" and tensor.is_floating_point() for tensor in tensors):
        return "a norm or RoPE table is not a floating-point CPU tensor"
    return None


class CpuDecoder:
    """Runs `Transformer` decoding steps through the kernel, reading the model's own weights
    (fused projections in PanelLinear layers: `fuse_projections`, then `use_panels`) and
    writing its own caches. Build it after `setup_cache`: it holds the caches' addresses.
    Check `unsupported_reason(model)` first."""

    def __init__(self, model: Transformer) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"CpuDecoder cannot run this model: {reason}")
        library = _library()
        assert library is not None
        self._step = library.decode_step
        config = model.config
        self._model_module = model
        # The structures hold these tensors' addresses; holding the tensors keeps them valid
        # even if the model is given another cache (which a step then refuses to write past).
        self._caches = [(layer.self_attn.kv_cache.k, layer.self_attn.kv_cache.v) for layer in model.layers]
        # The kernel reads norms and RoPE tables as fp32 (copies where the model's are not).
        self._fp32: list[Tensor] = []
        self._layers = (_Layer * config.num_layers)(*(
            _Layer(self._fp32_address(layer.input_layernorm.weight), layer.self_attn.qkv_proj.matrix(),
                   layer.self_attn.o_proj.matrix(), self._fp32_address(layer.post_attention_layernorm.weight),
                   layer.mlp.gate_up_proj.matrix(), layer.mlp.down_proj.matrix(),
                   layer.self_attn.kv_cache.k.data_ptr(), layer.self_attn.kv_cache.v.data_ptr())
            for layer in model.layers))
        self.vocab_size = config.vocab_size
        self.cache_rows, _, self.max_seq, _ = model.cache.k.shape
        self._model = _Model(config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim,
                             config.intermediate_size, config.vocab_size, config.num_layers, self.max_seq,
                             model.norm.eps, model.embed_tokens.weight.dtype == torch.bfloat16,
                             model.embed_tokens.weight.data_ptr(), self._fp32_address(model.norm.weight),
                             self._fp32_address(model.rope_cos), self._fp32_address(model.rope_sin),
                             model.output.matrix(), self._layers)

    def _fp32_address(self, tensor: Tensor) -> int:
        """The address of `tensor` as a contiguous fp32 tensor: its own, or a copy's kept here."""
        tensor = tensor.detach().float().contiguous()
        self._fp32.append(tensor)
        return tensor.data_ptr()

    def __call__(self, tokens: Sequence[int], positions: Sequence[int], rows: Sequence[int],
                 outputs: Sequence[int] | None = None) -> Tensor:
        """fp32 logits for tokens[b] at position positions[b] of cache row rows[b], each b a
        row of one step: its key and value are stored there, and it attends over the row's
        positions up to its own. Rows may be the newest tokens of different sequences or
        consecutive positions of one (a piece of a prompt, each position seeing those before
        it), or both. Logits [len(outputs), vocab] for the rows `outputs` (indices of b; all
        rows, [batch, vocab], if None): a prompt needs its last position's only."""
        batch = len(tokens)
        if not (batch == len(positions) == len(rows)) or batch == 0:
            raise ValueError("tokens, positions and rows must be non-empty and of one length")
        if not all(0 <= t < self.vocab_size for t in tokens):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        if not all(0 <= p < self.max_seq for p in positions) or not all(0 <= r < self.cache_rows for r in rows):
            raise ValueError("a position or cache row lies outside the cache")
        if len(set(zip(rows, positions))) != batch:
            raise ValueError("two tokens of one step share a cache row and position")
        if outputs is not None and (not all(0 <= b < batch for b in outputs) or len(set(outputs)) != len(outputs)):
            raise ValueError(f"output rows must be distinct and lie in [0, {batch})")
        # setup_cache replaces every layer's cache at once: the first one tells.
        if self._model_module.cache is None or self._model_module.cache.k is not self._caches[0][0]:
            raise RuntimeError("the model's cache was replaced (setup_cache) after this decoder was built")
        ids = torch.tensor([list(tokens), list(positions), list(rows)], dtype=torch.int64)
        # One spare element: no outputs must still pass an address (NULL means all rows).
        chosen = None if outputs is None else torch.tensor([*outputs, 0], dtype=torch.int64)
        logits = torch.empty(batch if outputs is None else len(outputs), self.vocab_size)
        status = self._step(ctypes.byref(self._model), ids[0].data_ptr(), ids[1].data_ptr(), ids[2].data_ptr(),
                            batch, None if chosen is None else chosen.data_ptr(), len(logits), logits.data_ptr(),
                            torch.get_num_threads())
        if status == -2:  # unsupported_reason refuses such models first
            raise ValueError(f"the CPU decoding kernel takes heads of at most {MAX_HEAD_DIM}")
        if status == -3:  # checked above
            raise ValueError("the CPU decoding kernel was given output rows outside the batch")
        if status != 0:
            raise MemoryError("the CPU decoding kernel could not allocate its scratch memory")
        return logits
