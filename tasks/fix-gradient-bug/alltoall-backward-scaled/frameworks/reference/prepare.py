"""Injects a silent bug: the backward of the expert-parallel all-to-all divides the gradient by the group size.

The injection asserts its anchor text, so a refactor of reftrain fails preparation loudly instead of
producing a task without a bug. Usage: python prepare.py <checkout>
"""

import sys
from pathlib import Path

root = Path(sys.argv[1])


def edit(rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    if text.count(old) != 1:
        sys.exit(f"prepare: expected exactly one of these in {rel}, found {text.count(old)}:\n{old}\n"
                 "reftrain changed; update this prepare.py")
    path.write_text(text.replace(old, new))


edit("reftrain/moe.py",
     "        return grad_in, None, None, None\n",
     "        return grad_in / dist.get_world_size(ctx.group), None, None, None\n")
