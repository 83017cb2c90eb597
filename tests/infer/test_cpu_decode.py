"""The native CPU decoding kernel against the PyTorch model, and how it is built or refused."""

from __future__ import annotations

import copy

import pytest
import torch

from dscoder.infer import Engine, Request, SamplingParams, cpu_decode
from dscoder.infer.layout import use_cpu_linears
from dscoder.infer.quant import quantize_int8, quantize_rows
from dscoder.model import PRESETS, ModelConfig, Transformer

# Grouped-query attention (4 query heads share 2 key/value heads), a vocabulary that is no
# multiple of a vector width.
CONFIG = PRESETS["test"].replace(vocab_size=997)


@pytest.fixture
def fresh_library(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """The kernel built anew, from an empty cache directory, and forgotten afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cpu_decode._library.cache_clear()
    yield tmp_path
    cpu_decode._library.cache_clear()


def decoding_model(seed: int = 0, rows: int = 4, length: int = 64, config: ModelConfig = CONFIG) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(config).eval()
    model.init_weights(std=0.1)
    model.fuse_projections()
    cpu_decode.use_panels(model)
    model.setup_cache(rows, length)
    return model


def assert_decodes_on_pytorch(model: Transformer, tokenizer) -> None:
    engine = Engine(model, tokenizer, max_batch_size=1, max_seq_len=16)
    assert engine._cpu_decoder is None
    (result,) = engine.generate([Request([1, 2, 3], SamplingParams(max_new_tokens=4), ignore_eos=True)])
    assert len(result.token_ids) == 4


def test_the_kernel_builds_into_the_cache_directory(fresh_library):
    assert cpu_decode.available()
    (library,) = (fresh_library / "dscoder" / "kernels").glob("cpu_decode-*.so")
    assert library.stat().st_size > 0


@pytest.mark.parametrize("rows", [1, 3, 8, 19])
@pytest.mark.parametrize("out_features", [32, 75])
def test_the_panel_product_equals_f_linear(rows: int, out_features: int):
    # 19 rows: two tiles of 8 and one of 3; 75 outputs: a last panel of 11.
    torch.manual_seed(rows)
    linear = torch.nn.Linear(37, out_features, bias=False)
    panel = cpu_decode.PanelLinear(linear.weight)
    assert panel.panels.shape == (-(-out_features // cpu_decode.PANEL), 37, cpu_decode.PANEL)
    x = torch.randn(rows, 37)
    with torch.no_grad():
        torch.testing.assert_close(panel(x), linear(x), rtol=1e-5, atol=1e-5)
        x3 = torch.randn(2, rows, 37).transpose(0, 1)  # 3-D and not contiguous
        torch.testing.assert_close(panel(x3), linear(x3), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError):
        panel(x.double())


def test_steps_give_the_models_logits_for_rows_at_different_positions():
    model = decoding_model()
    decoder = cpu_decode.CpuDecoder(model)
    torch.manual_seed(1)
    # Two sequences in cache rows 3 and 1 (out of order), prompts of different lengths.
    sequences = {3: torch.randint(0, CONFIG.vocab_size, (5,)).tolist(),
                 1: torch.randint(0, CONFIG.vocab_size, (11,)).tolist()}
    with torch.inference_mode():
        for row, prompt in sequences.items():
            model.forward_hidden(torch.tensor([prompt]), torch.arange(len(prompt))[None], torch.tensor([row]))
        for step in range(5):
            new = [(7 * step + 3) % CONFIG.vocab_size, (11 * step + 5) % CONFIG.vocab_size]
            rows = list(sequences)
            logits = decoder(new, [len(sequences[r]) for r in rows], rows)
            for row, token in zip(rows, new, strict=True):
                sequences[row].append(token)
            expected = torch.stack([model(torch.tensor([sequences[r]]))[0, -1] for r in rows])
            torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("head_dim", [24, 64, 128])
def test_steps_give_the_models_logits_for_other_head_sizes(head_dim: int):
    # 64 and 128 (the released models' size) run code compiled for that size, 24 the general
    # code with a partly filled vector per key; 37-40 cached slots: two blocks of 16 and a tail.
    config = CONFIG.replace(hidden_size=2 * head_dim, num_heads=2, num_kv_heads=1, intermediate_size=3 * head_dim)
    model = decoding_model(rows=2, length=48, config=config)
    decoder = cpu_decode.CpuDecoder(model)
    torch.manual_seed(2)
    sequence = torch.randint(0, config.vocab_size, (36,)).tolist()
    with torch.inference_mode():
        model.forward_hidden(torch.tensor([sequence]), torch.arange(len(sequence))[None], torch.tensor([1]))
        for token in (4, 500, 996, 17):
            logits = decoder([token], [len(sequence)], [1])
            sequence.append(token)
            torch.testing.assert_close(logits[0], model(torch.tensor([sequence]))[0, -1], rtol=1e-4, atol=1e-5)


def test_the_kernel_writes_the_same_cache_entries_as_pytorch():
    kernel_model, torch_model = decoding_model(), decoding_model()
    prompt = [5, 9, 2]
    with torch.inference_mode():
        for model in (kernel_model, torch_model):
            model.forward_hidden(torch.tensor([prompt]), torch.arange(3)[None], torch.tensor([2]))
        cpu_decode.CpuDecoder(kernel_model)([42], [3], [2])
        torch_model.forward_hidden(torch.tensor([[42]]), torch.tensor([[3]]), torch.tensor([2]))
    for ours, theirs in zip(kernel_model.layers, torch_model.layers, strict=True):
        torch.testing.assert_close(ours.self_attn.kv_cache.k, theirs.self_attn.kv_cache.k, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.self_attn.kv_cache.v, theirs.self_attn.kv_cache.v, rtol=1e-5, atol=1e-6)


def test_a_nan_in_the_cache_reaches_the_logits_as_in_pytorch():
    model = decoding_model(rows=1, length=16)
    with torch.inference_mode():
        model.forward_hidden(torch.tensor([[3, 4, 5, 6, 7]]), torch.arange(5)[None])
        for layer in model.layers:
            layer.self_attn.kv_cache.k[0, :, 2, 0] = float("nan")
        assert not cpu_decode.CpuDecoder(model)([6], [5], [0]).isfinite().all()


def test_bad_steps_are_refused_before_the_kernel_runs():
    model = decoding_model(rows=2, length=16)
    decoder = cpu_decode.CpuDecoder(model)
    before = model.cache.k.clone()
    for tokens, positions, rows in (([CONFIG.vocab_size], [0], [0]), ([1], [16], [0]), ([1], [0], [2]),
                                    ([1, 2], [0, 0], [1, 1]), ([1], [0, 1], [0]), ([], [], [])):
        with pytest.raises(ValueError):
            decoder(tokens, positions, rows)
    # Output rows: inside the batch, each once (the kernel gathers them into [batch, hidden]).
    for outputs in ([2], [-1], [0, 0], [0, 1, 0]):
        with pytest.raises(ValueError):
            decoder([1, 2], [0, 1], [0, 0], outputs)
    assert torch.equal(model.cache.k, before)


def test_prompt_positions_as_rows_give_the_models_logits():
    # Two prompts interleaved in one call (each position sees its own sequence's earlier ones),
    # logits asked for in another order than the rows; then both continue in a second call.
    model = decoding_model()
    decoder = cpu_decode.CpuDecoder(model)
    torch.manual_seed(3)
    prompts = {2: torch.randint(0, CONFIG.vocab_size, (9,)).tolist(),
               0: torch.randint(0, CONFIG.vocab_size, (6,)).tolist()}
    with torch.inference_mode():
        full = {row: model(torch.tensor([prompt]))[0] for row, prompt in prompts.items()}
        first = [(prompts[row][p], p, row) for p in range(5) for row in prompts]  # positions 0-4 of both
        tokens, positions, rows = zip(*first, strict=True)
        wanted = [9, 0, 4]  # row 0 at 4, row 2 at 0, row 2 at 2
        logits = decoder(tokens, positions, rows, wanted)
        expected = torch.stack([full[rows[i]][positions[i]] for i in wanted])
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
        rest = [(prompts[row][p], p, row) for row in prompts for p in range(5, len(prompts[row]))]
        tokens, positions, rows = zip(*rest, strict=True)
        logits = decoder(tokens, positions, rows, [len(rest) - 1, 3])  # the last of each prompt
        expected = torch.stack([full[0][5], full[2][8]])
        torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)
        assert decoder(tokens[:1], positions[:1], rows[:1], []).shape == (0, CONFIG.vocab_size)


@pytest.mark.parametrize(("head_dim", "heads", "kv_heads"), [(64, 4, 4), (128, 4, 1), (24, 6, 3), (16, 34, 1)])
def test_long_prompt_pieces_attend_in_groups_as_the_model_does(head_dim: int, heads: int, kv_heads: int):
    """The kernel attends a run of a prompt's positions with each key/value head's queries
    together (up to 16: positions times the heads of a group, a group of 34 heads in three
    blocks). Runs of 45 and 38 positions, one continuing a prompt begun in an earlier call,
    beside a decoding row; every position's logits against the model's."""
    config = CONFIG.replace(hidden_size=heads * head_dim, num_heads=heads, num_kv_heads=kv_heads,
                            intermediate_size=96)
    model = decoding_model(rows=3, length=128, config=config)
    decoder = cpu_decode.CpuDecoder(model)
    torch.manual_seed(4)
    prompts = {0: torch.randint(0, config.vocab_size, (70,)).tolist(),
               2: torch.randint(0, config.vocab_size, (45,)).tolist(),
               1: torch.randint(0, config.vocab_size, (20,)).tolist()}
    with torch.inference_mode():
        full = {row: model(torch.tensor([prompt]))[0] for row, prompt in prompts.items()}
        decoder(prompts[0][:32], list(range(32)), [0] * 32, [])
        decoder(prompts[1][:19], list(range(19)), [1] * 19, [])
        steps = ([(prompts[1][19], 19, 1)] + [(prompts[0][p], p, 0) for p in range(32, 70)]
                 + [(prompts[2][p], p, 2) for p in range(45)])
        tokens, positions, rows = zip(*steps, strict=True)
        logits = decoder(tokens, positions, rows)
    expected = torch.stack([full[row][position] for _, position, row in steps])
    # fp32 sums in another order than PyTorch's: ~4e-5 apart at these widths (as before grouping)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_models_the_kernel_cannot_run_are_named_and_decode_on_pytorch(tokenizer):
    torch.manual_seed(0)
    unfused = Transformer(CONFIG.replace(vocab_size=tokenizer.vocab_size))
    unfused.setup_cache(1, 16)
    assert "fused" in cpu_decode.unsupported_reason(unfused)
    for other_layers in (quantize_int8, lambda model: use_cpu_linears(model, max_rows=1)):
        model = Transformer(CONFIG)
        model.fuse_projections()
        other_layers(model)
        model.setup_cache(1, 16)
        assert "PanelLinear" in cpu_decode.unsupported_reason(model)
    bf16 = decoding_model()
    bf16.setup_cache(1, 16, dtype=torch.bfloat16)
    assert "fp32" in cpu_decode.unsupported_reason(bf16)
    no_cache = Transformer(CONFIG)
    no_cache.fuse_projections()
    assert "cache" in cpu_decode.unsupported_reason(no_cache)
    wide_heads = decoding_model(rows=1, length=16, config=CONFIG.replace(hidden_size=272, num_heads=1, num_kv_heads=1))
    assert "head" in cpu_decode.unsupported_reason(wide_heads)
    with pytest.raises(ValueError, match="fused"):
        cpu_decode.CpuDecoder(unfused)
    assert_decodes_on_pytorch(unfused, tokenizer)


@pytest.mark.parametrize("setting", [{"CC": "no-such-compiler-here"}, {"CC": "false"}, {"DSCODER_CPU_KERNEL": "0"}])
def test_without_a_working_compiler_or_when_turned_off_decoding_stays_on_pytorch(
        fresh_library, monkeypatch: pytest.MonkeyPatch, tokenizer, setting: dict[str, str]):
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    assert not cpu_decode.available()
    assert not list(fresh_library.glob("dscoder/kernels/*.so"))
    model = Transformer(CONFIG.replace(vocab_size=tokenizer.vocab_size))
    model.fuse_projections()
    assert_decodes_on_pytorch(model, tokenizer)


def test_a_decoder_refuses_to_run_after_its_models_cache_is_replaced():
    model = decoding_model(rows=1, length=16)
    decoder = cpu_decode.CpuDecoder(model)
    decoder([1], [0], [0])
    model.setup_cache(1, 16)  # e.g. a second engine on the same model
    with pytest.raises(RuntimeError, match="cache was replaced"):
        decoder([1], [1], [0])


def test_int8_panels_give_the_products_of_the_quantized_weights():
    torch.manual_seed(0)
    weight, x = torch.randn(75, 37), torch.randn(19, 37)
    quantized, scales = quantize_rows(weight)
    panel = cpu_decode.PanelLinear(weight, int8=True)
    assert panel.panels.dtype == torch.int8 and panel.panels.numel() == 3 * 37 * cpu_decode.PANEL
    expected = x @ (quantized.float() * scales[:, None]).T
    torch.testing.assert_close(panel(x), expected, rtol=1e-5, atol=1e-4)
    # ... and those are close to the fp32 products (int8 rounding: ~1% of the output's size).
    assert (panel(x) - x @ weight.T).norm() / (x @ weight.T).norm() < 0.02


def test_an_int8_model_decodes_in_the_kernel_as_its_own_pytorch_forward():
    torch.manual_seed(0)
    int8_model = Transformer(CONFIG).eval()
    int8_model.init_weights(std=0.1)
    int8_model.fuse_projections()
    cpu_decode.use_panels(int8_model, int8=True)
    int8_model.setup_cache(1, 32)
    assert cpu_decode.unsupported_reason(int8_model) is None
    decoder = cpu_decode.CpuDecoder(int8_model)
    sequence = [3, 8, 1]
    with torch.inference_mode():
        int8_model.forward_hidden(torch.tensor([sequence]), torch.arange(3)[None])
        for step in range(4):
            token = 10 + step
            logits = decoder([token], [len(sequence)], [0])
            sequence.append(token)
            torch.testing.assert_close(logits[0], int8_model(torch.tensor([sequence]))[0, -1], rtol=1e-4, atol=1e-5)


def test_bf16_panels_give_the_products_of_the_bf16_weights_in_bf16():
    torch.manual_seed(0)
    weight, x = torch.randn(75, 37).bfloat16(), torch.randn(19, 37).bfloat16()
    panel = cpu_decode.PanelLinear(weight)
    assert panel.panels.dtype == torch.bfloat16 and "bf16" in repr(panel)
    y = panel(x)
    # fp32 sums of the bf16 values, rounded to bf16 once.
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, (x.float() @ weight.float().T).bfloat16(), rtol=2**-8, atol=1e-6)
    with pytest.raises(TypeError):
        panel(x.float())


def test_a_bf16_model_decodes_in_the_kernel_near_its_fp32_values():
    # Weights that bf16 holds exactly: the fp32 model is the bf16 one without its roundings.
    torch.manual_seed(0)
    fp32_model = Transformer(CONFIG).eval()
    fp32_model.init_weights(std=0.1)
    fp32_model = fp32_model.bfloat16().float()
    bf16_model = copy.deepcopy(fp32_model).bfloat16()
    bf16_model.fuse_projections()
    cpu_decode.use_panels(bf16_model)
    bf16_model.setup_cache(2, 48)
    assert bf16_model.cache.k.dtype == torch.bfloat16 and cpu_decode.unsupported_reason(bf16_model) is None
    decoder = cpu_decode.CpuDecoder(bf16_model)
    torch.manual_seed(3)
    sequence = torch.randint(0, CONFIG.vocab_size, (20,)).tolist()
    with torch.inference_mode():
        bf16_model.forward_hidden(torch.tensor([sequence]), torch.arange(20)[None], torch.tensor([1]))
        for token in (5, 17, 400, 996):
            logits = decoder([token], [len(sequence)], [1])[0]
            sequence.append(token)
            expected = fp32_model(torch.tensor([sequence]))[0, -1]
            # The prompt went through PyTorch in bf16 and the cache holds bf16: logits within a
            # few bf16 roundings of the fp32 model's (whose largest here is about 3).
            torch.testing.assert_close(logits, expected, rtol=0, atol=0.04)
            assert logits.argmax() == expected.argmax()


def test_a_bf16_checkpoint_engine_decodes_in_the_kernel(checkpoint, tokenizer):
    engine = Engine.from_checkpoint(checkpoint, dtype=torch.bfloat16, max_batch_size=2, max_seq_len=64)
    assert engine._cpu_decoder is not None and engine.model.output.panels.dtype == torch.bfloat16
    prompts = [[5, 17, 42, 7], [9, 3]]
    results = engine.generate([Request(p, SamplingParams(max_new_tokens=6), ignore_eos=True) for p in prompts])
    # Each chosen token is the bf16 model's own greedy choice, up to bf16 rounding: the kernel
    # keeps fp32 activations where PyTorch rounds them, so near-ties may go either way.
    for prompt, result in zip(prompts, results, strict=True):
        ids = prompt + result.token_ids
        with torch.inference_mode():
            logits = engine.model(torch.tensor([ids[:-1]]))[0, len(prompt) - 1:]
        chosen = logits.gather(1, torch.tensor(result.token_ids)[:, None])[:, 0]
        assert (logits.max(dim=1).values - chosen <= 0.05).all()


def test_an_int8_checkpoint_engine_decodes_in_the_kernel_what_its_model_predicts(checkpoint, tokenizer):
    engine = Engine.from_checkpoint(checkpoint, int8=True, max_batch_size=2, max_seq_len=64)
    assert engine._cpu_decoder is not None and engine.model.output.panels.dtype == torch.int8
    prompts = [[5, 17, 42, 7], [9, 3]]
    results = engine.generate([Request(p, SamplingParams(max_new_tokens=6), ignore_eos=True) for p in prompts])
    for prompt, result in zip(prompts, results, strict=True):
        ids = list(prompt)
        with torch.inference_mode():
            for _ in range(6):
                ids.append(int(engine.model(torch.tensor([ids]))[0, -1].argmax()))
        assert result.token_ids == ids[len(prompt):]


def test_a_models_panels_share_one_aligned_arena():
    model = decoding_model()
    panels = [m.panels for m in model.modules() if isinstance(m, cpu_decode.PanelLinear)]
    assert len(panels) == 4 * CONFIG.num_layers + 1
    assert len({p.untyped_storage().data_ptr() for p in panels}) == 1
    assert all(p.data_ptr() % 64 == 0 for p in panels)


# Big enough that the kernel shares the work out: the output layer (625 panels) in 20 chunks,
# attention over ~600 cached positions a chunk per head.
SHARED_CONFIG = CONFIG.replace(vocab_size=20000)


@pytest.mark.timeout(120)
def test_several_threads_give_the_same_logits_as_one():
    results = []
    prompt = torch.randint(0, 1000, (3, 600), generator=torch.Generator().manual_seed(0))
    for threads in (1, 2, 4):
        model = decoding_model(rows=3, length=640, config=SHARED_CONFIG)
        decoder = cpu_decode.CpuDecoder(model)
        torch.set_num_threads(threads)  # the infer tests' fixture restores it
        with torch.inference_mode():
            model.forward_hidden(prompt, torch.arange(600).expand(3, 600))
            results.append([decoder([23, 42, 7], [600 + step] * 3, [0, 1, 2]) for step in range(3)])
    for one, *others in zip(*results, strict=True):
        for other in others:
            assert torch.equal(one, other)  # each output is one thread's sum, in the same order


def shared_products(weight: torch.Tensor, int8: bool, inputs: list[torch.Tensor], threads: int) -> list[torch.Tensor]:
    torch.set_num_threads(threads)
    panel = cpu_decode.PanelLinear(weight, int8)  # packing is shared out too
    return [panel(x) for x in inputs]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype,int8", [(torch.float32, False), (torch.bfloat16, False), (torch.float32, True)])
def test_products_shared_between_threads_equal_one_threads(dtype: torch.dtype, int8: bool):
    torch.manual_seed(0)
    weight = torch.randn(5000, 300).to(dtype)  # 157 panels: chunks of 6 (one row) down to 1 (100 rows)
    inputs = [torch.randn(rows, 300).to(dtype) for rows in (1, 3, 8, 13, 100)]
    alone = shared_products(weight, int8, inputs, 1)
    for threads in (2, 3, 5):
        for one, shared in zip(alone, shared_products(weight, int8, inputs, threads), strict=True):
            assert torch.equal(one, shared)


@pytest.mark.timeout(120)
def test_products_called_from_several_threads_at_once_stay_right():
    # One loop is shared out at a time; a call that finds the helpers busy runs on its own thread.
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    panel = cpu_decode.PanelLinear(torch.randn(8000, 128))
    inputs = [torch.randn(rows, 128) for rows in (1, 4, 8, 16)]
    torch.set_num_threads(1)
    expected = [panel(x) for x in inputs]
    torch.set_num_threads(3)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: panel(inputs[i % 4]), range(200)))
    assert all(torch.equal(result, expected[i % 4]) for i, result in enumerate(results))


def _product_in_child(panel: cpu_decode.PanelLinear, x: torch.Tensor, queue) -> None:
    torch.set_num_threads(2)
    queue.put(panel(x).tolist())  # plain values: a tensor would be sent as shared memory


@pytest.mark.timeout(120)
def test_a_forked_process_computes_without_the_parents_helpers():
    # fork() copies no threads: the child's products must not wait for helpers it lacks.
    import multiprocessing

    torch.manual_seed(0)
    panel = cpu_decode.PanelLinear(torch.randn(8000, 128))
    x = torch.randn(8, 128)
    torch.set_num_threads(2)
    expected = panel(x)  # the parent has started its helper
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_product_in_child, args=(panel, x, queue))
    child.start()
    result = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert torch.equal(torch.tensor(result), expected)


def test_panel_layers_refuse_to_be_trained_through():
    panel = cpu_decode.PanelLinear(torch.randn(8, 4))
    with pytest.raises(RuntimeError, match="gradients"):
        panel(torch.randn(2, 4, requires_grad=True))
