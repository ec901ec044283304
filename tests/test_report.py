"""Reports built from fixture runs whose medians, success rates and ratios were worked out by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import report, stats
from bench.report_cli import cmd_report

FIXTURES = Path(__file__).parent / "fixtures" / "runs"


def row(summary: dict, level: str, where: str, framework: str, agent: str = "builtin") -> dict:
    key = report.LEVEL_KEYS[level]
    matches = [r for r in summary[level] if r[key] == where and r["framework"] == framework and r["agent"] == agent]
    assert len(matches) == 1, f"expected one {level} row for {where}/{framework}/{agent}"
    return matches[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert cmd_report(["fx-report", "--results-dir", str(FIXTURES), "--out", str(out)]) == 0
    return out


def test_stats_known_values():
    assert stats.nearest_rank([5, 1, 3, 2]) == 2
    assert stats.nearest_rank([5, 1, 3]) == 3
    assert stats.median([5, 1, 3, 2]) == 2.5
    assert stats.pass_at_k(4, 3, 1) == pytest.approx(0.75)
    assert stats.pass_at_k(3, 1, 2) == pytest.approx(2 / 3)
    assert stats.pass_at_k(5, 3, 5) == 1.0
    assert stats.pass_at_k(3, 0, 3) == 0.0
    assert stats.fisher_exact_less(3, 3, 0, 3) == pytest.approx(1 / 20)
    assert stats.fisher_exact_less(3, 3, 3, 3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k=4 must be between 1 and attempts n=3"):
        stats.pass_at_k(3, 1, 4)


def test_bootstrap_is_reproducible_and_brackets_the_median():
    values = [10, 14, 12, 30, 11]
    lo, hi = stats.bootstrap_ci(values)
    assert (lo, hi) == stats.bootstrap_ci(values)
    assert 10 <= lo <= 12 <= hi <= 30
    narrow = stats.bootstrap_ci(values, confidence=0.5)
    assert lo <= narrow[0] <= narrow[1] <= hi
    ratio, rlo, rhi = stats.ratio_of_medians([30, 34, 26], [10, 14, 12])
    assert ratio == pytest.approx(2.5)
    assert rlo < 2.5 < rhi
    assert rlo >= 26 / 14 and rhi <= 34 / 10  # a ratio of resampled medians cannot leave these bounds


def test_outcomes_count_every_trial(built):
    summary = json.loads((built / "summary.json").read_text())
    megatron = row(summary, "task", "add-new-model/mixtral", "megatron")
    assert (megatron["n_trials"], megatron["n_resolved"], megatron["n_error"]) == (4, 3, 1)
    assert megatron["success_rate"] == pytest.approx(0.75)  # the setup error counts as a failure
    assert megatron["pass_at_1"] == pytest.approx(0.75)
    assert (megatron["k"], megatron["pass_at_k"]) == (4, 1.0)
    qa = row(summary, "task", "qa/rope", "megatron")
    assert (qa["n_trials"], qa["n_incomplete"], qa["n_attempts"]) == (4, 1, 3)
    assert qa["success_rate"] == 1.0
    qwen = row(summary, "task", "add-new-model/qwen3", "megatron")
    assert qwen["success_rate"] == 0.0 and qwen["pass_at_k"] == 0.0


def test_effort_medians_and_cis(built):
    summary = json.loads((built / "summary.json").read_text())
    ref = row(summary, "task", "add-new-model/mixtral", "reference")["metrics"]
    assert ref["agent_turns"]["median"] == 12  # 10, 14, 12
    assert 10 <= ref["agent_turns"]["ci_lo"] <= 12 <= ref["agent_turns"]["ci_hi"] <= 14
    assert ref["active_gpu_s"]["median"] == 110  # 100, 120, 110
    assert ref["session_duration_s"]["median"] == 700
    meg = row(summary, "task", "add-new-model/mixtral", "megatron")["metrics"]
    assert meg["agent_turns"]["median"] == 30 and meg["agent_turns"]["n"] == 3  # setup error left out
    # family level pools both tasks: reference 10,14,12,20 -> 13; megatron 30,34,26,40 -> 32
    assert row(summary, "family", "add-new-model", "reference")["metrics"]["agent_turns"]["median"] == 13
    assert row(summary, "family", "add-new-model", "megatron")["metrics"]["agent_turns"]["median"] == 32
    qa = row(summary, "task", "qa/rope", "reference")["metrics"]
    assert qa["agent_turns"]["median"] == 6
    assert qa["active_gpu_s"] == {"median": None, "ci_lo": None, "ci_hi": None, "n": 0, "unavailable": "n/a (no GPU)"}
    assert qa["per_turn_context_p50"]["median"] == 10000
    oracle = row(summary, "task", "qa/rope", "reference", agent="oracle")["metrics"]
    assert oracle["cost_usd"]["unavailable"] == "n/a (not recorded)"


def test_ratio_to_reference(built):
    summary = json.loads((built / "summary.json").read_text())
    meg = row(summary, "task", "add-new-model/mixtral", "megatron")["vs_reference"]
    assert meg["agent_turns"]["ratio"] == pytest.approx(30 / 12)
    assert meg["agent_turns"]["ci_lo"] < 30 / 12 < meg["agent_turns"]["ci_hi"]
    assert meg["throughput_tokens_per_s"]["ratio"] == pytest.approx(920 / 1050)
    assert row(summary, "task", "add-new-model/mixtral", "reference")["vs_reference"] == {}
    md = (built / "report.md").read_text()
    assert "| add-new-model/mixtral | megatron | builtin/test-model | +150% [" in md
    assert "n/a (no GPU)" in md


def test_markdown_tables_are_well_formed(built):
    lines = (built / "report.md").read_text().splitlines()
    separators = [i for i, line in enumerate(lines) if line.startswith("|---")]
    # by category: outcomes, effort, change; Q&A: the cross-framework table, then outcomes, effort, change per
    # task; build: outcomes, effort, change per family and per task, then throughput per task
    assert len(separators) == 3 + 4 + 7
    for i in separators:
        width = lines[i - 1].count("|")
        rows = []
        for line in lines[i + 1 :]:
            if not line.startswith("|"):
                break
            rows.append(line)
        assert rows, lines[i - 1]
        assert lines[i].count("|") == width and all(line.count("|") == width for line in rows), lines[i - 1]


def test_report_is_reproducible(built, tmp_path):
    assert cmd_report(["fx-report", "--results-dir", str(FIXTURES), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "summary.json").read_bytes() == (built / "summary.json").read_bytes()
    assert (tmp_path / "summary.csv").read_bytes() == (built / "summary.csv").read_bytes()
    csv_rows = (built / "summary.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 1 + 6 + 6 + 9  # header, category rows, family rows, task rows


def test_trajectory_page_escapes_and_truncates(built):
    pages = sorted((built / "trajectories").glob("*.html"))
    assert len(pages) == 19  # one per trial, errored and interrupted included
    page = (built / "trajectories" / "fx-report__add-new-model__mixtral__reference__builtin__0.html").read_text()
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    assert "141 lines omitted" in page  # 201 output lines, 40 head and 20 tail shown
    assert '<span class="add">+def route(x, k=2):</span>' in page  # str_replace shown as a diff
    assert "+++ b/reftrain/router.py" in page and '<span class="add">+TOP_K = 2</span>' in page  # create
    assert "$ grep -rn &#x27;class&#x27; reftrain" in page  # bash shown as a command
    assert "cost $0.0123" in page and "context 2200" in page
    assert "tests/test_model.py::test_forward" in page
    html = (built / "report.html").read_text()
    assert html.count('class="trajectory"') == 19
    error_page = (built / "trajectories" / "fx-report__add-new-model__mixtral__megatron__builtin__3.html").read_text()
    assert "docker build failed: no space left on device" in error_page
    assert "No trajectory was recorded" in error_page


def test_missing_result_is_shown_not_dropped(tmp_path):
    run = tmp_path / "fx-report"
    shutil.copytree(FIXTURES / "fx-report", run)
    (run / "qa__rope" / "reference" / "builtin" / "2" / "result.json").unlink()
    out = tmp_path / "out"
    assert cmd_report([str(run), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    qa = row(summary, "task", "qa/rope", "reference")
    assert (qa["n_trials"], qa["n_incomplete"], qa["n_attempts"]) == (3, 1, 2)


def test_bad_input_gives_one_clear_error(tmp_path, capsys):
    assert cmd_report(["no-such-run", "--results-dir", str(FIXTURES)]) == 2
    assert "run 'no-such-run' not found" in capsys.readouterr().err
    run = tmp_path / "old"
    shutil.copytree(FIXTURES / "fx-gate-main", run)
    result = run / "add-new-model__mixtral" / "reference" / "builtin" / "0" / "result.json"
    result.write_text(result.read_text().replace('"schema_version": 1', '"schema_version": 7'))
    assert cmd_report([str(run), "--out", str(tmp_path / "out")]) == 2
    assert "schema_version 7; this report reads version 1" in capsys.readouterr().err


def _edit_result(run: Path, rel: str, **changes) -> None:
    """Rewrites one fixture trial: top-level fields, and `metrics` merged into its metrics."""
    path = run / rel / "result.json"
    data = json.loads(path.read_text())
    data["metrics"].update(changes.pop("metrics", {}))
    data.update(changes)
    path.write_text(json.dumps(data))


def test_one_trial_has_no_confidence_interval(built):
    summary = json.loads((built / "summary.json").read_text())
    qwen3 = row(summary, "task", "add-new-model/qwen3", "reference")["metrics"]["agent_turns"]
    assert qwen3["n"] == 1 and qwen3["ci_lo"] is None and qwen3["ci_hi"] is None
    md = (built / "report.md").read_text()
    assert "| add-new-model/qwen3 | reference | builtin/test-model | 20 turns (n=1) |" in md
    assert "[20, 20]" not in md and "20 [20" not in md
    assert "| add-new-model/qwen3 | megatron | builtin/test-model | +100% (n=1) |" in md  # 40 vs 20 turns
    assert "[+100%, +100%]" not in md
    assert "Post-task throughput (tokens/s)" in md and "1020 tokens/s (n=1)" in md
    # results with one number per trial state no spread, so nothing is said about differences between trials
    line = "| add-new-model/{} | reference | builtin/test-model | - | {} tokens/s | {} |"
    assert line.format("qwen3", 1020, "no spread (1 sample) | one measured trial") in md
    assert line.format("mixtral", 1050, "1000–1100 (3 samples) | no spread recorded") in md


def test_pass_at_k_only_over_one_task(built):
    summary = json.loads((built / "summary.json").read_text())
    family = row(summary, "family", "add-new-model", "reference")
    assert family["n_tasks"] == 2 and family["pass_at_k"] is None and family["k"] is None
    task = row(summary, "task", "add-new-model/mixtral", "reference")
    assert task["pass_at_k"] == 1.0 and task["k"] == 3
    md = (built / "report.md").read_text()
    assert "| add-new-model | reference | builtin/test-model | 4 | 3 | 1 | 0 | 0 | 75% | 75% | n/a (2 tasks) |" in md


def test_throughput_differences_inside_the_spread_are_noise(tmp_path):
    """Samples whose ranges overlap make a 'within noise' change; disjoint ranges keep the ratio."""
    run = tmp_path / "fx-report"
    shutil.copytree(FIXTURES / "fx-report", run)
    for i, rate in enumerate((1000.0, 1050.0, 1100.0)):
        _edit_result(
            run,
            f"add-new-model__mixtral/reference/builtin/{i}",
            metrics={
                "throughput_samples": [rate - 200, rate, rate + 200],
                "throughput_spread": [rate - 200, rate + 200],
                "throughput_measured": "mixtral · pp=1 dp=1 ep=1 · cpu",
            },
        )
    for i, rate in enumerate((900.0, 950.0, 920.0)):
        _edit_result(
            run,
            f"add-new-model__mixtral/megatron/builtin/{i}",
            metrics={"throughput_samples": [rate - 100, rate, rate + 100]},
        )
    out = tmp_path / "out"
    assert cmd_report([str(run), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    mixtral = row(summary, "task", "add-new-model/mixtral", "megatron")
    assert mixtral["vs_reference"]["throughput_tokens_per_s"]["beyond_noise"] is False
    assert mixtral["throughput_trials_within_noise"] is True
    cell = row(summary, "task", "add-new-model/mixtral", "reference")["metrics"]["throughput_tokens_per_s"]
    assert (cell["spread_lo"], cell["spread_hi"], cell["n_samples"]) == (800.0, 1300.0, 9)
    md = (out / "report.md").read_text()
    assert "within noise (−12%)" in md
    assert (
        "| add-new-model/mixtral | reference | builtin/test-model | mixtral · pp=1 dp=1 ep=1 · cpu "
        "| 1050 tokens/s | 800–1300 (9 samples) | within noise |"
    ) in md
    # narrower samples that no longer overlap: the same medians now differ beyond noise
    for i, rate in enumerate((1000.0, 1050.0, 1100.0)):
        _edit_result(
            run,
            f"add-new-model__mixtral/reference/builtin/{i}",
            metrics={"throughput_samples": [rate - 5, rate, rate + 5]},
        )
    for i, rate in enumerate((900.0, 950.0, 920.0)):
        _edit_result(
            run,
            f"add-new-model__mixtral/megatron/builtin/{i}",
            metrics={"throughput_samples": [rate - 5, rate, rate + 5]},
        )
    assert cmd_report([str(run), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (
        row(summary, "task", "add-new-model/mixtral", "megatron")["vs_reference"]["throughput_tokens_per_s"][
            "beyond_noise"
        ]
        is True
    )
    assert row(summary, "task", "add-new-model/mixtral", "megatron")["throughput_trials_within_noise"] is False
    md = (out / "report.md").read_text()
    assert "within noise (" not in md and "| differ beyond noise |" in md


def test_throughput_is_compared_between_tasks_only_beyond_noise(tmp_path):
    """Each task benchmarks its own model: the family row pools none, and two tasks' numbers are called
    different only when their sample ranges are apart."""
    run = tmp_path / "fx-report"
    shutil.copytree(FIXTURES / "fx-report", run)
    for i, rate in enumerate((1000.0, 1050.0, 1100.0)):
        _edit_result(
            run,
            f"add-new-model__mixtral/reference/builtin/{i}",
            metrics={"throughput_samples": [rate - 400, rate, rate + 400]},
        )
    _edit_result(
        run, "add-new-model__qwen3/reference/builtin/0", metrics={"throughput_samples": [1000.0, 1020.0, 1040.0]}
    )
    _edit_result(
        run,
        "add-new-model__qwen3/megatron/builtin/0",
        metrics={"throughput_tokens_per_s": 210.0, "throughput_samples": [200.0, 210.0, 220.0]},
    )
    for i, rate in enumerate((900.0, 950.0, 920.0)):
        _edit_result(
            run,
            f"add-new-model__mixtral/megatron/builtin/{i}",
            metrics={"throughput_samples": [rate - 5, rate, rate + 5]},
        )
    out = tmp_path / "out"
    assert cmd_report([str(run), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    family = row(summary, "family", "add-new-model", "reference")["metrics"]["throughput_tokens_per_s"]
    assert family["median"] is None and family["unavailable"] == "n/a (per task only)"
    assert "throughput_tokens_per_s" not in row(summary, "family", "add-new-model", "megatron")["vs_reference"]
    assert row(summary, "task", "add-new-model/mixtral", "reference")["throughput_vs_tasks"] == [
        "vs add-new-model/qwen3: within noise"
    ]
    assert row(summary, "task", "add-new-model/mixtral", "megatron")["throughput_vs_tasks"] == [
        "vs add-new-model/qwen3: 4.4× (beyond noise)"
    ]


def test_old_throughput_error_reads_as_a_note(tmp_path):
    run = tmp_path / "fx-report"
    shutil.copytree(FIXTURES / "fx-report", run)
    note = "throughput not measured: `bench` exited 1 without a JSON line holding tokens_per_s (see agent.log)"
    _edit_result(
        run,
        "add-new-model__qwen3/reference/builtin/0",
        error={"phase": "throughput", "message": note},
        metrics={"throughput_tokens_per_s": None},
    )
    _edit_result(
        run, "add-new-model__qwen3/megatron/builtin/0", notes=[note], metrics={"throughput_tokens_per_s": None}
    )
    out = tmp_path / "out"
    assert cmd_report([str(run), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for framework in ("reference", "megatron"):
        qwen3 = row(summary, "task", "add-new-model/qwen3", framework)
        assert qwen3["n_error"] == 0 and qwen3["throughput_notes"] == [note]
        assert qwen3["metrics"]["throughput_tokens_per_s"]["unavailable"] == "n/a (not measured, see notes)"
    html = (out / "report.html").read_text()
    assert html.count(f'<span class="meta">{note}</span>') == 2  # in the trials table, as notes
    assert '<span class="error">throughput' not in html


def test_charts_without_data_become_sentences(tmp_path):
    """An oracle-only run: zero tokens and turns, no throughput; no empty axes, a sentence each."""
    run = tmp_path / "oracle-only"
    shutil.copytree(
        FIXTURES / "fx-report" / "add-new-model__mixtral" / "reference" / "oracle",
        run / "add-new-model__mixtral" / "reference" / "oracle",
    )
    out = tmp_path / "out"
    assert cmd_report([str(run), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "No chart: every trial recorded 0 tokens." in html and "No chart: every trial recorded 0 turns." in html
    assert "No chart: no task has both a measured post-task throughput and agent turns above zero." in html
    assert "<img" not in html


def test_gate_calls_a_throughput_change_inside_the_spread_noise():
    from bench.compare import compare

    def trials(samples: list[list[float]]) -> list[dict]:
        return [
            {
                "task": "add-new-model/mixtral",
                "framework": "reference",
                "agent": "oracle",
                "model": None,
                "status": "resolved",
                "error": None,
                "metrics": {"throughput_tokens_per_s": sorted(s)[len(s) // 2], "throughput_samples": s},
            }
            for s in samples
        ]

    base = trials([[1000, 1200, 1400, 900, 1500]] * 3)
    noisy = trials([[700, 800, 1000, 950, 1100]] * 3)  # −25% median, ranges overlap
    [row] = compare(base, noisy, metrics=["throughput_tokens_per_s"])
    assert row.verdict == "ok (within noise)" and row.change.startswith("−")
    slower = trials([[500, 520, 540, 510, 530]] * 3)  # ranges apart: a real regression
    [row] = compare(base, slower, metrics=["throughput_tokens_per_s"])
    assert row.verdict == "REGRESSION"


def test_report_markup_is_not_escaped_twice(built):
    html = (built / "report.html").read_text()
    assert "&lt;br&gt;" not in html and "&lt;span" not in html
    assert '<span class="meta">+150% [' in html and "vs ref</span>" in html


def test_numbers_never_print_in_exponent_form():
    from bench.report import format_number

    assert format_number(12694.6, "tokens/s", 7989.4) == "12695"
    assert format_number(12694.6, "tokens/s") == "12.7K"
    assert format_number(417.54, "tokens/s") == "417.5"


def test_report_and_compare_name_only_metrics_a_result_has():
    """The report's columns and compare's aliases are keys of result.json's metrics (bench.metrics.Metrics),
    so a renamed field fails here, not as an empty column."""
    from dataclasses import fields

    from bench.compare import ALIASES
    from bench.metrics import Metrics

    names = {f.name for f in fields(Metrics)}
    assert set(report.METRICS) <= names and report.GPU_METRICS <= names and report.HIGHER_IS_BETTER <= names
    assert {key for key in ALIASES.values() if key != "success"} <= names


# ---- categories (ATE-Bench's Q&A / operate / build) ----


def test_task_families_map_to_ate_bench_categories():
    assert [report.task_category(f) for f in ("qa", "operate", "add-new-model", "fix-gradient-bug", "enable-ep")] == [
        "qa",
        "operate",
        "build",
        "build",
        "build",
    ]


def _with_operate_trial(tmp_path: Path) -> Path:
    """The fixture run plus one operate trial (a copy of a Q&A trial, renamed)."""
    run = tmp_path / "fx-report"
    shutil.copytree(FIXTURES / "fx-report", run)
    shutil.copytree(
        run / "qa__rope" / "reference" / "builtin" / "0", run / "operate__routing-trace" / "reference" / "builtin" / "0"
    )
    _edit_result(run, "operate__routing-trace/reference/builtin/0", task="operate/routing-trace", task_family="operate")
    return run


def test_results_are_grouped_by_category_in_ate_bench_order(tmp_path):
    run = _with_operate_trial(tmp_path)
    out = tmp_path / "out"
    assert cmd_report([str(run), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["category"], r["framework"], r["agent"]) for r in summary["category"]] == [
        ("qa", "megatron", "builtin"),
        ("qa", "reference", "builtin"),
        ("qa", "reference", "oracle"),
        ("operate", "reference", "builtin"),
        ("build", "megatron", "builtin"),
        ("build", "reference", "builtin"),
        ("build", "reference", "oracle"),
    ]
    qa = row(summary, "category", "qa", "megatron")
    assert (qa["n_trials"], qa["n_resolved"], qa["n_incomplete"]) == (4, 3, 1)
    assert qa["vs_reference"]["per_turn_context_p50"]["ratio"] == pytest.approx(3.0)  # 30K vs 10K
    assert {r["category"] for r in summary["task"] if r["task"].startswith("add-new-model/")} == {"build"}
    md = (out / "report.md").read_text()
    sections = [line for line in md.splitlines() if line.startswith("## ")]
    assert sections == ["## By category", "## Q&A", "## Operate", "## Build"]
    assert "| Q&A | megatron | builtin/test-model | 4 | 3 | 0 | 0 | 1 | 100% |" in md
    # the overview spans categories: a Q&A row leaves out what Q&A does not report, a build row keeps it
    assert "| Q&A | reference | builtin/test-model | 6 turns [5, 7] | not reported for Q&A |" in md
    assert "| Build | reference | builtin/test-model | 13 turns [10, 20] | 13.3 min [" in md
    build = md[md.index("## Build") :]
    assert "#### Outcomes (task family)" in build and "| add-new-model | reference |" in build
    assert "(task family)" not in md[md.index("## Q&A") : md.index("## Build")]  # one family: the category
    html = (out / "report.html").read_text()
    order = [html.index(h) for h in ("<h2>By category</h2>", ">Q&amp;A</h2>", ">Operate</h2>", ">Build</h2>")]
    assert order == sorted(order)


def test_qa_tables_lead_with_per_turn_context_and_compare_frameworks(built):
    md = (built / "report.md").read_text()
    qa = md[md.index("## Q&A") : md.index("## Build")]
    assert "| Topic | Agent / model | reference | megatron |" in qa  # the reference framework first
    assert (
        "| qa/rope | builtin/test-model | 10.0K tokens per turn · 6 turns · 3/3 resolved "
        "| 30.0K tokens per turn · 12 turns · 3/3 resolved |"
    ) in qa
    assert "| all Q&A topics | builtin/test-model | 10.0K tokens per turn ·" in qa
    assert "| qa/rope | oracle/- | context n/a (not recorded) · 0 turns · 1/1 resolved | not run |" in qa
    effort = next(line for line in qa.splitlines() if line.startswith("| Task |") and "Per-turn" in line)
    assert effort.startswith("| Task | Framework | Agent / model | Per-turn context (tokens) | Agent turns (turns) |")
    assert "Session duration" not in qa and "Active GPU time" not in qa and "Post-task throughput" not in qa
    assert "| qa/rope | megatron | builtin/test-model | +200% [" in qa  # per-turn context: 30K vs 10K
    throughput = md[md.index("#### Post-task throughput") :]
    assert "qa/rope" not in throughput
    html = (built / "report.html").read_text()
    assert '<table class="qa-matrix">' in html and '<b class="context">10.0K tokens per turn</b>' in html
