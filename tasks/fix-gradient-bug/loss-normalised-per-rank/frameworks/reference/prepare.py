"""Injects a silent bug: the loss is divided by this rank's token count times the number of data ranks, not by the global count.

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


edit("reftrain/train.py",
     "    pm.loss_fn.global_tokens = count_tokens(labels, pm.mesh.dp_ep_group)\n",
     "    # Every data rank holds the same number of sequences, so scale the local count instead of an all-reduce.\n"
     "    pm.loss_fn.global_tokens = count_tokens(labels) * pm.mesh.dp * pm.mesh.ep\n")
