"""grading.toml mistakes that types let through fail when the task loads, naming the file, field and fix."""

from __future__ import annotations

import pytest

from bench import specs

GRADING = ("tasks", "arith", "mul", "frameworks", "toy", "grading.toml")


def _load_with(toy_root, text: str) -> str:
    toy_root.joinpath(*GRADING).write_text(text)
    with pytest.raises(specs.SpecError) as error:
        specs.load_task("arith/mul", toy_root).variant("toy")
    message = str(error.value)
    assert message.startswith("tasks/arith/mul/frameworks/toy/grading.toml: "), message
    return message


def test_an_id_in_fail_to_pass_and_pass_to_pass(toy_root):
    message = _load_with(
        toy_root,
        'command = "python -m pytest -q tests"\n'
        'fail_to_pass = ["tests/test_ops.py::test_mul"]\n'
        'pass_to_pass = ["tests/test_ops.py::test_add", "tests/test_ops.py::test_mul"]\n',
    )
    assert "'tests/test_ops.py::test_mul' in both 'fail_to_pass' and 'pass_to_pass'" in message
    assert "keep it in the list that says which" in message


def test_a_repeated_id(toy_root):
    message = _load_with(
        toy_root,
        'command = "python -m pytest -q tests"\n'
        'fail_to_pass = ["tests/test_ops.py::test_mul", "tests/test_ops.py::test_mul"]\n',
    )
    assert "field 'fail_to_pass' lists 'tests/test_ops.py::test_mul' more than once; keep one of each" in message


def test_an_empty_command_and_a_repeated_id_are_both_reported(toy_root):
    message = _load_with(
        toy_root,
        'command = "  "\nfail_to_pass = ["tests/test_ops.py::test_mul"]\n'
        'gpu_fail_to_pass = ["tests/a.py::t[{n}]", "tests/a.py::t[{n}]"]\n',
    )
    lines = message.splitlines()
    assert len(lines) == 2 and all(line.startswith("tasks/arith/mul/frameworks/toy/grading.toml: ") for line in lines)
    assert "field 'command' is empty; write the test command" in lines[0]
    assert "field 'gpu_fail_to_pass' lists 'tests/a.py::t[{n}]' more than once" in lines[1]


def test_a_correct_grading_toml_has_no_problems(toy_root):
    variant = specs.load_task("arith/mul", toy_root).variant("toy")
    assert specs.grading_problems(variant.grading) == []
