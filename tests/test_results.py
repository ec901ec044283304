"""Result files and resume: finished trials are never re-run, unfinished and corrupt ones are."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import report, results
from bench.agents import make_spec
from bench.metrics import Metrics
from bench.run import RunConfig, execute, make_plan

# The metrics object of the first schema-1 files, before cost_note and the throughput details were written.
OLD_METRICS = {
    "agent_turns": 0,
    "session_duration_s": None,
    "wall_time_s": 0.0,
    "per_turn_context_p50": None,
    "input_tokens": 0,
    "output_tokens": 0,
    "cache_read_tokens": 0,
    "cache_write_tokens": 0,
    "cost_usd": None,
    "api_errors": 0,
    "api_retries": 0,
    "gpu_available": False,
    "gpus": [],
    "active_gpu_s": None,
    "gpu_hours_allocated": None,
    "throughput_tokens_per_s": None,
}
FIXTURES = Path(__file__).parent / "fixtures" / "results"


def test_atomic_write_and_read(tmp_path):
    data = results.TrialResult("r1", "arith/mul", "arith", "toy", "oracle", None, 0).to_json()
    results.write_json_atomic(tmp_path / "result.json", data)
    assert results.read_result(tmp_path) == data
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"], "no temp file may be left behind"
    assert data["status"] == "running" and data["metrics"]["active_gpu_s"] is None
    assert (
        results.trial_path("add-new-model/mixtral", "reference", "builtin", 2).as_posix()
        == "add-new-model__mixtral/reference/builtin/2"
    )


def test_version_1_results_from_before_notes_and_phase_seconds_still_read(tmp_path):
    """A result.json written before `notes` and `phase_seconds` existed reads with their defaults; a file
    with an unknown field or without its identity is corrupt, and the error names the file and field."""
    old = {
        "schema_version": 1,
        "run_id": "r0",
        "task": "arith/mul",
        "task_family": "arith",
        "framework": "toy",
        "agent": "oracle",
        "model": None,
        "trial": 0,
        "status": "resolved",
        "error": None,
        "exit_status": "completed",
        "started_at": "2026-11-01T10:00:00+00:00",
        "finished_at": "2026-11-01T10:01:00+00:00",
        "metrics": dict(OLD_METRICS),
        "grade": {"resolved": True},
        "files": dict(results.FILES),
    }
    results.write_json_atomic(tmp_path / "result.json", old)
    data = results.read_result(tmp_path)
    added = {
        "cost_note": None,
        "throughput_spread": None,
        "throughput_samples": None,
        "throughput_runs": None,
        "throughput_measured": None,
    }
    assert data == {**old, "metrics": {**OLD_METRICS, **added}, "notes": [], "phase_seconds": {}}
    parsed = results.TrialResult.from_json(data)
    assert parsed.status == "resolved" and parsed.grade == {"resolved": True} and parsed.to_json() == data
    for broken, field in [
        ({**old, "tokens": 5}, "unknown field(s) tokens"),
        ({**old, "schema_version": 2}, "not a schema_version 1 result"),
        ({k: v for k, v in old.items() if k != "task"}, "missing field(s) task"),
        ({**old, "metrics": {**OLD_METRICS, "turns": 3}}, "unknown metric(s) turns"),
    ]:
        results.write_json_atomic(tmp_path / "result.json", broken)
        with pytest.raises(results.CorruptResult, match=re.escape(field)) as caught:
            results.read_result(tmp_path)
        assert str(tmp_path / "result.json") in str(caught.value)


@pytest.mark.parametrize("name", ["schema1-smoke-oracle.json", "schema1-toy-throughput.json"])
def test_results_written_before_metrics_were_typed_read_back_unchanged(name, tmp_path):
    """result.json files written by the harness before `Metrics` existed (a real smoke trial; a toy trial
    with measured throughput) read into the typed result and write back key for key, value for value."""
    old = json.loads((FIXTURES / name).read_text())
    parsed = results.TrialResult.from_json(old)
    assert isinstance(parsed.metrics, Metrics) and parsed.metrics.to_json() == {
        **Metrics().to_json(),
        **old["metrics"],
    }, "every old key keeps its name and value"
    assert parsed.to_json() == {**old, "metrics": parsed.metrics.to_json()}
    if name == "schema1-toy-throughput.json":
        assert parsed.metrics.throughput_tokens_per_s == 300.0 and parsed.metrics.throughput_runs == 2
        assert parsed.metrics.throughput_spread == [290.0, 330.0]
    run = tmp_path / "old-run" / "t" / "0"
    results.write_json_atomic(run / "result.json", old)
    _, [trial] = report.load_runs([str(tmp_path / "old-run")], tmp_path)
    assert trial["status"] == "resolved" and trial["metrics"]["agent_turns"] == 0


def test_the_first_failure_is_the_error_and_a_note_is_never_one():
    result = results.TrialResult("r", "arith/mul", "arith", "toy", "nop", None, 0)
    result.notes.append("throughput not measured: no benchmark")
    assert result.error is None and result.status == "running"
    result.fail("agent", "the agent crashed")
    result.fail("grade", "grading timed out")
    assert result.status == "error" and result.error == {"phase": "agent", "message": "the agent crashed"}


def test_corrupt_trial_folder_is_kept_aside_whole_and_unfinished(tmp_path):
    folder = tmp_path / "0"
    folder.mkdir()
    (folder / "result.json").write_text('{"schema_version": 1, "status": "reso')
    (folder / "trajectory.jsonl").write_text('{"kind": "assistant"}\n')
    with pytest.raises(results.CorruptResult, match="result.json: not valid JSON"):
        results.read_result(folder)
    warnings = []
    assert results.is_finished(folder, warn=warnings.append) is False
    aside = tmp_path / "0.corrupt-1"
    assert not folder.exists() and sorted(p.name for p in aside.iterdir()) == [
        "result.json.corrupt",
        "trajectory.jsonl",
    ]
    assert "kept as 0.corrupt-1" in warnings[0]
    folder.mkdir()
    (folder / "result.json").write_text("[]")
    assert results.is_finished(folder, warn=warnings.append) is False
    assert (tmp_path / "0.corrupt-2" / "result.json.corrupt").read_text() == "[]", (
        "an earlier copy is never overwritten"
    )


@pytest.mark.parametrize("run_id", ["../elsewhere", "/tmp/x", "a/b", "..", ".hidden", "-x", "", "profiles"])
def test_run_ids_that_are_paths_are_rejected(run_id, tmp_path):
    with pytest.raises(ValueError, match="run id"):
        results.check_run_id(run_id)
    with pytest.raises(ValueError, match="run id"):
        results.read_run(tmp_path, run_id)
    results.check_run_id("20261130-120000")
    results.check_run_id("validate-20261130-120000.v2_b")


def test_malformed_run_files_give_one_clear_error(tmp_path):
    run_file = tmp_path / "r" / "run.json"
    run_file.parent.mkdir()
    for text, message in [
        ("{ truncated", "not valid JSON"),
        ("[1, 2]", "not a run file"),
        ('{"args": {}, "trials": ["../../etc"]}', "must be a relative path inside the run folder"),
        ('{"args": {}, "trials": ["/abs/0"]}', "must be a relative path inside the run folder"),
    ]:
        run_file.write_text(text)
        with pytest.raises(results.RunFileError, match=message) as caught:
            results.read_run(tmp_path, "r")
        assert str(run_file) in str(caught.value)
    with pytest.raises(ValueError, match="relative path"):
        results.trial_path("arith/mul", "..", "nop", 0)


def _config(toy_root, tmp_path, run_id="r", resume=False):
    return RunConfig(
        task="arith/mul",
        framework="toy",
        agents=["oracle", "nop"],
        run_id=run_id,
        resume=resume,
        isolate=False,
        results_dir=str(tmp_path / "results"),
        specs_root=str(toy_root),
    )


def _agents():
    return {"oracle": make_spec("oracle"), "nop": make_spec("nop")}


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
    corrupt = nop_dir.with_name("0.corrupt-1")
    assert (corrupt / "result.json.corrupt").read_text() == "{ truncated"
    assert (corrupt / "trajectory.jsonl").is_file() and (corrupt / "grader.log").is_file(), "nothing recorded is lost"
    assert {r["agent"]: r["status"] for r in rows} == {"oracle": "resolved", "nop": "unresolved"}

    errored = json.loads(finished)
    errored.update(status="error", error={"phase": "agent", "message": "x"})
    (oracle_dir / "result.json").write_text(json.dumps(errored))
    rows = execute(cfg, make_plan(cfg, _agents()))
    assert {r["agent"]: r["status"] for r in rows}["oracle"] == "resolved", "an errored trial runs again"
    earlier = oracle_dir.with_name("0.error-1")
    assert json.loads((earlier / "result.json.error").read_text())["error"]["message"] == "x"
    assert "+    return a * b" in (earlier / "agent.diff").read_text(), "the earlier attempt's files are kept"
    assert len(rows) == 2, "an attempt kept aside is not a trial of the run"


def test_harness_overhead_script_reads_each_phase_of_a_run(toy_root, cache, tmp_path, capsys):
    from scripts.harness_overhead import main, overhead_rows

    cfg = _config(toy_root, tmp_path, run_id="timed")
    execute(cfg, make_plan(cfg, _agents()))
    rows = {r["agent"]: r for r in overhead_rows(tmp_path / "results", "timed")}
    assert rows["oracle"]["trials"] == 1 and set(rows) == {"oracle", "nop"}
    assert all(rows["oracle"]["seconds"][p] > 0 for p in ("setup", "agent", "grade"))
    assert rows["nop"]["seconds"]["throughput"] is None, "the throughput phase never runs after an unresolved trial"
    assert main(["timed", "--results-dir", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "setup s" in out and "throughput s" in out and "arith/mul" in out
    assert main(["nothing", "--results-dir", str(tmp_path / "results")]) == 2
