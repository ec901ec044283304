"""Injects a silent bug: the gradient norm used for clipping is computed from this rank's gradients only.

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


edit("reftrain/optim.py",
     "    if dist.is_initialized() and dist.get_world_size() > 1:\n        dist.all_reduce(sq)\n",
     "")
