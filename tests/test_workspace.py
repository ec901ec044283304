"""Workspaces: one baseline commit, no hidden tests or history, cached preparation, real diffs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from conftest import write

from bench import specs, workspace


def _load(root):
    task = specs.load_task("arith/mul", root)
    return task.variant("toy"), specs.load_framework("toy", root)


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_workspace_has_one_baseline_commit_and_no_hidden_tests(toy_root, cache, tmp_path):
    write(toy_root / "toy_src" / "calc" / "__pycache__" / "ops.cpython-311.pyc", "junk")
    variant, framework = _load(toy_root)
    work = workspace.create_workspace(variant, framework, tmp_path / "ws")
    assert _git("log", "--format=%s", cwd=work).split() == ["baseline"]
    assert _git("status", "--porcelain", cwd=work) == ""
    assert "raise NotImplementedError" in (work / "calc" / "ops.py").read_text()
    assert not (work / "tests" / "test_ops.py").exists(), "the hidden test path must not be in the workspace"
    assert not list(work.rglob("__pycache__"))
    assert not (work / "prepare.py").exists() and not (work / "grading.toml").exists()


def test_prepared_checkout_is_cached(toy_root, cache, tmp_path, monkeypatch):
    counter = tmp_path / "prepare-runs"
    prepare = toy_root / "tasks" / "arith" / "mul" / "frameworks" / "toy" / "prepare.py"
    prepare.write_text(prepare.read_text() + f"\nopen({str(counter)!r}, 'a').write('x')\n")
    variant, framework = _load(toy_root)
    started = time.monotonic()
    workspace.create_workspace(variant, framework, tmp_path / "ws1")
    cold = time.monotonic() - started
    started = time.monotonic()
    workspace.create_workspace(variant, framework, tmp_path / "ws2")
    warm = time.monotonic() - started
    assert counter.read_text() == "x", "the second workspace must reuse the prepared checkout"
    assert warm < 2.0 and warm < cold + 0.5
    (toy_root / "toy_src" / "calc" / "ops.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return b * a\n"
    )
    workspace.create_workspace(variant, framework, tmp_path / "ws3")
    assert counter.read_text() == "xx", "a changed source must be prepared again"


def test_gold_patch_is_prepared_to_original_without_hidden_tests(toy_root, cache, tmp_path):
    variant, framework = _load(toy_root)
    gold = workspace.gold_patch(variant, framework)
    assert "+    return a * b" in gold and "-    raise NotImplementedError" in gold
    assert "tests/test_ops.py" not in gold
    work = workspace.create_workspace(variant, framework, tmp_path / "ws")
    subprocess.run(["git", "apply", "-"], input=gold, text=True, cwd=work, check=True)
    assert "return a * b" in (work / "calc" / "ops.py").read_text()


def test_agent_diff_includes_untracked_and_deleted_files(toy_root, cache, tmp_path):
    variant, framework = _load(toy_root)
    prepared = workspace.prepared_checkout(variant, framework)
    work = workspace.create_workspace(variant, framework, tmp_path / "ws")
    write(work / "calc" / "new.py", "X = 1\n")
    (work / "calc" / "__init__.py").unlink()
    write(work / "calc" / "__pycache__" / "x.pyc", "cache")
    diff = workspace.tree_diff(prepared, work)
    assert sorted(diff.files) == ["calc/__init__.py", "calc/new.py"]
    assert "+X = 1" in diff.patch and "deleted file" in diff.patch


def test_prepare_derives_each_tree_once(toy_root, cache, tmp_path, monkeypatch):
    """A trial's trees come from one `prepare`: the source is hashed once, each cached tree checked once."""
    variant, framework = _load(toy_root)
    workspace.prepare(variant, framework, tmp_path / "warm-up")
    calls = {"source_version": 0, "hash_tree": 0}
    for name in calls:
        original = getattr(workspace, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(workspace, name, counted)
    ws = workspace.prepare(variant, framework, tmp_path / "ws")
    assert calls == {"source_version": 1, "hash_tree": 3}, "source once; task folder, original, prepared once each"
    assert ws.prepared == workspace.prepared_checkout(variant, framework)
    assert ws.original == workspace.original_source(framework)
    assert _git("log", "--format=%s", cwd=ws.work).split() == ["baseline"]
    assert workspace.solution_diff(variant, ws.prepared, ws.original) == workspace.gold_patch(variant, framework)


def test_prepare_imports_the_harness_without_an_install(toy_root, cache, tmp_path, monkeypatch):
    """prepare.py imports bench.prepare_kit; a fresh clone run as `python runner.py` has no installed
    `bench`. An interpreter without site-packages (python -S) stands in for one."""
    variant, framework = _load(toy_root)
    write(
        variant.dir / "prepare.py",
        "import sys\nfrom bench.prepare_kit import Checkout\n\nck = Checkout()\n"
        'ck.edit("calc/ops.py", "    return a * b", "    raise NotImplementedError")\n',
    )
    bare = tmp_path / "python-without-site"
    write(bare, f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bare))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    work = workspace.create_workspace(variant, framework, tmp_path / "ws")
    assert "raise NotImplementedError" in (work / "calc" / "ops.py").read_text()


