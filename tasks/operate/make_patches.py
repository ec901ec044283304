"""Writes an operate task's solution.patch and wrong patch by running its producer in a prepared checkout.

Why patches of output files: an operate task is done when files exist (a trace, a CSV), and the oracle
agent can only apply a patch. So each variant keeps the program that makes its gold output
(`frameworks/<fw>/gold/solve.py`, run from the checkout's root; `--wrong` makes the plausible mistake),
and this script turns its output into the patches validation applies. Rerun it when the framework or the
task's preparation changes (validation then shows the oracle failing). Threads are pinned to the task's
`resources.cpus`, as in the sandbox.

Usage: python tasks/operate/make_patches.py <task-id> <wrong-patch-name> [--framework reference]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import specs, workspace


def produce(variant: specs.TaskVariant, framework: specs.FrameworkSpec, wrong: bool) -> str:
    """The diff prepared -> prepared plus the producer's output (its own caches left out)."""
    cpus = str(max(1, int(variant.task.spec.resources.cpus)))
    with tempfile.TemporaryDirectory(prefix="atebench-operate-") as scratch:
        work = workspace.create_workspace(variant, framework, Path(scratch) / "ws")
        env = {**os.environ, "PYTHONPATH": str(work), "OMP_NUM_THREADS": cpus, "MKL_NUM_THREADS": cpus}
        command = [sys.executable, str(variant.dir / "gold" / "solve.py"), *(["--wrong"] if wrong else [])]
        proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            sys.exit(f"{command[1]} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
        shutil.rmtree(work / ".cache", ignore_errors=True)  # the bundled tokenizer, trained on first use
        return workspace.tree_diff(workspace.prepared_checkout(variant, framework), work).patch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task")
    parser.add_argument("wrong_name", help="file name under wrong/, e.g. renormalised-gate-weights.patch")
    parser.add_argument("--framework", default="reference")
    args = parser.parse_args()
    variant = specs.load_task(args.task).variant(args.framework)
    framework = specs.load_framework(args.framework)
    (variant.dir / "solution.patch").write_text(produce(variant, framework, wrong=False))
    (variant.dir / "wrong").mkdir(exist_ok=True)
    for old in (variant.dir / "wrong").glob("*.patch"):
        old.unlink()
    (variant.dir / "wrong" / args.wrong_name).write_text(produce(variant, framework, wrong=True))
    print(f"wrote {variant.dir / 'solution.patch'} and wrong/{args.wrong_name}")


if __name__ == "__main__":
    main()
