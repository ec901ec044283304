"""The README says what exists: its commands are the ones CI runs, its paths and files are real."""

from __future__ import annotations

import re

from conftest import REPO

from bench import results

README = (REPO / "README.md").read_text()


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    setup = "bash scripts/install-bubblewrap.sh && python3 -m venv .venv && . .venv/bin/activate && "
    test_command = next(b.strip() for b in bash_blocks(README) if "python -m pytest" in b)
    main_job = next(b.strip() for b in bash_blocks(README) if "runner.py --task add-new-model" in b)
    assert test_command.startswith(setup) and main_job.startswith(setup), "both install what isolation needs"
    ci = (REPO / ".ci" / "run").read_text()
    assert test_command.removeprefix(setup) in ci and "bash scripts/install-bubblewrap.sh" in ci
    assert "cd reference_impl && python -m pytest" in test_command and "&& python -m pytest &&" not in test_command, (
        "the trainer's suite must run even when the harness's fails"
    )
    assert re.search(r'python -m pytest -m "?slow\b', ci), "CI runs the slow tests the default run leaves out"


def test_readme_states_durations_and_real_paths():
    assert re.search(r"Expect \d+(–\d+)? minutes on 2 CPU cores", README), "say how long the test command takes"
    assert "DURATION" not in README
    example = re.search(r"`(results/nightly/[^`]+)/`", README).group(1)
    assert (
        example
        == "results/nightly/" + results.trial_path("add-new-model/mixtral", "reference", "builtin", 0).as_posix()
    )
    for rel in set(
        re.findall(r"`((?:docs|bench|tasks|frameworks|reference_impl)/[\w./-]+\.(?:md|py|toml|png))`", README)
    ):
        assert (REPO / rel).exists(), f"README names {rel}, which does not exist"
    assert (REPO / "docs" / "report-screenshot.png").is_file()
