"""Injects a silent bug: the loss is divided by this rank's token count times the number of data ranks, not by the global count.

The injection asserts its anchor text, so a refactor of reftrain fails preparation loudly instead of
producing a task without a bug. The framework's padded-batch layout test, which grades the task, is
removed from the checkout (grading.toml restores it from the original). Usage: python prepare.py <checkout>
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


def remove(rel: str) -> None:
    if not (root / rel).is_file():
        sys.exit(f"prepare: {rel} not found; reftrain changed, update this prepare.py")
    (root / rel).unlink()


edit("reftrain/train.py",
     "    pm.loss_fn.global_tokens = count_tokens(labels, pm.mesh.dp_ep_group)\n",
     "    # Every data rank holds the same number of sequences, so scale the local count instead of an all-reduce.\n"
     "    pm.loss_fn.global_tokens = count_tokens(labels) * pm.mesh.dp * pm.mesh.ep\n")
remove("tests/test_gradients_across_layouts.py")

HIDDEN = "test_gradients_across_layouts"
leaks = [str(p.relative_to(root)) for p in sorted(root.rglob("*"))
         if p.is_file() and p.suffix in (".py", ".toml", ".md") and HIDDEN in p.read_text()]
if leaks:
    sys.exit(f"prepare: the checkout still names the hidden test {HIDDEN} in: {', '.join(leaks)}; "
             "extend this prepare.py")
