"""`dscoder complete | infill | repo-complete | chat`: generate from a checkpoint directory.

The generated text goes to stdout as it is produced, and nothing else does, so scripts can
capture it; decoding is greedy unless a temperature is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_CHAT_CONTEXT = 4096


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    model = common.add_argument_group("model")
    model.add_argument("--model", required=True, type=Path, metavar="DIR",
                       help="checkpoint directory (config.json, safetensors, tokenizer files)")
    model.add_argument("--dtype", choices=DTYPES, default=None,
                       help="weights and activations dtype (default: as stored)")
    model.add_argument("--int8", action="store_true", help="int8 weight-only quantization of the linear layers")
    model.add_argument("--compile", action="store_true", help="torch.compile the decode step (slow start, faster tokens)")
    sampling = common.add_argument_group("sampling")
    sampling.add_argument("--max-new-tokens", type=int, default=256, metavar="N",
                          help="generate at most N tokens (default 256)")
    sampling.add_argument("--temperature", type=float, default=0.0, metavar="T",
                          help="sampling temperature; 0 decodes greedily (default)")
    sampling.add_argument("--top-k", type=int, default=0, metavar="K", help="keep the K most likely tokens (0: all)")
    sampling.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling mass (1: off)")
    sampling.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R",
                          help="make tokens already seen less likely, CTRL-style (1: off)")
    sampling.add_argument("--stop", action="append", default=[], metavar="TEXT",
                          help="end the output before this text (repeatable)")
    sampling.add_argument("--seed", type=int, default=None, help="seed for reproducible sampling")

    complete = subparsers.add_parser(
        "complete", parents=[common], help="continue a piece of code (base models)",
        description="Print the continuation of a prompt (BOS + text); it stops at EOS.")
    source = complete.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="the text to continue")
    source.add_argument("--prompt-file", type=Path, metavar="FILE", help="read the prompt from FILE ('-': stdin)")
    complete.set_defaults(func=run_complete)

    infill = subparsers.add_parser(
        "infill", parents=[common], help="fill in the middle between a prefix and a suffix (base models)",
        description="Print the code that belongs between the prefix and the suffix, in the "
        "fill-in-the-middle format of the released base models.")
    infill.add_argument("--prefix", default=None, help="code before the hole")
    infill.add_argument("--suffix", default=None, help="code after the hole")
    infill.add_argument("--prefix-file", type=Path, metavar="FILE", help="read the prefix from FILE")
    infill.add_argument("--suffix-file", type=Path, metavar="FILE", help="read the suffix from FILE")
    infill.set_defaults(func=run_infill)

    repo = subparsers.add_parser(
        "repo-complete", parents=[common], help="continue a file with its repository as context",
        description="Continue FILE, after the repository files it depends on (in dependency "
        "order, each headed by its path), as the model saw repositories in training.")
    repo.add_argument("--repo", required=True, type=Path, metavar="DIR", help="the repository folder")
    repo.add_argument("--file", required=True, type=Path, help="the file being written (path inside the repository)")
    repo.add_argument("--max-context-tokens", type=int, default=None,
                      help="prompt budget (default: the model's context minus --max-new-tokens)")
    repo.add_argument("--show-context", action="store_true", help="list the files used on stderr")
    repo.set_defaults(func=run_repo_complete)

    chat = subparsers.add_parser(
        "chat", parents=[common], help="chat with an instruct model in the terminal",
        description="An interactive chat: one line per message; /reset forgets the conversation, "
        "/exit or end of input quits. Old turns are dropped when the context fills up.")
    chat.add_argument("--system", default=None, help="system text (default: the template's)")
    chat.add_argument("--message", default=None, help="send one message, print the reply and exit")
    chat.add_argument("--context", type=int, default=DEFAULT_CHAT_CONTEXT,
                      help=f"tokens of conversation kept (default {DEFAULT_CHAT_CONTEXT}, at most the model's)")
    chat.set_defaults(func=run_chat)


# ---- shared ---------------------------------------------------------------------------------


def _sampling(args: argparse.Namespace):
    from dscoder.infer import SamplingParams

    return SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                          stop=tuple(args.stop), seed=args.seed)


def _tokenizer(args: argparse.Namespace):
    from dscoder.tokenizer import Tokenizer

    return Tokenizer.from_dir(args.model)


def _engine(args: argparse.Namespace, tokenizer, max_seq_len: int):
    import torch

    from dscoder.infer import Engine
    from dscoder.infer.engine import load_for_inference

    model = load_for_inference(args.model, dtype=getattr(torch, args.dtype) if args.dtype else None,
                               int8=args.int8, cpu_kernel=not args.compile)
    return Engine(model, tokenizer, max_batch_size=1, max_seq_len=max_seq_len, compile=args.compile)


def _model_context(args: argparse.Namespace) -> int:
    from dscoder.model import load_config

    return load_config(args.model).max_position_embeddings


def _read(path: Path) -> str:
    from dscoder.errors import UserError

    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None


def _generate(args: argparse.Namespace, tokenizer, prompt) -> str:
    """Stream the completion of `prompt` to stdout; return its text."""
    from dscoder.infer import Request

    params = _sampling(args)  # checked before the model loads
    max_seq_len = min(_model_context(args), len(prompt.ids) + params.max_new_tokens)
    engine = _engine(args, tokenizer, max_seq_len)
    stream = engine.stream(Request(prompt.ids, params, prompt.stop_token_ids))
    # Only a person at a terminal gets a final line break; a pipe gets the text exactly.
    return _write_stream(stream, sys.stdout, end_line=sys.stdout.isatty())


def _write_stream(pieces, out: TextIO, end_line: bool) -> str:
    text = []
    for piece in pieces:
        out.write(piece)
        out.flush()
        text.append(piece)
    joined = "".join(text)
    if end_line and not joined.endswith("\n"):
        out.write("\n")
        out.flush()
    return joined


# ---- the four modes -------------------------------------------------------------------------


def run_complete(args: argparse.Namespace) -> int:
    from dscoder.infer import completion_prompt

    text = args.prompt if args.prompt is not None else _read(args.prompt_file)
    tokenizer = _tokenizer(args)
    _generate(args, tokenizer, completion_prompt(tokenizer, text))
    return 0


def run_infill(args: argparse.Namespace) -> int:
    from dscoder.errors import UserError
    from dscoder.infer import infill_prompt

    def part(text: str | None, file: Path | None, name: str) -> str:
        if text is not None and file is not None:
            raise UserError(f"give --{name} or --{name}-file, not both")
        if file is not None:
            return _read(file)
        if text is None:
            raise UserError(f"give --{name} or --{name}-file")
        return text

    prefix = part(args.prefix, args.prefix_file, "prefix")
    suffix = part(args.suffix, args.suffix_file, "suffix")
    tokenizer = _tokenizer(args)
    _generate(args, tokenizer, infill_prompt(tokenizer, prefix, suffix))
    return 0


def run_repo_complete(args: argparse.Namespace) -> int:
    from dscoder.infer import build_repo_context, repo_prompt

    params = _sampling(args)
    budget = args.max_context_tokens
    if budget is None:
        budget = max(2, _model_context(args) - params.max_new_tokens)
    tokenizer = _tokenizer(args)
    context = build_repo_context(args.repo, args.file, tokenizer, budget)
    if args.show_context:
        print(f"context: {', '.join(context.files)}", file=sys.stderr)
        if context.dropped:
            print(f"dropped to fit {budget} tokens: {', '.join(context.dropped)}", file=sys.stderr)
        if context.truncated:
            print(f"the beginning of {context.files[-1]} was cut to fit", file=sys.stderr)
    _generate(args, tokenizer, repo_prompt(tokenizer, context.text))
    return 0


def run_chat(args: argparse.Namespace) -> int:
    from dscoder.errors import UserError
    from dscoder.infer import Request, chat_prompt

    params = _sampling(args)
    tokenizer = _tokenizer(args)
    context = min(args.context, _model_context(args))
    if context <= params.max_new_tokens:
        raise UserError(f"--context {context} leaves no room for --max-new-tokens {params.max_new_tokens}")
    engine = _engine(args, tokenizer, context)
    system = [] if args.system is None else [{"role": "system", "content": args.system}]
    history: list[dict[str, str]] = []
    interactive = args.message is None and sys.stdin.isatty()

    def reply(message: str) -> None:
        history.append({"role": "user", "content": message})
        while True:
            prompt = chat_prompt(tokenizer, system + history)
            if len(prompt.ids) + params.max_new_tokens <= context or len(history) == 1:
                break
            del history[:2]  # the oldest exchange goes first
        if len(prompt.ids) >= context:
            history.clear()
            raise UserError(f"the message takes {len(prompt.ids)} tokens; the context holds {context}")
        stream = engine.stream(Request(prompt.ids, params, prompt.stop_token_ids))
        answer = _write_stream(stream, sys.stdout, end_line=True)
        history.append({"role": "assistant", "content": answer})

    if args.message is not None:
        reply(args.message)
        return 0
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            return 0
        message = line.rstrip("\n")
        if message.strip() == "/reset":
            history.clear()
            continue
        if not message.strip():
            continue
        try:
            reply(message)
        except UserError as error:
            print(f"dscoder: {error}", file=sys.stderr)  # the conversation goes on
