"""`dscoder serve`: the OpenAI-compatible HTTP server and web page for one checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")
LOG_LEVELS = ("debug", "info", "warning", "error")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve a checkpoint over HTTP (OpenAI-compatible API and a web page)",
        description="Serve /v1/completions (with `suffix`: fill-in-the-middle), "
        "/v1/chat/completions, /v1/models and /health, and a web page at /. Concurrent "
        "requests share the model through continuous batching.")
    parser.add_argument("--model", required=True, type=Path, metavar="DIR",
                        help="checkpoint directory (config.json, safetensors, tokenizer files)")
    parser.add_argument("--served-model-name", default=None, metavar="NAME",
                        help="the model name clients send (default: the directory's name)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch-size", type=int, default=8,
                        help="sequences decoded together; more wait for a free row (default 8)")
    parser.add_argument("--max-prefill-tokens", type=int, default=None, metavar="N",
                        help="prompt positions a step may compute while other requests are decoding "
                        "(padding included); a longer prompt is fed over several steps, so it delays "
                        "the others' tokens a chunk at a time (default 512)")
    parser.add_argument("--max-seq-len", type=int, default=None,
                        help="tokens per sequence, prompt and completion together (default: "
                        "4096, at most the model's context); sets the cache's memory")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="weights and activations dtype (default: as stored)")
    parser.add_argument("--int8", action="store_true",
                        help="int8 weight-only quantization of the linear layers")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the decode step (slow start, faster tokens)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for the model (default: one per core on the CPU kernel, one per core but one on PyTorch)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.set_defaults(func=run_serve)


def options_from(args: argparse.Namespace):
    from dscoder.serve import ServeOptions

    # Unset options keep ServeOptions' defaults (this module stays free of torch imports).
    extra = {name: value for name in ("max_seq_len", "max_prefill_tokens")
             if (value := getattr(args, name)) is not None}
    return ServeOptions(model=args.model, served_model_name=args.served_model_name,
                        host=args.host, port=args.port, max_batch_size=args.max_batch_size,
                        dtype=args.dtype, int8=args.int8, compile=args.compile,
                        threads=args.threads, log_level=args.log_level, **extra)


def run_serve(args: argparse.Namespace) -> int:
    from dscoder.serve import serve

    serve(options_from(args))
    return 0
