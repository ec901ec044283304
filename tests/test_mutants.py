"""Mutation testing of a task's grader (bench/mutants.py): which edits are made, where, deterministically,
and `validate --mutants` grading them through real trials on the toy spec tree."""

from __future__ import annotations

import json
import shutil
import subprocess

from conftest import make_toy_root, write

from bench import mutants, specs, workspace
from bench.cli import cmd_run, cmd_validate
from bench.report_cli import cmd_report

# A gold with several mutable lines: the prepare step stubs `mul` out, so every line of it is the gold's.
OPS = """def add(a, b):
    return a + b


def mul(a, b):
    if b < 0:
        return -mul(a, -b)
    total = 0
    for _ in range(b):
        total += a
    return total
"""

PREPARE = """import sys
from pathlib import Path

ops = Path(sys.argv[1]) / "calc" / "ops.py"
text = ops.read_text()
start = text.index("def mul")
ops.write_text(text[:start] + "def mul(a, b):\\n    raise NotImplementedError\\n")
"""

TESTS = """from calc.ops import add, mul


def test_mul():
    assert mul(3, 4) == 12
    assert mul(3, -2) == -6


def test_add():
    assert add(2, 2) == 4
"""


def richer_toy_root(tmp_path):
    root = make_toy_root(tmp_path / "specs")
    write(root / "toy_src" / "calc" / "ops.py", OPS)
    variant = root / "tasks" / "arith" / "mul" / "frameworks" / "toy"
    write(variant / "prepare.py", PREPARE)
    write(variant / "tests" / "test_ops.py", TESTS)
    return root


def toy_mutants(root, count, seed):
    variant = specs.load_task("arith/mul", root).variant("toy")
    return mutants.mutants_for(variant, specs.load_framework("toy", root), count, seed)


def test_added_lines_are_the_new_and_changed_ones():
    before = "a = 1\nb = 2\nc = 3\n"
    after = "a = 1\nb = 5\nx = 0\nc = 3\n"
    assert mutants.added_lines(before, after) == {2, 3}
    assert mutants.added_lines("", "a\nb\n") == {1, 2}


def test_edits_stay_on_the_given_lines_and_cover_every_kind():
    source = (
        "def f(x: int | None, y):\n"
        "    '''doc.'''\n"
        "    z = x + 1\n"
        "    if x < y and not y:\n"
        "        print(x, y)\n"
        "    return -z\n"
    )
    kinds = {e.kind for e in mutants.candidate_edits("f.py", source, {3, 4, 5, 6})}
    assert kinds == {"operator", "constant", "comparison", "boolean", "negation", "swap-args", "drop-statement"}
    only_line_3 = mutants.candidate_edits("f.py", source, {3})
    assert {e.line for e in only_line_3} == {3} and {e.kind for e in only_line_3} == {
        "operator",
        "constant",
        "drop-statement",
    }
    # Annotations (`int | None`) and docstrings are never mutated: such edits are equivalent.
    assert not [e for e in mutants.candidate_edits("f.py", source, {1, 2}) if e.kind != "drop-statement"]
    mutated = {mutants.apply_edit(source, e) for e in mutants.candidate_edits("f.py", source, {3})}
    assert "    z = (x - 1)\n" in "".join(m for m in mutated if m) and None not in mutated


def test_a_collective_gets_another_process_group_of_the_file():
    source = "def f(x, mesh):\n    dist.all_reduce(x, group=mesh.dp_group)\n    return mesh.ep_group\n"
    edits = [e for e in mutants.candidate_edits("f.py", source, {2}) if e.kind == "group"]
    assert [mutants.apply_edit(source, e).splitlines()[1] for e in edits] == [
        "    dist.all_reduce(x, group=(mesh.ep_group))"
    ]


def test_mutants_are_deterministic_by_seed_apply_to_the_prepared_tree_and_touch_only_gold_lines(tmp_path, cache):
    root = richer_toy_root(tmp_path)
    first, again, other = toy_mutants(root, 5, 1), toy_mutants(root, 5, 1), toy_mutants(root, 5, 2)
    assert len(first) == 5
    assert [m.describe() for m in first] == [m.describe() for m in again]
    assert [m.describe() for m in first] != [m.describe() for m in other]
    variant = specs.load_task("arith/mul", root).variant("toy")
    prepared = workspace.prepared_checkout(variant, specs.load_framework("toy", root))
    for m in first:
        assert m.file == "calc/ops.py" and m.line >= 5, m.describe()  # inside mul, which the gold adds
        done = subprocess.run(
            ["git", "apply", "--check", "-"], cwd=prepared, input=m.patch, text=True, capture_output=True
        )
        assert done.returncode == 0, done.stderr
        assert m.diff.startswith("--- gold/calc/ops.py") and m.before in m.diff


