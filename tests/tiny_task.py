"""A tiny real task for agent tests: a git repo whose `add` is wrong and whose test says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
GOLD_PATCH = """diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
"""


def make_task_repo(root: Path) -> Path:
    """A committed git repo with calc.py (buggy) and test_calc.py."""
    repo = Path(root) / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text(BUGGY)
    (repo / "test_calc.py").write_text(TEST)
    git = ["git", "-c", "user.name=atebench", "-c", "user.email=atebench@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "."], cwd=repo, check=True)
    subprocess.run(git + ["commit", "-q", "-m", "baseline"], cwd=repo, check=True)
    return repo


def task_tests_pass(repo: Path) -> bool:
    """Run the task's test for real, outside any agent."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_calc.py"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode == 0
