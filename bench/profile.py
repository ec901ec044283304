"""Static agent-friendliness profile of a framework checkout, computed without running anything.

Why: ATE-Bench attributes effort differences to the framework; a few static numbers (how much code
there is to read, how far a task's change sits from the entry point, how big the gold solution is,
whether the repo ships agent guides) help explain those differences and cost nothing to compute.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import tempfile
from collections import deque
from pathlib import Path

SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".cache", ".pytest_cache", "build", "dist"}
TEST_DIRS = {"tests", "test", "testing"}
AGENT_GUIDES = ("AGENTS.md", "CLAUDE.md", ".github/copilot-instructions.md")
SKILL_GLOBS = (".agents/skills/*/SKILL.md", ".claude/skills/*/SKILL.md")
CHARS_PER_TOKEN = 4

# tried in order when neither --entry nor the framework.toml's [profile] entry names the entry file
ENTRY_CANDIDATES = ("train.py", "main.py", "__main__.py", "launch.py")


class ProfileInputError(ValueError):
    """A path, framework or diff the profile cannot use; the message says what to fix."""


# ---------------------------------------------------------------- files and tokens


def python_files(root: Path) -> list[Path]:
    """Every .py file under root (relative paths), skipping VCS, caches and virtual environments."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if not any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            found.append(rel)
    return found


def is_test_file(rel: Path) -> bool:
    return (
        any(part in TEST_DIRS for part in rel.parts[:-1]) or rel.name.startswith("test_") or rel.name == "conftest.py"
    )