def test_files_the_grading_restores_are_not_mutated(tmp_path, cache):
    """A mutant in a restored test file never reaches the grader: it would always survive."""
    root = richer_toy_root(tmp_path)
    variant = specs.load_task("arith/mul", root).variant("toy")
    framework = specs.load_framework("toy", root)
    prepared = workspace.prepared_checkout(variant, framework)
    gold = workspace.gold_patch(variant, framework)
    assert mutants.make_mutants(prepared, gold, 5, 0, "toy", exclude=frozenset({"calc/ops.py"})) == []
    assert len(mutants.make_mutants(prepared, gold, 5, 0, "toy")) == 5


def test_test_files_the_gold_adds_are_not_mutated(tmp_path, cache):
    """The gold may bring back the framework's own tests; they are not the solution, so no mutant goes there."""
    assert [
        p
        for p in ("tests/test_x.py", "pkg/tests/helpers.py", "conftest.py", "pkg/test_y.py", "pkg/y_test.py")
        if not mutants.is_test_file(p)
    ] == []
    assert [p for p in ("pkg/testing.py", "pkg/ops.py", "contest.py") if mutants.is_test_file(p)] == []
    root = richer_toy_root(tmp_path)
    write(root / "toy_src" / "calc" / "test_ops_own.py", "def test_own():\n    assert 1 + 1 == 2\n")
    prepare = root / "tasks" / "arith" / "mul" / "frameworks" / "toy" / "prepare.py"
    prepare.write_text(PREPARE + '(Path(sys.argv[1]) / "calc" / "test_ops_own.py").unlink()\n')
    drawn = toy_mutants(root, 50, 0)
    assert drawn and all(m.file == "calc/ops.py" for m in drawn)


def test_validate_with_mutants_grades_each_reports_the_survivors_and_resumes(tmp_path, cache, capsys):
    root = richer_toy_root(tmp_path)
    results_dir = tmp_path / "results"
    code = cmd_validate(
        [
            "--framework",
            "toy",
            "--task",
            "arith/mul",
            "--specs-root",
            str(root),
            "--run-id",
            "m",
            "--results-dir",
            str(results_dir),
            "--mutants",
            "6",
            "--seed",
            "3",
        ]
    )
    assert code == 0  # the task itself stays valid
    [report] = json.loads((results_dir / "m" / "mutants.json").read_text())
    assert report["task"] == "arith/mul" and report["mutants"] == 6
    assert report["killed"] + len(report["survived"]) + len(report["errored"]) == 6
    assert report["killed"] >= 4, report  # the hidden tests check positive and negative products
    survivors = (results_dir / "m" / "survivors.md").read_text()
    assert f"{report['killed']}/6 killed" in survivors
    for m in report["survived"]:
        assert f"mutant {m['index']}:" in survivors and m["diff"].strip() in survivors
    trials = sorted(p.name for p in (results_dir / "m" / "arith__mul" / "toy" / "oracle-mutant").iterdir())
    assert trials == [str(i) for i in range(6)]

    # Resumable like a run: a mutant that never finished runs again, the same mutants (run.json keeps
    # --mutants and --seed), finished trials untouched; options that change the run are refused.
    mutant_dir = results_dir / "m" / "arith__mul" / "toy" / "oracle-mutant"
    kept = (mutant_dir / "0" / "result.json").read_text()
    shutil.rmtree(mutant_dir / "2")
    assert cmd_validate(["--run-id", "m", "--results-dir", str(results_dir), "--resume", "--mutants", "7"]) == 2
    assert "--mutants 6 -> 7" in capsys.readouterr().err
    assert cmd_validate(["--run-id", "m", "--results-dir", str(results_dir), "--resume"]) == 0
    assert "8 already finished, 1 to run" in capsys.readouterr().out
    assert (mutant_dir / "0" / "result.json").read_text() == kept
    assert json.loads((results_dir / "m" / "mutants.json").read_text()) == [report]
    assert cmd_run(["--run-id", "m", "--results-dir", str(results_dir), "--resume"]) == 2
    assert "made by validate" in capsys.readouterr().err

    # The report shows the score per task.
    assert cmd_report(["m", "--results-dir", str(results_dir), "--out", str(tmp_path / "report")]) == 0
    row = f"| m | arith/mul | toy | 6 | {report['killed']} | {len(report['survived'])} | {len(report['errored'])} |"
    assert row in (tmp_path / "report" / "report.md").read_text()
    assert "Grader mutation score" in (tmp_path / "report" / "report.html").read_text()


def test_negative_mutant_count_is_refused(tmp_path):
    assert cmd_validate(["--mutants", "-1", "--results-dir", str(tmp_path)]) == 2
