"""The run's progress display: which trial of how many, its phase, and how long it has taken."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from bench.run import Progress


def _trial(task: str, index: int) -> SimpleNamespace:
    config = SimpleNamespace(
        variant=SimpleNamespace(task=SimpleNamespace(id=task)),
        framework=SimpleNamespace(name="toy"),
        agent_name="nop",
        index=index,
    )
    return SimpleNamespace(config=config)


def test_plain_output_has_one_line_per_phase_with_index_and_elapsed(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("bench.run.time.monotonic", lambda: now[0])
    out = io.StringIO()
    trials = [_trial("arith/mul", 0), _trial("arith/mul", 1)]
    with Progress(Console(file=out, width=160, soft_wrap=True), trials) as progress:
        second = trials[1]
        for at, event in [
            (100.0, {"kind": "phase", "phase": "setup"}),
            (107.0, {"kind": "phase", "phase": "agent"}),
            (130.0, {"kind": "phase", "phase": "grade"}),
            (200.0, {"kind": "finished", "status": "unresolved", "error": None}),
        ]:
            now[0] = at
            progress.event(second, event)
    assert out.getvalue().splitlines() == [
        "[2/2] arith/mul / toy / nop #1: setup (at 0s)",
        "[2/2] arith/mul / toy / nop #1: agent (at 7s)",
        "[2/2] arith/mul / toy / nop #1: grade (at 30s)",
        "[2/2] arith/mul / toy / nop #1: unresolved after 1m40s",
    ]


def test_live_table_shows_index_phase_and_elapsed():
    out = io.StringIO()
    trials = [_trial("smoke", 0), _trial("smoke", 1)]
    console = Console(file=out, width=120, force_terminal=True)
    progress = Progress(console, trials)
    assert progress.live is not None
    progress.event(trials[0], {"kind": "phase", "phase": "grade"})
    console.print(progress._table())
    text = out.getvalue()
    for cell in ("#", "phase", "elapsed", "1/2", "2/2", "grade", "queued", "0s"):
        assert cell in text, cell
