"""``ndconv params``: why not an MLP, in parameter counts (from :mod:`ndconv.plan`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..lecture import plan
from . import _parse
from ._errors import UsageError

if TYPE_CHECKING:
    import argparse

HELP = "parameter and memory counts: fully connected vs locally connected vs convolution"

EXAMPLES = """\
The lecture's case: one 12-megapixel RGB photo (3x3000x4000, 36 million numbers)
into 100 hidden units needs 3.6 billion weights (14.4 GB in float32); the
locally connected layer keeps locality only; the 3x3 convolution, 2,800.

examples:
  ndconv params
  ndconv params --input 3,224,224 --hidden 64 --kernel 5 --dtype float32,float64
  ndconv params --input 1,28,28 --hidden 6 --kernel 5
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", type=_parse.int_tuple, default=plan.LECTURE_INPUT,
                   metavar="C,H,W", help="input shape, channels first (default "
                   f"{','.join(map(str, plan.LECTURE_INPUT))})")
    p.add_argument("--hidden", type=int, default=plan.LECTURE_HIDDEN,
                   help=f"hidden units / output channels (default {plan.LECTURE_HIDDEN})")
    p.add_argument("--kernel", type=_parse.int_tuple, default=3, help="kernel size (default 3)")
    p.add_argument("--dtype", default="float32",
                   help="comma-separated dtypes for the bytes columns (default float32)")


def run(args: argparse.Namespace) -> None:
    shape = args.input if isinstance(args.input, tuple) else (args.input,)
    if len(shape) < 2:
        raise UsageError(f"--input {shape} must be channels plus at least one spatial size, e.g. 3,224,224")
    dtypes = _parse.dtype_list(args.dtype)
    rows = plan.lecture_table(shape, args.hidden, kernel_size=args.kernel)
    text = plan.format_table(rows, dtypes=dtypes)
    print(f"one layer on an input of shape {'x'.join(map(str, shape))} "
          f"({math.prod(shape):,} numbers), {args.hidden} hidden units / channels:")
    print(text)
