"""The wall, attacked through what an agent leaves in its workspace for the runner to handle after it stops: the
runner copies, diffs, scans and grades that tree on the host. A malicious scripted agent (builtin agent, fake LLM
server, the real CLI, as test_attacks.py) never fixes the toy task; each scenario must end `unresolved` — not
`resolved` (a forced verdict), not `error` (a trial the agent could have re-run), and never with the runner down.
Found by an attack review; each scenario forced one of those before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from tests.fake_llm import FakeLLMServer, Reply

# Marks every test report passed, from inside the code under test (the toy's calc package imports it).
HOOK = """import gc

import pytest
from _pytest.config import Config


class _Passing:
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        outcome.get_result().outcome = "passed"


for _o in gc.get_objects():
    if isinstance(_o, Config):
        _o.pluginmanager.register(_Passing())
        break
"""


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


SCENARIOS = {
    # the text scan skipped links: the hook behind calc/evil.py -> evil.txt was never read
    "hook-behind-a-link": [
        f"printf '%s' {_q(HOOK)} > calc/evil.txt; ln -s evil.txt calc/evil.py; "
        "echo 'from calc import evil' >> calc/__init__.py"
    ],
    # the agent's .gitignore hid a new file from agent.diff, and so from the scan of changed files
    "hook-hidden-by-gitignore": [
        f"printf '%s' {_q(HOOK)} > calc/hook.py; printf 'hook.py\\n.gitignore\\n' > calc/.gitignore; "
        "echo 'from calc import hook' >> calc/__init__.py"
    ],
    # a test module the agent added is collected by the grading command and runs its code in the test process
    "hook-in-an-added-test-module": [f"printf '%s' {_q(HOOK)} > tests/test_zz_helpers.py"],
    # each of these ended the trial in `error` (re-run on --resume) or the whole run
    "odd-leftovers": [
        "mkdir -p nonexistent_pkg.sub && touch nonexistent_pkg.sub/__init__.py",  # find_spec imported the parent
        "mkdir .atebench-junit.xml",  # unlink of the report's path raised
        "printf 'caf\\xe9\\r\\n' > notes.txt",  # git's output decoded strictly; CRLF turned into LF
        "touch \"$(printf 'n\\xffm.txt')\"",
        "d=.; for i in $(seq 1 1200); do d=$d/a; done; mkdir -p $d",  # copytree and rmtree recursed
        "truncate -s 100M calc/big.py",  # sparse: read whole into the runner's memory, written out in full
    ],
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_what_the_agent_leaves_cannot_force_its_verdict_or_an_error(scenario, toy_root, tmp_path):
    results = tmp_path / "results"
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-leftovers-0123456789", "ATEBENCH_CACHE": str(tmp_path / "c")}
    calls = [("bash", {"command": command + "; true"}) for command in SCENARIOS[scenario]]
    with FakeLLMServer([Reply(tool_calls=calls), Reply(tool_calls=[("submit", {"summary": "done"})])]) as server:
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "runner.py"),
                *("--specs-root", str(toy_root), "--task", "arith/mul", "--framework", "toy", "--sandbox", "local"),
                *("--results-dir", str(results), "--no-throughput", "--agent", "builtin", "--run-id", "attack"),
                *("--model", "anthropic/claude-haiku-4-5", "--base-url", server.url),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=REPO,
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trial = results / "attack" / "arith__mul" / "toy" / "builtin" / "0"
    result = json.loads((trial / "result.json").read_text())
    assert result["exit_status"] == "submitted", result.get("error")
    assert result["status"] == "unresolved", (result["status"], result.get("error"), result.get("grade"))
    grade, diff = result["grade"], (trial / "agent.diff").read_text()
    assert grade["fail_to_pass"] == {"tests/test_ops.py::test_mul": "failed"} or grade["tampering"], grade

    if scenario == "hook-behind-a-link":
        assert any(hit.startswith("calc/evil.py: ") for hit in grade["tampering"]), grade["tampering"]
    if scenario == "hook-hidden-by-gitignore":
        assert "diff --git a/calc/hook.py b/calc/hook.py" in diff, "agent.diff hides the file"
        assert any(hit.startswith("calc/hook.py: ") for hit in grade["tampering"]), grade["tampering"]
    if scenario == "hook-in-an-added-test-module":
        assert (
            "tests/test_zz_helpers.py: added by the agent, removed for grading" in grade["test_infrastructure_changes"]
        )
        assert grade["fail_to_pass"] == {"tests/test_ops.py::test_mul": "failed"}
    if scenario == "odd-leftovers":
        exact = (trial / "agent.diff").read_bytes().decode()
        assert "+caf\ufffd\r\n" in exact, "the latin-1 line (and its CRLF) is on the record"
        assert 'diff --git "a/n\\377m.txt" "b/n\\377m.txt"' in exact, "the file whose name is not UTF-8 too"
        assert any(hit.startswith("calc/big.py: 104857600 bytes, too large") for hit in grade["tampering"])
        assert any("too deep" in line and line.startswith("a/a/a") for line in grade["test_infrastructure_changes"])
        assert "Zen of Python" not in proc.stdout + proc.stderr
        assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("atebench-trial-*")), "the workspace stayed"
