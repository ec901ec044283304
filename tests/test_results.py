"""Result files and resume: finished trials are never re-run, unfinished and corrupt ones are."""

from __future__ import annotations

import json

import pytest

from bench import results
from bench.agents import make_agent
from bench.run import RunConfig, execute, make_plan


def test_atomic_write_and_read(tmp_path):
    data = results.new_result("r1", "arith/mul", "arith", "toy", "oracle", None, 0)
    results.write_json_atomic(tmp_path / "result.json", data)
    assert results.read_result(tmp_path) == data
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"], "no temp file may be left behind"
    assert data["status"] == "running" and data["metrics"]["active_gpu_s"] is None
    assert results.trial_path("add-new-model/mixtral", "reference", "builtin", 2).as_posix() == \
        "add-new-model__mixtral/reference/builtin/2"


def test_corrupt_result_is_kept_aside_and_unfinished(tmp_path):
    (tmp_path / "result.json").write_text('{"schema_version": 1, "status": "reso')
    with pytest.raises(results.CorruptResult, match="result.json: not valid JSON"):
        results.read_result(tmp_path)
    warnings = []
    assert results.is_finished(tmp_path, warn=warnings.append) is False
    assert (tmp_path / "result.json.corrupt").exists() and not (tmp_path / "result.json").exists()
    assert "kept as result.json.corrupt" in warnings[0]


def _config(toy_root, tmp_path, run_id="r", resume=False):
    return RunConfig(task="arith/mul", framework="toy", agents=["oracle", "nop"], run_id=run_id, resume=resume,
                     isolate=False, results_dir=str(tmp_path / "results"), specs_root=str(toy_root))


def _agents():
    return {"oracle": make_agent("oracle"), "nop": make_agent("nop")}


def test_run_writes_results_and_resume_skips_finished(toy_root, cache, tmp_path):
    cfg = _config(toy_root, tmp_path)
    rows = execute(cfg, make_plan(cfg, _agents()))
    assert {r["agent"]: r["status"] for r in rows} == {"oracle": "resolved", "nop": "unresolved"}
    run_dir = tmp_path / "results" / "r"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["trials"] == ["arith__mul/toy/oracle/0", "arith__mul/toy/nop/0"]
    oracle_dir, nop_dir = run_dir / "arith__mul/toy/oracle/0", run_dir / "arith__mul/toy/nop/0"
    for name in ("result.json", "trajectory.jsonl", "agent.diff", "grader.log", "agent.log"):
        assert (oracle_dir / name).is_file(), name
    assert "+    return a * b" in (oracle_dir / "agent.diff").read_text()
    assert (nop_dir / "agent.diff").read_text() == ""

    finished = (oracle_dir / "result.json").read_bytes()
    (nop_dir / "result.json").write_text("{ truncated")
    cfg = _config(toy_root, tmp_path, resume=True)
    rows = execute(cfg, make_plan(cfg, _agents()))
    assert (oracle_dir / "result.json").read_bytes() == finished, "a finished trial must not run again"
    assert (nop_dir / "result.json.corrupt").read_text() == "{ truncated"
    assert {r["agent"]: r["status"] for r in rows} == {"oracle": "resolved", "nop": "unresolved"}

    errored = json.loads(finished)
    errored.update(status="error", error={"phase": "agent", "message": "x"})
    (oracle_dir / "result.json").write_text(json.dumps(errored))
    rows = execute(cfg, make_plan(cfg, _agents()))
    assert {r["agent"]: r["status"] for r in rows}["oracle"] == "resolved", "an errored trial runs again"
