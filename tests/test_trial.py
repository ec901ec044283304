"""One trial's phases beyond the agent: setup failures and the throughput measurement."""

from __future__ import annotations

import json

import pytest
from conftest import make_toy_root

from bench import throughput
from bench.agents import make_spec
from bench.run import RunConfig, execute, make_plan
from bench.slurm import trial_resources
from bench.specs import SpecError, ThroughputSpec, load_framework, load_task
from bench.trial import TrialConfig


def _run(root, tmp_path, agent="oracle", measure_throughput=True):
    cfg = RunConfig(
        task="arith/mul",
        framework="toy",
        agents=[agent],
        run_id="t",
        isolate=False,
        results_dir=str(tmp_path / "results"),
        specs_root=str(root),
        measure_throughput=measure_throughput,
    )
    [row] = execute(cfg, make_plan(cfg, {agent: make_spec(agent)}))
    return row


def _with_throughput(root, command):
    fw = root / "frameworks" / "toy" / "framework.toml"
    fw.write_text(fw.read_text() + f"[commands]\nthroughput = '''{command}'''\n")
    task = root / "tasks" / "arith" / "mul" / "task.toml"
    task.write_text(task.read_text().replace("measure_throughput = false", "measure_throughput = true"))


def _variant_throughput(root, text):
    (root / "tasks" / "arith" / "mul" / "frameworks" / "toy" / "throughput.toml").write_text(text)


