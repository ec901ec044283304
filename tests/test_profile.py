"""Static profile of a small tree with hand-counted files, lines, import depths and a real git diff."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from bench import profile
from bench.report_cli import cmd_profile, cmd_report

TREE = {
    "pkg/__init__.py": "VERSION = 1\n",
    "pkg/train.py": "from pkg import model\nimport pkg.data\n\nmodel.run()\n",
    "pkg/model.py": "from .layers import attention\n\n\ndef run():\n    return attention.X\n",
    "pkg/layers/__init__.py": "",
    "pkg/layers/attention.py": "import math\nX = 1\n",
    "pkg/data.py": "Y = 2\n",
    "pkg/unused.py": "Z = 3\n",
    "tests/test_model.py": "def test_x():\n    assert True\n",
    ".venv/lib/junk.py": "ignored = True\n",
    "AGENTS.md": "# Guide\n",
    ".agents/skills/add-model/SKILL.md": "# Skill\n",
}
# train -> model, data, pkg (1); model -> layers, layers.attention (2)
DEPTHS = {
    "pkg/train.py": 0,
    "pkg/__init__.py": 1,
    "pkg/model.py": 1,
    "pkg/data.py": 1,
    "pkg/layers/__init__.py": 2,
    "pkg/layers/attention.py": 2,
}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "fw"
    for rel, text in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def gold(tree, tmp_path) -> Path:
    """A real git diff: change attention.py and add rope.py, which attention.py imports."""
    work = tmp_path / "work"
    subprocess.run(["cp", "-r", str(tree), str(work)], check=True)
    git("init", "-q", cwd=work)
    git("add", "-A", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base", cwd=work)
    (work / "pkg/layers/attention.py").write_text("import math\nfrom . import rope\nX = 2\n")
    (work / "pkg/layers/rope.py").write_text("R = 3\n")
    git("add", "-A", cwd=work)
    patch = tmp_path / "add-rope.diff"
    patch.write_text(git("diff", "--cached", cwd=work))
    return patch


def test_counts_and_depths(tree):
    p = profile.profile_tree(tree, entry="pkg/train.py")
    assert p["python_files"] == 8  # .venv skipped
    assert p["python_lines"] == 1 + 4 + 5 + 0 + 2 + 1 + 1 + 2
    assert (p["python_test_files"], p["python_test_lines"]) == (1, 2)
    source = [text for rel, text in TREE.items() if rel.startswith("pkg/")]
    if p["token_counter"].startswith("approximation"):
        assert p["read_tokens"] == sum(math.ceil(len(t) / 4) for t in source)
    assert p["read_tokens"] > 0
    assert p["agent_guides"] == ["AGENTS.md"]
    assert p["skills"] == [".agents/skills/add-model/SKILL.md"]
    assert p["max_import_depth"] == 2 and p["files_reachable_from_entry"] == len(DEPTHS)
    depths = profile.import_depths(tree, Path("pkg/train.py"))
    assert {k.as_posix(): v for k, v in depths.items()} == DEPTHS


def test_gold_diff_files_lines_and_depth(tree, gold, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        cmd_profile(
            [
                "--path",
                str(tree),
                "--entry",
                "pkg/train.py",
                "--gold-diff",
                f"add-new-model/rope={gold}",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads((out / "profile.json").read_text())
    (task,) = data["profiles"][0]["tasks"]
    assert task["task"] == "add-new-model/rope"
    assert sorted(task["files"]) == ["pkg/layers/attention.py", "pkg/layers/rope.py"]
    assert (task["files_touched"], task["lines_touched"]) == (2, 4)  # -X=1 +import +X=2, +R=3
    assert task["import_depths"] == {"pkg/layers/attention.py": 2, "pkg/layers/rope.py": 3}
    assert task["import_depth"] == 3
    printed = capsys.readouterr().out
    assert "| fw | add-new-model/rope | 2 | 4 | 3 |" in printed
    assert (out / "profile.md").read_text() in printed


def test_entry_found_by_name(tree):
    assert profile.profile_tree(tree)["entry_point"] == "pkg/train.py"


def test_bad_input_exits_2(tree, tmp_path, capsys):
    assert cmd_profile(["--path", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert cmd_profile(["--path", str(tree), "--entry", "pkg/missing.py", "--out", str(tmp_path / "o")]) == 2
    assert "--entry pkg/missing.py is not a file" in capsys.readouterr().err
    assert (
        cmd_profile(["--path", str(tree), "--gold-diff", str(tmp_path / "none.diff"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "is not a file; pass TASK=FILE or FILE" in capsys.readouterr().err
    bad = tmp_path / "bad.diff"
    bad.write_text("diff --git a/pkg/x.py b/pkg/x.py\n--- a/pkg/x.py\n+++ b/pkg/x.py\n@@ -1 +1 @@\n-a\n+b\n")
    assert cmd_profile(["--path", str(tree), "--gold-diff", f"t={bad}", "--out", str(tmp_path / "o")]) == 2
    assert "the gold diff does not apply" in capsys.readouterr().err


def test_framework_profile_measures_each_task_gold_patch(cache, tmp_path):
    """The bundled reference framework and its real tasks, through the harness's own workspace code."""
    from bench import specs

    assert cmd_profile(["--framework", "reference", "--out", str(tmp_path)]) == 0
    (p,) = json.loads((tmp_path / "profile.json").read_text())["profiles"]
    assert p["framework"] == "reference" and p["path"] == "reference_impl"
    assert p["entry_point"] == "reftrain/train.py" and p["max_import_depth"] >= 1
    expected = [t for t in specs.list_tasks() if "reference" in specs.load_task(t).frameworks()]
    assert [t["task"] for t in p["tasks"]] == expected
    for task in p["tasks"]:
        patch = specs.load_task(task["task"]).variant("reference").solution_patch
        if patch is not None:
            text = patch.read_text()
            assert task["files_touched"] == text.count("\ndiff --git ") + text.startswith("diff --git ")