def test_an_agents_venv_stays_out_of_the_diff_and_the_graded_copy(tmp_path):
    """A .venv the agent built (getting-started asks for one) is a build output: its site-packages would
    otherwise be read as agent code (pytest's names, .pth files, test files) and swamp agent.diff."""
    before, after = tmp_path / "before", tmp_path / "after"
    write(before / "calc" / "ops.py", "x = 1\n")
    write(after / "calc" / "ops.py", "x = 1\n")
    write(after / "setup_env.sh", "python3 -m venv .venv\n")
    write(after / ".venv" / "lib" / "site-packages" / "_pytest" / "junitxml.py", "import _pytest\n")
    write(after / ".venv" / "lib" / "site-packages" / "distutils-precedence.pth", "import os\n")
    diff = workspace.tree_diff(before, after)
    assert diff.files == ["setup_env.sh"] and not diff.left_out and "site-packages" not in diff.patch
    assert workspace.copy_clean(after, tmp_path / "graded") == [] and not (tmp_path / "graded" / ".venv").exists()
    assert (tmp_path / "graded" / "setup_env.sh").is_file()


def test_the_agents_git_files_cannot_hide_or_blur_its_changes(tmp_path, monkeypatch):
    """A .gitignore in the agent's tree (or the host's own excludes) kept new files out of agent.diff, and so out of
    grading's view of what changed; a `-diff` attribute turned changes into binary blobs; CRLF was read as LF."""
    before, after = tmp_path / "before", tmp_path / "after"
    write(before / "calc" / "ops.py", "def mul(a, b):\n    return a * b\n")
    write(after / "calc" / "ops.py", "def mul(a, b):\n    return a + b\n")
    write(after / "calc" / "hook.py", "print('hidden')\n")
    write(after / "calc" / ".gitignore", "hook.py\n.gitignore\n")
    write(after / ".gitattributes", "*.py -diff\n")
    (after / "notes.txt").write_bytes(b"caf\xe9\r\n")
    excludes = write(tmp_path / "home" / "global-excludes", "*.py\n")  # the host user's own git settings
    write(tmp_path / "home" / ".gitconfig", f"[core]\n\texcludesFile = {excludes}\n[diff]\n\trenames = copies\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.excludesFile=/nonexistent'")
    diff = workspace.tree_diff(before, after)
    assert diff.files == [".gitattributes", "calc/.gitignore", "calc/hook.py", "calc/ops.py", "notes.txt"]
    assert "GIT binary patch" not in diff.patch and "+    return a + b" in diff.patch
    assert "+print('hidden')" in diff.patch and "+caf\ufffd\r" in diff.patch


def test_copies_and_removal_survive_a_tree_thousands_of_folders_deep(tmp_path):
    """shutil's copytree and rmtree (and os.makedirs) recurse: an agent's `mkdir -p a/a/a/...` ended the runner."""
    deep = tmp_path / "work"
    try:
        subprocess.run(["mkdir", "-p", "/".join([str(deep), *["a"] * 1500])], check=True)
        write(deep / "ok.txt", "kept\n")
        skipped = workspace.copy_clean(deep, tmp_path / "copy")
        assert (tmp_path / "copy" / "ok.txt").read_text() == "kept\n"
        assert skipped == ["/".join(["a"] * (workspace.MAX_DEPTH + 1))]
        os.chmod(deep / "a", 0)
        workspace.remove_tree(deep)
        assert not deep.exists()
    finally:
        subprocess.run(["rm", "-rf", str(deep)])