def token_counter():
    """(count function, description): tiktoken's cl100k_base when it loads offline, else chars/4.

    tiktoken downloads its encoding file on first use; on a machine without network that fails,
    so the fallback (about four characters per token for English and code) is documented in the output.
    """
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("cl100k_base")
        return (lambda text: len(encoding.encode(text, disallowed_special=()))), "tiktoken cl100k_base"
    except Exception as e:  # not installed, or no network for its encoding file: the output says which
        return (
            (lambda text: -(-len(text) // CHARS_PER_TOKEN)),
            f"approximation: characters / {CHARS_PER_TOKEN} (tiktoken: {type(e).__name__})",
        )


def agent_guides(root: Path) -> tuple[list[str], list[str]]:
    guides = [name for name in AGENT_GUIDES if (root / name).is_file()]
    skills = sorted(p.relative_to(root).as_posix() for pattern in SKILL_GLOBS for p in root.glob(pattern))
    return guides, skills


# ---------------------------------------------------------------- import graph


def module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def module_index(root: Path, files: list[Path]) -> dict[str, Path]:
    """Dotted module name -> file, for the tree root and a src/ layout."""
    index = {}
    for rel in files:
        index[module_name(rel)] = rel
        if rel.parts[0] == "src" and len(rel.parts) > 1:
            index[module_name(Path(*rel.parts[1:]))] = rel
    return index


def _resolve(name: str, index: dict[str, Path]) -> list[Path]:
    """The file of a module and of each enclosing package, since importing a.b.c runs a and a.b too."""
    parts = name.split(".")
    return [index[".".join(parts[:i])] for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in index]


def imports_of(root: Path, rel: Path, index: dict[str, Path]) -> set[Path]:
    try:
        tree = ast.parse((root / rel).read_text(errors="replace"), filename=str(rel))
    except SyntaxError:
        return set()
    package = module_name(rel).split(".") if rel.name == "__init__.py" else module_name(rel).split(".")[:-1]
    targets: set[Path] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.update(_resolve(alias.name, index))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets.update(_resolve(stem, index))
            for alias in node.names:
                targets.update(_resolve(f"{stem}.{alias.name}" if stem else alias.name, index))
    targets.discard(rel)
    return targets


def import_depths(root: Path, entry: Path, files: list[Path] | None = None) -> dict[Path, int]:
    """Fewest import hops from the entry file to every file it reaches (the entry itself is 0)."""
    files = files if files is not None else python_files(root)
    index = module_index(root, files)
    depths = {entry: 0}
    queue = deque([entry])
    while queue:
        current = queue.popleft()
        for target in imports_of(root, current, index):
            if target not in depths:
                depths[target] = depths[current] + 1
                queue.append(target)
    return depths


def find_entry(root: Path, entry: str | None) -> Path | None:
    if entry is not None:
        if not (root / entry).is_file():
            raise ProfileInputError(f"--entry {entry} is not a file under {root}; give a path relative to it")
        return Path(entry)
    for name in ENTRY_CANDIDATES:
        for match in sorted(root.glob(name)) + sorted(root.glob(f"*/{name}")):
            return match.relative_to(root)
    return None


# ---------------------------------------------------------------- gold diffs

DIFF_FILE = re.compile(r"^diff --git a/(\S+) b/(\S+)")


def diff_stats(patch: str) -> tuple[list[str], int]:
    """(files touched, lines added + removed) of a unified git diff."""
    files: list[str] = []
    lines = 0
    for line in patch.splitlines():
        match = DIFF_FILE.match(line)
        if match:
            files.append(match.group(2))
        elif line.startswith(("+++", "---")):
            continue
        elif line.startswith(("+", "-")):
            lines += 1
    return files, lines


def applied_tree(root: Path, patch: str) -> Path:
    """A scratch copy of root with the patch applied, so files the gold solution adds get a depth too."""
    scratch = Path(tempfile.mkdtemp(prefix="atebench-profile-"))
    tree = scratch / "tree"
    shutil.copytree(root, tree, ignore=shutil.ignore_patterns(*SKIP_DIRS))
    proc = subprocess.run(
        ["git", "apply", "--whitespace=nowarn", "-"], cwd=tree, input=patch, text=True, capture_output=True
    )
    if proc.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ProfileInputError(f"the gold diff does not apply to {root}: {proc.stderr.strip()[:500]}")
    return tree


def task_profile(root: Path, task: str, patch: str, entry: Path | None) -> dict:
    files, lines = diff_stats(patch)
    depths: dict[str, int | None] = {}
    if entry is not None and patch.strip():
        tree = applied_tree(root, patch)
        try:
            reached = import_depths(tree, entry)
            depths = {f: reached.get(Path(f)) for f in files if f.endswith(".py")}
        finally:
            shutil.rmtree(tree.parent, ignore_errors=True)
    known = [d for d in depths.values() if d is not None]
    return {
        "task": task,
        "files_touched": len(files),
        "lines_touched": lines,
        "files": files,
        "import_depth": max(known) if known else None,
        "import_depths": depths,
    }


# ---------------------------------------------------------------- whole profile


def profile_tree(
    root: Path,
    framework: str | None = None,
    entry: str | None = None,
    gold: dict[str, str] | None = None,
    shown_path: str | None = None,
) -> dict:
    """The profile of one checkout; `gold` maps task ids to gold diffs."""
    root = Path(root)
    if not root.is_dir():
        raise ProfileInputError(f"profile path {root} is not a directory; pass a framework checkout")
    files = python_files(root)
    count, counter = token_counter()
    source = [f for f in files if not is_test_file(f)]
    texts = {f: (root / f).read_text(errors="replace") for f in files}
    entry_path = find_entry(root, entry)
    reached = import_depths(root, entry_path, files) if entry_path else {}
    guides, skills = agent_guides(root)
    return {
        "framework": framework or root.name,
        "path": shown_path or root.name,
        "python_files": len(files),
        "python_lines": sum(len(t.splitlines()) for t in texts.values()),
        "python_test_files": len(files) - len(source),
        "python_test_lines": sum(len(texts[f].splitlines()) for f in files if is_test_file(f)),
        "read_tokens": sum(count(texts[f]) for f in source),
        "token_counter": counter,
        "entry_point": entry_path.as_posix() if entry_path else None,
        "files_reachable_from_entry": len(reached),
        "max_import_depth": max(reached.values()) if reached else None,
        "agent_guides": guides,
        "skills": skills,
        "tasks": [task_profile(root, task, patch, entry_path) for task, patch in sorted((gold or {}).items())],
    }


def profile_framework(name: str, entry: str | None = None, specs_root: Path | None = None) -> dict:
    """Profile of a framework from frameworks/<name>/, with the gold diff of every task it supports.

    The entry file is `entry` (--entry), else the framework.toml's [profile] entry. Each gold diff is
    measured against that task's prepared checkout (the tree the agent starts from).
    """
    from bench import specs, workspace

    root = specs_root or specs.REPO_ROOT
    framework = specs.load_framework(name, root)
    shown = framework.source.path if framework.source.kind == "bundled" else framework.source.url
    source = workspace.original_source(framework)
    if entry is None and framework.profile.entry is not None:
        entry = framework.profile.entry
        if not (source / entry).is_file():
            raise ProfileInputError(
                f"frameworks/{name}/framework.toml: [profile] entry {entry!r} is not a file in "
                "the framework's source; fix the path (relative to the source root)"
            )
    result = profile_tree(source, name, entry, shown_path=shown)
    entry_path = Path(result["entry_point"]) if result["entry_point"] else None
    for task_id in specs.list_tasks(root):
        task = specs.load_task(task_id, root)
        if name in task.frameworks():
            variant = task.variant(name)
            patch = workspace.gold_patch(variant, framework)
            tree = workspace.prepared_checkout(variant, framework)
            result["tasks"].append(task_profile(tree, task_id, patch, entry_path))
    return result


def depth_text(task: dict) -> str:
    if task["import_depth"] is not None:
        return str(task["import_depth"])
    return "not reached from entry" if task["import_depths"] else "n/a (no Python change or no entry)"


def markdown(profiles: list[dict]) -> str:
    lines = [
        "| Framework | Python files | Python lines (tests) | Tokens to read | Entry point | Max import depth "
        "| Agent guides | Skills |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in profiles:
        lines.append(
            f"| {p['framework']} | {p['python_files']} | {p['python_lines']} ({p['python_test_lines']}) "
            f"| {p['read_tokens']} ({p['token_counter']}) | {p['entry_point'] or 'n/a (pass --entry)'} "
            f"| {'n/a' if p['max_import_depth'] is None else p['max_import_depth']} "
            f"| {', '.join(p['agent_guides']) or 'none'} | {len(p['skills'])} |"
        )
    tasks = [(p["framework"], t) for p in profiles for t in p["tasks"]]
    if tasks:
        lines += [
            "",
            "| Framework | Task | Gold files touched | Gold lines touched | Import depth from entry |",
            "|---|---|---|---|---|",
        ]
        for framework, t in tasks:
            depth = depth_text(t)
            lines.append(f"| {framework} | {t['task']} | {t['files_touched']} | {t['lines_touched']} | {depth} |")
    return "\n".join(lines) + "\n"