def test_throughput_recorded_after_a_resolved_trial(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs")
    _with_throughput(
        root, """python -c 'print("step 1"); print({"tokens_per_s": 1}); print("{\\"tokens_per_s\\": 1234.5}")'"""
    )
    row = _run(root, tmp_path)
    assert row["status"] == "resolved" and row["error"] is None and row["notes"] == []
    # the framework's generic benchmark runs throughput_repeats = 3 times, one sample each
    assert row["metrics"]["throughput_tokens_per_s"] == 1234.5
    assert row["metrics"]["throughput_samples"] == [1234.5] * 3 and row["metrics"]["throughput_runs"] == 3
    assert list(row["phase_seconds"]) == ["setup", "agent", "grade", "throughput"], "each phase is timed once"
    assert all(0 <= s < 600 for s in row["phase_seconds"].values())
    assert row["metrics"]["throughput_spread"] == [1234.5, 1234.5]


def test_variant_throughput_wins_and_pools_samples(tmp_path, cache):
    """The variant's throughput.toml replaces the framework's benchmark; its runs' samples pool into one
    median and range, and the benchmark's own words say what was measured."""
    root = make_toy_root(tmp_path / "specs")
    _with_throughput(root, "python -c 'print(1/0)'")
    line = {"tokens_per_s": 300, "tokens_per_s_samples": [290, 300, 330], "model_type": "toy", "layout": "ep=2"}
    command = f"python -c 'import json; print(json.dumps({json.dumps(line)}))'"
    _variant_throughput(root, f"command = {json.dumps(command)}\nrepeats = 2\n")
    row = _run(root, tmp_path)
    assert row["status"] == "resolved" and row["error"] is None and row["notes"] == []
    m = row["metrics"]
    assert m["throughput_samples"] == [290.0, 300.0, 330.0] * 2 and m["throughput_runs"] == 2
    assert m["throughput_tokens_per_s"] == 300.0 and m["throughput_spread"] == [290.0, 330.0]
    assert m["throughput_measured"] == "toy · ep=2"


def test_a_second_result_line_is_no_measurement(tmp_path, cache):
    """The benchmark runs the agent's code, which could print its own result line (at exit, say): two lines, one
    the benchmark's and one the agent's, are no measurement, whichever comes last."""
    assert throughput.parse_run('noise\n{"tokens_per_s": 5}\n{"other": 1}\n') == {"tokens_per_s": 5}
    assert throughput.parse_run('{"tokens_per_s": 5}\n{"tokens_per_s": 1e12}\n') is None
    root = make_toy_root(tmp_path / "specs")
    forged = "atexit.register(lambda: print(json.dumps(dict(tokens_per_s=1e12))))"
    _with_throughput(root, f"python -c 'import atexit, json; {forged}; print(json.dumps(dict(tokens_per_s=300)))'")
    row = _run(root, tmp_path)
    assert row["status"] == "resolved" and row["metrics"]["throughput_tokens_per_s"] is None
    assert "without exactly one JSON line holding tokens_per_s" in row["notes"][0]


def test_restore_from_original_puts_the_task_input_back(tmp_path):
    original, tree = tmp_path / "original", tmp_path / "tree"
    (original / "examples").mkdir(parents=True)
    (original / "examples" / "model.json").write_text("original")
    (tree / "examples").mkdir(parents=True)
    (tree / "examples" / "model.json").write_text("the agent's smaller model")
    spec = ThroughputSpec(command="true", restore_from_original=["examples/model.json"])
    throughput.restore_originals(spec, original, tree)
    assert (tree / "examples" / "model.json").read_text() == "original"
    with pytest.raises(FileNotFoundError, match="names 'nope.json', which the original source does not have"):
        throughput.restore_originals(
            ThroughputSpec(command="true", restore_from_original=["nope.json"]), original, tree
        )


def test_throughput_failure_is_a_note_not_a_failed_trial(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs")
    _with_throughput(root, "python -m no_such_benchmark_module")
    row = _run(root, tmp_path)
    assert row["status"] == "resolved" and row["metrics"]["throughput_tokens_per_s"] is None
    assert row["error"] is None
    [note] = row["notes"]
    assert (
        note.startswith("throughput not measured: run 1 of")
        and "without exactly one JSON line holding tokens_per_s" in note
    )


def test_no_throughput_phase_where_the_run_or_the_task_opts_out(tmp_path, cache):
    """--no-throughput, or task.toml measure_throughput = false: a choice made before the run, so no
    throughput phase and no note (slurm.trial_resources budgets no time for it either)."""
    root = make_toy_root(tmp_path / "specs")
    _with_throughput(root, "python -c 'print(1/0)'")  # a note, were it run
    row = _run(root, tmp_path / "no-throughput", measure_throughput=False)
    assert row["status"] == "resolved" and row["error"] is None and row["notes"] == []
    assert list(row["phase_seconds"]) == ["setup", "agent", "grade"]

    task = root / "tasks" / "arith" / "mul" / "task.toml"
    task.write_text(task.read_text().replace("measure_throughput = true", "measure_throughput = false"))
    row = _run(root, tmp_path / "task-opts-out")
    assert row["status"] == "resolved" and row["error"] is None and row["notes"] == []
    assert list(row["phase_seconds"]) == ["setup", "agent", "grade"]
    assert row["metrics"]["throughput_tokens_per_s"] is None


def test_a_slurm_job_budgets_throughput_time_exactly_when_the_trial_has_the_phase(tmp_path):
    root = make_toy_root(tmp_path / "specs")
    _with_throughput(root, "true")
    framework = load_framework("toy", root)
    task = root / "tasks" / "arith" / "mul" / "task.toml"
    minutes = {}
    for task_says in (True, False):
        if not task_says:
            task.write_text(task.read_text().replace("measure_throughput = true", "measure_throughput = false"))
        for run_says in (True, False):
            config = TrialConfig(
                run_id="t",
                variant=load_task("arith/mul", root).variant("toy"),
                framework=framework,
                agent=make_spec("oracle"),
                index=0,
                results_root=tmp_path,
                measure_throughput=run_says,
            )
            assert config.throughput_wanted == (task_says and run_says)
            minutes[task_says, run_says] = trial_resources(config)["time"]
    assert minutes[True, True] > minutes[True, False] == minutes[False, True] == minutes[False, False]


def test_task_whose_benchmark_would_measure_something_else_gets_a_note(tmp_path, cache):
    """No throughput.toml where the framework's generic benchmark may not stand in."""
    root = make_toy_root(tmp_path / "specs")
    _with_throughput(root, "python -c 'print(1/0)'")
    task = root / "tasks" / "arith" / "mul" / "task.toml"
    task.write_text(
        task.read_text().replace(
            "measure_throughput = true", "measure_throughput = true\nframework_throughput_fallback = false"
        )
    )
    row = _run(root, tmp_path)
    assert row["status"] == "resolved" and row["error"] is None
    assert (
        row["metrics"]["throughput_tokens_per_s"] is None and "has no frameworks/toy/throughput.toml" in row["notes"][0]
    )


def test_throughput_not_run_for_unresolved(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs")
    _with_throughput(root, "python -c 'print(1/0)'")
    row = _run(root, tmp_path, agent="nop")
    assert row["status"] == "unresolved" and row["error"] is None and row["notes"] == []
    assert list(row["phase_seconds"]) == ["setup", "agent", "grade"], "no throughput phase after an unresolved grade"


def test_failing_prepare_is_a_setup_error(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs")
    (root / "tasks" / "arith" / "mul" / "frameworks" / "toy" / "prepare.py").write_text(
        "raise SystemExit('no model here')\n"
    )
    row = _run(root, tmp_path)
    assert row["status"] == "error" and row["error"]["phase"] == "setup"
    assert "prepare.py failed (exit 1)" in row["error"]["message"] and "no model here" in row["error"]["message"]
    assert row["exit_status"] is None and row["finished_at"] is not None


def test_a_misspelt_throughput_toml_names_the_file_and_field(tmp_path):
    root = make_toy_root(tmp_path / "specs")
    _variant_throughput(root, 'command = "true"\nrepeat = 3\n')
    task = load_task("arith/mul", root)
    with pytest.raises(SpecError, match=r"tasks/arith/mul/frameworks/toy/throughput.toml: unknown field 'repeat'"):
        task.variant("toy")
    _variant_throughput(root, 'command = "true"\n')
    with pytest.raises(SpecError, match="says measure_throughput = false; remove throughput.toml"):
        task.variant("toy")


def test_real_tasks_measure_what_the_agent_changed():
    """add-new-model benchmarks the added model (its task config), enable-ep runs with ep = 2; tasks no
    benchmark shows measure nothing; every restored file exists in the framework's source."""
    from bench.specs import list_tasks, load_framework

    framework = load_framework("reference")
    source = framework.bundled_path()
    for task_id in list_tasks():
        task = load_task(task_id)
        if "reference" not in task.frameworks():
            continue  # another framework's task (tests/test_torchtitan_tasks.py)
        spec = task.variant("reference").throughput
        if not task.spec.measure_throughput:
            assert spec is None, task_id
            continue
        assert spec is not None, task_id  # its own benchmark (a fallback is for frameworks without one)
        assert spec.repeats >= 3 and "--repeats" in spec.command, task_id
        for rel in spec.restore_from_original:
            assert (source / rel).is_file(), (task_id, rel)
        if task.family == "add-new-model":
            model = task_id.split("/")[1]
            config = f"examples/models/{model}_tiny.json"
            assert f"--model-config {config}" in spec.command and config in spec.restore_from_original
            assert json.loads((source / config).read_text())["model_type"] == model
        if task_id == "enable-ep":
            assert "--nproc_per_node 2" in spec.command and "--parallel.ep=2" in spec.command
            assert "--parallel.ep=2" in spec.gpu_command and spec.gpu_command_gpus == 2


def test_a_sandbox_that_fails_to_close_is_logged_in_the_trial_not_dropped(tmp_path, cache, monkeypatch):
    from bench import trial as trial_module

    opened = []

    def failing_close(*args, **kwargs):
        sandbox = trial_module.open_sandbox.__wrapped__(*args, **kwargs)
        real_close = sandbox.close

        def close():
            real_close()
            if len(opened) == 1:  # the agent's sandbox; grading's closes normally
                raise RuntimeError("the engine lost the container")

        sandbox.close = close
        opened.append(sandbox)
        return sandbox

    failing_close.__wrapped__ = trial_module.open_sandbox
    monkeypatch.setattr(trial_module, "open_sandbox", failing_close)
    row = _run(make_toy_root(tmp_path / "specs"), tmp_path)
    assert row["status"] == "resolved" and len(opened) == 2
    log = (tmp_path / "results" / "t" / "arith__mul" / "toy" / "oracle" / "0" / "agent.log").read_text()
    assert "closing the sandbox failed: RuntimeError: the engine lost the container" in log
