"""The regression gate on fixture runs: a known regression, a known non-regression, bad input."""

from __future__ import annotations

from pathlib import Path

from bench.report_cli import cmd_compare

FIXTURES = Path(__file__).parent / "fixtures" / "runs"


def gate(capsys, *args: str) -> tuple[int, str, str]:
    code = cmd_compare([*args, "--results-dir", str(FIXTURES)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_row(text: str, metric: str) -> str:
    rows = [
        line for line in text.splitlines() if line.startswith("| add-new-model/mixtral") and f"| {metric} |" in line
    ]
    assert len(rows) == 1, text
    return rows[0]


def test_doubled_turns_is_a_regression(capsys):
    code, out, _ = gate(capsys, "fx-gate-main", "fx-gate-pr-slow")
    assert code == 1
    assert "**1 regression**" in out
    turns = table_row(out, "turns")
    assert "| 11 | 21 |" in turns and "+91%" in turns and "**REGRESSION**" in turns
    assert table_row(out, "active_gpu_s").endswith("| ok |")
    assert "| 3/3 | 3/3 |" in table_row(out, "success")


def test_noise_is_not_a_regression(capsys, tmp_path):
    out_file = tmp_path / "gate.md"
    code, out, _ = gate(capsys, "fx-gate-main", "fx-gate-pr-same", "--out", str(out_file))
    assert code == 0
    assert "**No regression**" in out
    assert "REGRESSION" not in out
    assert out_file.read_text().strip() == out.strip()


def test_lost_successes_are_a_regression(capsys):
    code, out, _ = gate(capsys, "fx-gate-main", "fx-gate-pr-broken")
    assert code == 1
    success = table_row(out, "success")
    assert "| 3/3 | 0/3 |" in success and "Fisher p=0.05" in success and "**REGRESSION**" in success


def test_threshold_and_confidence_decide(capsys):
    assert gate(capsys, "fx-gate-main", "fx-gate-pr-slow", "--threshold-rel", "1.0")[0] == 0  # +91% < +100%
    assert gate(capsys, "fx-gate-main", "fx-gate-pr-broken", "--confidence", "0.99")[0] == 0  # p=0.05 > 0.01
    assert gate(capsys, "fx-gate-main", "fx-gate-pr-slow", "--metrics", "success")[0] == 0


def test_bad_input_exits_2(capsys):
    code, _, err = gate(capsys, "fx-gate-main", "fx-gate-pr-slow", "--metrics", "turns,speed")
    assert code == 2 and "unknown metric 'speed'" in err
    code, _, err = gate(capsys, "fx-report", "fx-gate-main")
    assert code == 2 and "the candidate run lacks" in err and "qa/rope · megatron · builtin · test-model" in err
    code, _, err = gate(capsys, "fx-gate-main", "fx-gate-pr-slow", "--threshold-rel", "-0.1")
    assert code == 2 and "must be >= 0" in err
    code, _, err = gate(capsys, "fx-gate-main", "nope")
    assert code == 2 and "run 'nope' not found" in err
