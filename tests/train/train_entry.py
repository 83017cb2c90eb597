"""`dscoder train ...` as a script, for subprocess and torchrun tests: a parser built from
dscoder.cli.train alone, whatever commands the main CLI lists."""

from __future__ import annotations

import argparse
import sys

from dscoder.cli.train import register
from dscoder.errors import UserError

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="dscoder")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(sys.argv[1:])
    try:
        sys.exit(args.func(args))
    except UserError as error:
        print(f"dscoder: error: {error}", file=sys.stderr)
        sys.exit(2)
