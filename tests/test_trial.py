"""One trial's phases beyond the agent: setup failures and the throughput measurement."""

from __future__ import annotations

from bench.agents import make_agent
from bench.run import RunConfig, execute, make_plan
from conftest import make_toy_root


def _run(root, tmp_path, agent="oracle"):
    cfg = RunConfig(task="arith/mul", framework="toy", agents=[agent], run_id="t", isolate=False,
                    results_dir=str(tmp_path / "results"), specs_root=str(root))
    [row] = execute(cfg, make_plan(cfg, {agent: make_agent(agent)}))
    return row


def _with_throughput(root, command):
    fw = root / "frameworks" / "toy" / "framework.toml"
    fw.write_text(fw.read_text() + f"[commands]\nthroughput = '''{command}'''\n")
    task = root / "tasks" / "arith" / "mul" / "task.toml"
    task.write_text(task.read_text().replace("measure_throughput = false", "measure_throughput = true"))


def test_throughput_recorded_after_a_resolved_trial(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs")
    _with_throughput(root, """python -c 'print("step 1"); print({"tokens_per_s": 1}); print("{\\"tokens_per_s\\": 1234.5}")'""")
    row = _run(root, tmp_path)
    assert row["status"] == "resolved" and row["error"] is None
    assert row["metrics"]["throughput_tokens_per_s"] == 1234.5


def test_throughput_failure_is_a_note_not_a_failed_trial(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs")
    _with_throughput(root, "python -m no_such_benchmark_module")
    row = _run(root, tmp_path)
    assert row["status"] == "resolved" and row["metrics"]["throughput_tokens_per_s"] is None
    assert row["error"]["phase"] == "throughput" and "without a JSON line holding tokens_per_s" in row["error"]["message"]


def test_throughput_not_run_for_unresolved(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs")
    _with_throughput(root, "python -c 'print(1/0)'")
    row = _run(root, tmp_path, agent="nop")
    assert row["status"] == "unresolved" and row["error"] is None


def test_failing_prepare_is_a_setup_error(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs")
    (root / "tasks" / "arith" / "mul" / "frameworks" / "toy" / "prepare.py").write_text("raise SystemExit('no model here')\n")
    row = _run(root, tmp_path)
    assert row["status"] == "error" and row["error"]["phase"] == "setup"
    assert "prepare.py failed (exit 1)" in row["error"]["message"] and "no model here" in row["error"]["message"]
    assert row["exit_status"] is None and row["finished_at"] is not None