def test_framework_profile_on_a_spec_tree(toy_root, cache, tmp_path):
    """frameworks/toy + tasks/arith/mul from conftest: gold = prepared -> original, one line swapped."""
    out = tmp_path / "out"
    assert (
        cmd_profile(
            ["--framework", "all", "--specs-root", str(toy_root), "--entry", "calc/__init__.py", "--out", str(out)]
        )
        == 0
    )
    (p,) = json.loads((out / "profile.json").read_text())["profiles"]
    assert (p["framework"], p["path"], p["python_files"], p["python_lines"]) == ("toy", "toy_src", 3, 7)
    (task,) = p["tasks"]
    assert (task["task"], task["files"], task["lines_touched"]) == ("arith/mul", ["calc/ops.py"], 2)
    assert task["import_depth"] is None and task["import_depths"] == {"calc/ops.py": None}
    assert "not reached from entry" in (out / "profile.md").read_text()
    assert cmd_profile(["--framework", "nope", "--specs-root", str(toy_root), "--out", str(out)]) == 2


def test_default_output_is_apart_from_the_runs(tree, tmp_path, monkeypatch, capsys):
    """A profile is no run: it goes to results/profiles/<timestamp>/, and `report` refuses it as a run."""
    monkeypatch.setattr("bench.report_cli.RESULTS_ROOT", tmp_path / "results")
    assert cmd_profile(["--path", str(tree), "--entry", "pkg/train.py"]) == 0
    [out] = (tmp_path / "results" / "profiles").iterdir()
    assert (out / "profile.json").is_file() and (out / "profile.md").is_file()
    assert capsys.readouterr().out.strip().endswith(f"-> {out / 'profile.json'}")
    assert cmd_report([str(out)]) == 2
    assert "is a profile (written by `runner.py profile`), not a run" in capsys.readouterr().err


def test_the_entry_file_comes_from_framework_toml(toy_root, cache, tmp_path, capsys):
    """[profile] entry in framework.toml names the entry; --entry overrides it; a wrong path names the file."""
    fw = toy_root / "frameworks" / "toy" / "framework.toml"
    fw.write_text(fw.read_text() + '\n[profile]\nentry = "calc/__init__.py"\n')
    assert profile.profile_framework("toy", specs_root=toy_root)["entry_point"] == "calc/__init__.py"
    assert profile.profile_framework("toy", "calc/ops.py", specs_root=toy_root)["entry_point"] == "calc/ops.py"
    fw.write_text(fw.read_text().replace('entry = "calc/__init__.py"', 'entry = "calc/train.py"'))
    assert cmd_profile(["--framework", "toy", "--specs-root", str(toy_root), "--out", str(tmp_path / "o")]) == 2
    assert "frameworks/toy/framework.toml: [profile] entry 'calc/train.py' is not a file" in capsys.readouterr().err
