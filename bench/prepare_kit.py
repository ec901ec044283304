"""The edits a task's prepare.py makes to a framework checkout, each one loud when its anchor is gone.

Why: a prepare step cuts a feature out of a framework so the agent can add it back. If the framework
changes under it, a silent no-op edit would ship a task whose "removed" feature is still there; so every
edit asserts its anchor (found exactly once, in order) and a leak check ends the script. prepare.py runs
with the harness's interpreter (`python prepare.py <checkout>`), so it imports this module:

    from bench.prepare_kit import Checkout
    ck = Checkout()                       # the checkout named on the command line
    ck.edit("pkg/mod.py", "old text", "new text")
    ck.leak_check(r"\\bfeature\\b")

The prepared checkout's cache key includes this file, so changing it re-prepares every task.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import re
import shutil
import sys
from pathlib import Path

TEXT_SUFFIXES = (".py", ".toml", ".json", ".md")


def import_pinned(path: Path, sha256: str):
    """Import the module at `path`, a task's tests/ module or a framework's grader_support/ one that the
    prepare step shares with its hidden test, once its sha256 is `sha256`; its folder goes on sys.path.

    Why a pin: the prepared-checkout cache key hashes the task's folder but neither tests/ nor
    grader_support/, so an edit there would leave a stale checkout in the cache. The pin fails until
    prepare.py names the new digest, and that edit to prepare.py re-prepares."""
    path = Path(path).resolve()
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != sha256:
        script = Path(sys.argv[0]).name or "prepare.py"
        sys.exit(
            f"prepare: {path.parent.name}/{path.name} changed; its sha256 is now {actual}: update the pin "
            f"in this {script}"
        )
    sys.path.insert(0, str(path.parent))
    return importlib.import_module(path.stem)


class Checkout:
    """A framework checkout being prepared; every failure exits with one line naming the file and the fix."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root if root is not None else sys.argv[1])
        self.script = Path(sys.argv[0]).name or "prepare.py"

    def fail(self, message: str) -> None:
        sys.exit(f"prepare: {message}; the framework changed, update this {self.script}")

    def _text(self, rel: str) -> str:
        path = self.root / rel
        if not path.is_file():
            self.fail(f"{rel} does not exist")
        return path.read_text()

    def edit(self, rel: str, old: str, new: str = "") -> None:
        """Replace `old`, which must occur exactly once in `rel`, by `new` (default: delete it)."""
        text = self._text(rel)
        if text.count(old) != 1:
            self.fail(f"expected exactly one of these in {rel}, found {text.count(old)}:\n{old}\n")
        (self.root / rel).write_text(text.replace(old, new))

    def cut(self, rel: str, start: str, end: str) -> None:
        """Delete from `start` up to (not including) `end`; each must occur once, in that order."""
        text = self._text(rel)
        if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
            self.fail(f"{rel}: anchors {start!r} .. {end!r} not found once each, in order")
        (self.root / rel).write_text(text[: text.index(start)] + text[text.index(end) :])

    def remove(self, rel: str) -> None:
        if not (self.root / rel).is_file():
            self.fail(f"{rel} does not exist")
        (self.root / rel).unlink()

    def drop_functions(self, rel: str, names: list[str]) -> None:
        """Delete top-level functions (with their decorators and the blank lines after them) by name."""
        text = self._text(rel)
        lines = text.splitlines(keepends=True)
        found = {node.name: node for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}
        missing = [n for n in names if n not in found]
        if missing:
            self.fail(f"{rel} has no function {', '.join(missing)}")
        for node in sorted((found[n] for n in names), key=lambda n: n.lineno, reverse=True):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            end = node.end_lineno
            while end < len(lines) and not lines[end].strip():
                end += 1
            del lines[first:end]
        (self.root / rel).write_text("".join(lines))

    def drop_lines(self, paths: list[Path], pattern: str) -> list[Path]:
        """Delete every line matching `pattern` from `paths` (docs naming a removed file or command);
        returns the files changed."""
        changed = []
        for path in paths:
            lines = path.read_text().splitlines(keepends=True)
            kept = [line for line in lines if not re.search(pattern, line)]
            if len(kept) != len(lines):
                path.write_text("".join(kept))
                changed.append(path)
        return changed

    def hand_over_reftrain_model_configs(self, model: str, real_config: str) -> list[str]:
        """add-new-model on reftrain: the task's inputs become task_assets/<model>/config.json (the tiny variant's
        HF config) and full-size/config.json (the real one, for shape checks); then every example config of the
        model (tiny, real, benchmark variants) and every run config using one is removed. Returns the removed
        example configs' names."""
        examples = self.root / "examples" / "models"
        assets = self.root / "task_assets" / model
        (assets / "full-size").mkdir(parents=True)
        shutil.copy(examples / f"{model}_tiny.json", assets / "config.json")
        shutil.copy(examples / real_config, assets / "full-size" / "config.json")
        removed = sorted(
            p.name for p in examples.glob("*.json") if json.loads(p.read_text()).get("model_type") == model
        )
        if f"{model}_tiny.json" not in removed or real_config not in removed:
            self.fail(f"examples/models/ lacks {model}_tiny.json or {real_config}")
        for name in removed:
            self.remove(f"examples/models/{name}")
        for toml in sorted((self.root / "examples").glob("*.toml")):
            if any(f'"models/{name}"' in toml.read_text() for name in removed):
                toml.unlink()
        return removed

    def leak_check(
        self,
        pattern: str,
        suffixes: tuple[str, ...] = TEXT_SUFFIXES,
        skip_parts: tuple[str, ...] = (),
        skip_names: tuple[str, ...] = (),
    ) -> None:
        """End preparation if any text file still matches `pattern`: the agent would find the answer."""
        leaks = [
            str(p.relative_to(self.root))
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
            and p.suffix in suffixes
            and not set(p.relative_to(self.root).parts) & set(skip_parts)
            and p.name not in skip_names
            and re.search(pattern, p.read_text())
        ]
        if leaks:
            sys.exit(
                f"prepare: the checkout still contains what the task removes ({pattern!r}) in: "
                f"{', '.join(leaks)}; extend this {self.script}"
            )
