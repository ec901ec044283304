"""Answer grading (bench/answers.py): citations, symbol regions, facts, values, absent claims, the read-only rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_toy_root

from bench import answers, specs
from bench.agents import AgentSpec, make_spec
from bench.answers import Citation
from bench.run import RunConfig, execute, make_plan
from bench.types import AgentOutcome

MODULE = '''"""A module the keys point into."""

EPS = 1e-6


class Norm:
    eps: float = 1e-5

    def __init__(self, eps=EPS):
        self.eps = eps

    @staticmethod
    def forward(x):
        return x


def clip(grads, max_norm):
    total = sum(g * g for g in grads)
    return total
'''

KEY = """
[[facts]]
id = "eps"
claim = "Norm takes its eps from EPS."
regions = [{ path = "pkg/norm.py", symbol = "Norm.__init__" }, { path = "pkg/norm.py", symbol = "EPS" }]
values = [1e-6, "EPS"]

[[facts]]
id = "forward"
claim = "Norm.forward returns its input."
regions = [{ path = "pkg/norm.py", symbol = "Norm.forward" }]
"""


def make_task(root: Path, key: str = KEY, extra: dict[str, str] | None = None) -> specs.TaskVariant:
    task = root / "tasks" / "qa" / "topic"
    (task / "frameworks" / "fw").mkdir(parents=True)
    (task / "task.toml").write_text('[grading]\nkind = "answer"\n')
    (task / "instruction.md").write_text("Where is eps set in {framework}?\n")
    (task / "frameworks" / "fw" / "answer_key.toml").write_text(key)
    for rel, text in (extra or {}).items():
        (task / "frameworks" / "fw" / rel).parent.mkdir(parents=True, exist_ok=True)
        (task / "frameworks" / "fw" / rel).write_text(text)
    return specs.load_task("qa/topic", root).variant("fw")


@pytest.fixture
def tree(tmp_path) -> Path:
    (tmp_path / "tree" / "pkg").mkdir(parents=True)
    (tmp_path / "tree" / "pkg" / "norm.py").write_text(MODULE)
    return tmp_path / "tree"


@pytest.fixture
def variant(tmp_path) -> specs.TaskVariant:
    return make_task(tmp_path / "specs")


def said(text: str) -> list[dict]:
    return [{"kind": "assistant", "content": f"<final_answer>\n{text}\n</final_answer>", "tool_calls": []}]


def run(variant, tree, tmp_path, text: str | None, changed=(), workdir=None):
    log = tmp_path / "grader.log"
    grade = answers.grade(variant, said(text) if text is not None else [], list(changed), tree, log, workdir=workdir)
    return grade, log.read_text()


# ---- citations ----


def test_citations_single_lines_ranges_and_several_per_line():
    text = "see `pkg/norm.py:9` and pkg/norm.py:12-14, also ./pkg/norm.py:3 – and pkg/norm.py:16\u201318."
    assert answers.parse_citations(text) == [
        Citation("pkg/norm.py", 9, 9),
        Citation("pkg/norm.py", 12, 14),
        Citation("./pkg/norm.py", 3, 3),
        Citation("pkg/norm.py", 16, 18),
    ]


def test_citations_leave_urls_versions_and_times_alone():
    assert answers.parse_citations("http://localhost:8080/x, torch 2.13:1, at 16:20, step:5, ratio 3.5:1") == []


def test_citation_problems_name_missing_files_lines_and_outside_paths(tree):
    assert answers.citation_problem(Citation("pkg/norm.py", 3, 9), tree, None) is None
    assert "no such file" in answers.citation_problem(Citation("pkg/nope.py", 1, 1), tree, None)
    assert "has 19 lines" in answers.citation_problem(Citation("pkg/norm.py", 18, 40), tree, None)
    assert "has 19 lines" in answers.citation_problem(Citation("pkg/norm.py", 0, 0), tree, None)
    assert "not a path inside" in answers.citation_problem(Citation("/etc/passwd", 1, 1), tree, None)
    assert "not a path inside" in answers.citation_problem(Citation("../tree/pkg/norm.py", 1, 1), tree, None)
    assert answers.citation_problem(Citation("/work/ws/pkg/norm.py", 3, 3), tree, "/work/ws") is None


def test_final_answer_is_the_last_block_the_agent_wrote_never_tool_output():
    events = [
        {"kind": "assistant", "content": "<final_answer>first</final_answer>", "tool_calls": []},
        {"kind": "tool_result", "output": "<final_answer>printed by a tool</final_answer>"},
        {
            "kind": "assistant",
            "content": "done",
            "tool_calls": [
                {"id": "1", "name": "submit", "arguments": {"summary": "<final_answer>submitted</final_answer>"}}
            ],
        },
    ]
    assert answers.final_answer(events) == "submitted"
    assert answers.final_answer(events[:2]) == "first"
    assert answers.final_answer([{"kind": "cli_result", "result": "x <final_answer> cli </final_answer>"}]) == "cli"
    assert answers.final_answer(events[1:2]) is None


# ---- symbols ----


def test_symbols_resolve_to_their_lines_decorators_included():
    assert answers.symbol_lines(MODULE, "EPS") == (3, 3)
    assert answers.symbol_lines(MODULE, "Norm") == (6, 14)
    assert answers.symbol_lines(MODULE, "Norm.eps") == (7, 7)
    assert answers.symbol_lines(MODULE, "Norm.__init__") == (9, 10)
    assert answers.symbol_lines(MODULE, "Norm.forward") == (12, 14)
    assert answers.symbol_lines(MODULE, "clip") == (17, 19)


def test_symbols_that_do_not_resolve_say_why():
    assert "no function, class or assignment named 'Norm.backward'" in answers.symbol_lines(MODULE, "Norm.backward")
    assert "defined 2 times" in answers.symbol_lines("X = 1\nX = 2\n", "X")
    assert "does not parse" in answers.symbol_lines("def (:\n", "X")


def test_a_key_with_an_unresolvable_symbol_is_a_spec_error_naming_file_fact_and_symbol(tmp_path, tree):
    variant = make_task(tmp_path / "specs", KEY.replace('symbol = "Norm.forward"', 'symbol = "Norm.fwd"'))
    with pytest.raises(specs.SpecError, match=r"answer_key.toml: fact 'forward': symbol 'Norm.fwd' in pkg/norm.py"):
        answers.resolve_key(variant.answer_key, tree, variant.answer_key_path)
    grade, _ = run(variant, tree, tmp_path, "anything")
    assert not grade.resolved and "Norm.fwd" in grade.error


def test_survives_reformatting(tmp_path, tree, variant):
    (tree / "pkg" / "norm.py").write_text("# a new header line\n\n" + MODULE)
    grade, _ = run(variant, tree, tmp_path, "- eps is EPS = 1e-6 at pkg/norm.py:5\n- forward: pkg/norm.py:14")
    assert grade.resolved, grade


# ---- facts ----


def test_the_gold_answer_resolves_and_every_fact_is_recorded(tmp_path, tree, variant):
    gold = answers.gold_answer(
        variant.answer_key, answers.resolve_key(variant.answer_key, tree, variant.answer_key_path)
    )
    grade = answers.grade(variant, [{"kind": "assistant", "content": gold}], [], tree, tmp_path / "log")
    assert grade.resolved and grade.facts == {"eps": "found", "forward": "found"} and grade.answer_problems == []


def test_a_fact_cited_outside_its_regions_is_not_found(tmp_path, tree, variant):
    grade, log = run(variant, tree, tmp_path, "- Norm's eps is EPS = 1e-6: pkg/norm.py:7\n- forward: pkg/norm.py:13")
    assert not grade.resolved and grade.facts["forward"] == "found"
    assert grade.facts["eps"].startswith("no statement cites inside its region(s): pkg/norm.py:9-10 (Norm.__init__)")
    assert "fact eps: no statement cites inside" in log and "verdict: unresolved" in log


def test_a_whole_file_range_does_not_count_but_a_range_a_little_past_the_edge_does(tmp_path, tree, variant):
    grade, _ = run(variant, tree, tmp_path, "- eps is EPS, 1e-6: pkg/norm.py:1-19\n- forward: pkg/norm.py:12-15")
    assert grade.facts["eps"] != "found" and grade.facts["forward"] == "found"


def test_a_missing_value_fails_and_numbers_match_in_any_notation(tmp_path, tree, variant):
    grade, _ = run(variant, tree, tmp_path, "- eps comes from EPS: pkg/norm.py:9\n- forward: pkg/norm.py:13")
    assert not grade.resolved and "does not state 1e-06" in grade.facts["eps"]
    for notation in ("1e-06", "0.000001", "1.0e-6"):
        grade, _ = run(variant, tree, tmp_path, f"- eps is EPS ({notation}): pkg/norm.py:3\n- forward: pkg/norm.py:13")
        assert grade.resolved, notation
    grade, _ = run(variant, tree, tmp_path, "- eps is EPS (1e-5): pkg/norm.py:3\n- forward: pkg/norm.py:13")
    assert not grade.resolved


def test_a_markdown_answer_as_agents_write_it(tmp_path, tree, variant):
    text = """## Findings

1. **eps**: `Norm.__init__` stores `eps`, whose default is the module constant
   `EPS = 1e-06` (`pkg/norm.py:9-10`, `pkg/norm.py:3`).
2. **forward** returns x unchanged (`pkg/norm.py:12-14`)."""
    grade, _ = run(variant, tree, tmp_path, text)
    assert grade.resolved, grade.facts
    assert answers.states_value("rope_theta is 1,000,000 here", 1e6) and not answers.states_value("1,000", 1e6)


def test_a_name_matches_as_a_word_or_the_head_of_an_identifier_never_inside_a_word():
    assert answers.states_value("layers go over mesh.dp_ep_mesh", "dp_ep")  # the code's own longer name
    assert answers.states_value("the DP_EP group", "dp_ep") and answers.states_value("(dp_ep)", "dp_ep")
    assert not answers.states_value("per epoch", "ep") and not answers.states_value("dp_eps", "dp_ep")
    assert not answers.states_value("moe_intermediate_size", "intermediate_size")


def test_values_must_be_in_the_citing_statement_not_elsewhere(tmp_path, tree, variant):
    text = "- The value is 1e-6 and the name EPS.\n- eps is set here: pkg/norm.py:9\n- forward: pkg/norm.py:13"
    grade, _ = run(variant, tree, tmp_path, text)
    assert not grade.resolved and "does not state" in grade.facts["eps"]


def test_an_absent_fact_needs_an_explicit_absent_claim_at_the_place(tmp_path, tree):
    key = """
[[facts]]
id = "no_clip_coef"
claim = "clip never scales the gradients."
regions = [{ path = "pkg/norm.py", symbol = "clip" }]
absent = true
"""
    variant = make_task(tmp_path / "specs", key)
    grade, _ = run(
        variant, tree, tmp_path, "- Scaling by a clip coefficient is absent: clip only sums, pkg/norm.py:17-19"
    )
    assert grade.resolved
    grade, _ = run(variant, tree, tmp_path, "- clip scales the gradients: pkg/norm.py:18")
    assert not grade.resolved and "does not say 'absent'" in grade.facts["no_clip_coef"]
    grade, _ = run(variant, tree, tmp_path, "- Scaling is absent.")
    assert not grade.resolved


def test_claiming_a_present_fact_absent_does_not_count(tmp_path, tree, variant):
    grade, _ = run(
        variant, tree, tmp_path, "- An eps is absent; EPS 1e-6 is unused: pkg/norm.py:3\n- forward: pkg/norm.py:13"
    )
    assert not grade.resolved and "says 'absent'" in grade.facts["eps"]


def test_a_citation_of_a_line_that_does_not_exist_fails_the_answer(tmp_path, tree, variant):
    text = "- eps is EPS = 1e-6: pkg/norm.py:3\n- forward: pkg/norm.py:13\n- see also pkg/norm.py:400"
    grade, log = run(variant, tree, tmp_path, text)
    assert not grade.resolved and grade.facts == {"eps": "found", "forward": "found"}
    assert grade.answer_problems == [
        "citation of a line that does not exist: pkg/norm.py:400: pkg/norm.py has 19 lines"
    ]
    assert "problem: citation of a line" in log


def test_an_answer_citing_more_places_than_the_bound_fails_whatever_it_finds(tmp_path, tree, variant):
    """Two facts: at most 16 distinct places. A place cited twice counts once; the 17th place fails the answer
    with a problem naming the bound, though both facts are found."""
    assert variant.answer_key.max_citations == 16
    found = "- Norm takes eps from EPS = 1e-6 (pkg/norm.py:10).\n- Norm.forward returns its input (pkg/norm.py:13)."
    others = [f"pkg/norm.py:{line}" for line in (1, 2, 4, 5, 6, 7, 8, 11, 15, 16, 17, 18, 19)] + ["pkg/norm.py:17-18"]
    at_bound = found + "\n- Also read: " + ", ".join(others) + ", and pkg/norm.py:10 again."
    grade, _ = run(variant, tree, tmp_path, at_bound)
    assert grade.resolved, grade.answer_problems
    grade, log = run(variant, tree, tmp_path, at_bound + " And pkg/norm.py:18-19.")
    assert not grade.resolved and set(grade.facts.values()) == {"found"}
    assert grade.answer_problems == [
        "the answer cites 17 distinct places, more than the 16 this question allows (4 per fact it asks about, "
        "plus 8; the instruction says so): cite what you found, not every candidate"
    ]
    assert "17 distinct places" in log


def test_an_edit_to_the_workspace_fails_the_answer(tmp_path, tree, variant):
    grade, _ = run(
        variant,
        tree,
        tmp_path,
        "- eps is EPS = 1e-6: pkg/norm.py:3\n- forward: pkg/norm.py:13",
        changed=["pkg/norm.py"],
    )
    assert not grade.resolved and "read-only" in grade.answer_problems[0]


def test_no_answer_is_unresolved_not_an_error(tmp_path, tree, variant):
    grade, _ = run(variant, tree, tmp_path, None)
    assert not grade.resolved and grade.error is None and "no <final_answer>" in grade.answer_problems[0]


def test_a_fact_that_is_not_required_does_not_decide(tmp_path, tree):
    variant = make_task(tmp_path / "specs", KEY + "required = false\n")
    grade, _ = run(variant, tree, tmp_path, "- eps is EPS = 1e-6: pkg/norm.py:3")
    assert grade.resolved and grade.facts["forward"] != "found"


def test_absolute_citations_under_the_workspace_count(tmp_path, tree, variant):
    text = "- eps is EPS = 1e-6: /ws/pkg/norm.py:3\n- forward: /ws/pkg/norm.py:13"
    assert run(variant, tree, tmp_path, text, workdir="/ws")[0].resolved
    assert not run(variant, tree, tmp_path, text, workdir=None)[0].resolved


# ---- specs ----


def test_an_answer_task_refuses_hidden_tests_and_a_tests_task_refuses_a_key(tmp_path):
    with pytest.raises(specs.SpecError, match=r"grading.toml: a task graded by answer"):
        make_task(tmp_path / "a", extra={"grading.toml": "command = 'x'\n"})
    root = tmp_path / "b"
    make_task(root)
    (root / "tasks" / "qa" / "topic" / "task.toml").write_text("")
    with pytest.raises(specs.SpecError, match=r'does not say \[grading\] kind = "answer"'):
        specs.load_task("qa/topic", root).variant("fw")


def test_a_qa_task_needs_no_gpu_whatever_the_framework_asks(variant):
    """Q&A only reads the source: a framework whose sandbox asks for GPUs still answers on a CPU machine."""
    from bench.gpu import gpus_per_trial

    framework = specs.load_framework("reference")
    on_gpus = framework.model_copy(update={"sandbox": framework.sandbox.model_copy(update={"gpus": 4})})
    assert gpus_per_trial(on_gpus, variant.task.spec) == 0
    assert gpus_per_trial(on_gpus, specs.load_task("add-new-model/mixtral").spec) == 4  # a build task still asks


def test_key_mistakes_its_types_catch(tmp_path):
    with pytest.raises(specs.SpecError, match=r"fact ids eps appear more than once"):
        make_task(tmp_path / "a", KEY + KEY.split("[[facts]]")[1].join(["[[facts]]", ""]))
    with pytest.raises(
        specs.SpecError,
        match=r"facts.0.regions.0': Value error, symbol 'Norm.__init__\(\)' is not a dotted Python name",
    ):
        make_task(tmp_path / "b", KEY.replace('"Norm.__init__"', '"Norm.__init__()"'))
    with pytest.raises(specs.SpecError, match=r"unknown field 'facts.0.value'"):
        make_task(tmp_path / "c", KEY.replace("values =", "value ="))


def test_wrong_answer_templates_cite_real_places(tmp_path, tree):
    text = answers.render_template("see {{pkg/norm.py::Norm.forward}} and {{pkg/norm.py::EPS}}", tree, tmp_path / "w")
    assert text == "see pkg/norm.py:12-14 and pkg/norm.py:3"
    with pytest.raises(specs.SpecError, match=r"pkg/norm.py::Nope"):
        answers.render_template("{{pkg/norm.py::Nope}}", tree, tmp_path / "w")


# ---- the shipped Q&A tasks, on the bundled reference source ----


SHIPPED = [(t, fw) for t in specs.list_tasks() if t.startswith("qa/") for fw in specs.load_task(t).frameworks()]


def shipped_source(framework: str) -> Path:
    """The tree a shipped key is graded in: the bundled reference, or another framework's pinned checkout
    when its override variable points at one (ATEBENCH_SRC_TORCHTITAN=...); skipped otherwise."""
    if framework == "reference":
        return specs.REPO_ROOT / "reference_impl"
    source = specs.load_framework(framework).override_path()
    if source is None or not source.is_dir():
        pytest.skip(f"no local {framework} source: set its ATEBENCH_SRC_ variable to a checkout at the pin")
    return source


@pytest.mark.parametrize(("task_id", "framework"), SHIPPED)
def test_shipped_keys_resolve_gold_passes_and_wrong_fails(tmp_path, task_id, framework):
    variant = specs.load_task(task_id).variant(framework)
    source = shipped_source(framework)
    gold = answers.gold_answer(
        variant.answer_key, answers.resolve_key(variant.answer_key, source, variant.answer_key_path)
    )
    assert answers.grade(variant, [{"kind": "assistant", "content": gold}], [], source, tmp_path / "g").resolved
    wrong = answers.render_template(variant.wrong_answer.read_text(), source, variant.wrong_answer)
    grade = answers.grade(variant, [{"kind": "assistant", "content": wrong}], [], source, tmp_path / "w")
    assert not grade.resolved and not grade.answer_problems  # wrong for its facts, not for a broken citation


def spray(source: Path, files: list[str]) -> str:
    """The answer of an agent that found nothing but the right files: one statement per function and class
    in them, citing its first line and naming every identifier and number in it."""
    import ast
    import re

    parts = []
    for rel in files:
        text = (source / rel).read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                body = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                names = sorted(set(re.findall(r"[A-Za-z_]\w*|\d+\.?\d*(?:e-?\d+)?", body)))
                parts.append(f"- {rel}:{node.lineno} " + " ".join(names))
    return "<final_answer>\n" + "\n".join(parts) + "\n</final_answer>"


@pytest.mark.parametrize(("task_id", "framework"), SHIPPED)
def test_a_spray_over_the_keys_files_resolves_no_shipped_question(tmp_path, task_id, framework):
    """Before the citation bound, this spray resolved 3 of the 12 reference questions (and found 4/4 or 6/6
    facts in them); now every one fails, on the bound wherever it cites more than it allows."""
    variant = specs.load_task(task_id).variant(framework)
    source = shipped_source(framework)
    files = sorted({region.path for fact in variant.answer_key.facts for region in fact.regions})
    answer = spray(source, files)
    grade = answers.grade(variant, [{"kind": "assistant", "content": answer}], [], source, tmp_path / "g")
    assert not grade.resolved, grade.facts
    cited = {(c.path, c.start, c.end) for c in answers.parse_citations(answer)}
    over = len(cited) > variant.answer_key.max_citations
    assert over == any("distinct places, more than" in p for p in grade.answer_problems)


@pytest.mark.parametrize(("task_id", "framework"), SHIPPED)
def test_a_thorough_honest_answer_stays_within_the_bound(tmp_path, task_id, framework):
    """The gold answer with every region of every fact cited as well (a definition and its uses) resolves."""
    variant = specs.load_task(task_id).variant(framework)
    source = shipped_source(framework)
    resolved = answers.resolve_key(variant.answer_key, source, variant.answer_key_path)
    gold = answers.gold_answer(variant.answer_key, resolved).splitlines()
    for i, fact in enumerate(variant.answer_key.facts, start=1):  # line 0 is the opening tag
        gold[i] += " Also " + ", ".join(f"{s.path}:{s.start}-{s.end}" for s in resolved[fact.id]) + "."
    grade = answers.grade(variant, [{"kind": "assistant", "content": "\n".join(gold)}], [], source, tmp_path / "g")
    assert grade.resolved, (grade.answer_problems, grade.facts)


@pytest.mark.parametrize(("task_id", "framework"), SHIPPED)
def test_the_instruction_states_the_citation_bound(task_id, framework):
    variant = specs.load_task(task_id).variant(framework)
    text = variant.instruction()
    assert f"at most {variant.answer_key.max_citations} distinct places" in text, task_id
    assert "{" not in text.replace("{{", ""), "every placeholder is filled"


# ---- through the harness: trial, oracle, nop, wrong, an agent that edits ----


class _AnswerAndEdit:
    """Says the gold answer but also edits a file: a Q&A trial must not resolve."""

    name = "editor"

    def __init__(self, answer: str):
        self.answer = answer

    def run(self, ctx):
        ctx.sandbox.write_file(f"{ctx.sandbox.workdir}/calc/ops.py", "def mul(a, b):\n    return a * b\n")
        ctx.trajectory.append("assistant", content=self.answer, tool_calls=[])
        return AgentOutcome(exit_status="completed")


def test_qa_trials_through_the_harness(tmp_path, cache):
    root = make_toy_root(tmp_path / "specs")
    task = root / "tasks" / "qa" / "mul"
    (task / "frameworks" / "toy" / "wrong").mkdir(parents=True)
    (task / "task.toml").write_text('measure_throughput = false\n[grading]\nkind = "answer"\n')
    (task / "instruction.md").write_text("Where does {framework} multiply?\n")
    (task / "frameworks" / "toy" / "answer_key.toml").write_text(
        '[[facts]]\nid = "mul"\nclaim = "mul returns a * b."\nregions = [{ path = "calc/ops.py", symbol = "mul" }]\n'
        'values = ["a * b"]\n'
    )
    (task / "frameworks" / "toy" / "wrong" / "answer.md").write_text(
        "<final_answer>\n- add returns a * b: {{calc/ops.py::add}}\n</final_answer>\n"
    )
    gold = "<final_answer>\n- mul returns a * b: calc/ops.py:5-6\n</final_answer>"
    agents = {name: make_spec(name) for name in ("oracle", "nop", "wrong")}
    agents["editor"] = AgentSpec("editor", lambda trial: _AnswerAndEdit(gold))
    cfg = RunConfig(
        task="qa",
        framework="toy",
        agents=list(agents),
        run_id="qa",
        isolate=False,
        results_dir=str(tmp_path / "results"),
        specs_root=str(root),
    )
    rows = {row["agent"]: row for row in execute(cfg, make_plan(cfg, agents))}
    assert {a: r["status"] for a, r in rows.items()} == {
        "oracle": "resolved",
        "nop": "unresolved",
        "wrong": "unresolved",
        "editor": "unresolved",
    }
    assert rows["oracle"]["grade"]["facts"] == {"mul": "found"}
    assert rows["wrong"]["grade"]["facts"]["mul"].startswith("no statement cites inside its region(s): calc/ops.py:5-6")
    assert rows["editor"]["grade"]["facts"] == {"mul": "found"}
    assert "read-only" in rows["editor"]["grade"]["answer_problems"][0]
    saved = json.loads((tmp_path / "results" / "qa" / "qa__mul" / "toy" / "oracle" / "0" / "result.json").read_text())
    assert saved["grade"]["facts"] == {"mul": "found"}
    log = (tmp_path / "results" / "qa" / "qa__mul" / "toy" / "wrong" / "0" / "grader.log").read_text()
    assert "fact mul: no statement cites" in log and "add returns a * b: calc/ops.py:1-2" in log

    # The trial pages show which facts were found, and what failed a whole answer.
    from bench.report_cli import cmd_report

    assert cmd_report(["qa", "--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "report")]) == 0
    pages = {p.name: p.read_text() for p in (tmp_path / "report" / "trajectories").glob("*.html")}
    wrong = next(text for name, text in pages.items() if "wrong" in name)
    editor = next(text for name, text in pages.items() if "editor" in name)
    assert "Facts of the answer key (0 of 1 found)" in wrong and "no statement cites inside" in wrong
    assert "Facts of the answer key (1 of 1 found)" in editor and "read-only" in editor


@pytest.mark.parametrize(("task_id", "framework"), SHIPPED)
def test_every_fact_of_a_shipped_key_decides(tmp_path, task_id, framework):
    """The gold without any one fact's statement, or with that citation moved just above its region, no longer
    finds that fact (and, for a required fact, fails)."""
    variant = specs.load_task(task_id).variant(framework)
    source = shipped_source(framework)
    resolved = answers.resolve_key(variant.answer_key, source, variant.answer_key_path)
    gold = answers.gold_answer(variant.answer_key, resolved).splitlines()
    for i, fact in enumerate(variant.answer_key.facts, start=1):  # line 0 is the opening tag
        dropped = "\n".join(gold[:i] + gold[i + 1 :])
        grade = answers.grade(variant, [{"kind": "assistant", "content": dropped}], [], source, tmp_path / "log")
        assert grade.facts[fact.id] != "found" and (not grade.resolved or not fact.required), fact.id
        span = resolved[fact.id][0]
        if any(s.path == span.path and s.start <= span.start - 1 <= s.end for s in resolved[fact.id]):
            continue  # the line above is inside another region of the same fact
        moved = gold[i].replace(f"{span.path}:{span.start}.", f"{span.path}:{span.start - 1}.")
        assert moved != gold[i]
        shifted = "\n".join(gold[:i] + [moved] + gold[i + 1 :])
        grade = answers.grade(variant, [{"kind": "assistant", "content": shifted}], [], source, tmp_path / "log")
        assert grade.facts[fact.id] != "found" and (not grade.resolved or not fact.required), fact.id


# ---- the builtin agent answers through `submit` ----


def test_the_builtin_agents_submit_summary_is_the_graded_answer(tmp_path, tree, variant, monkeypatch):
    """A real BuiltinAgent against the scripted LLM server: the answer it puts in `submit`'s summary is read
    back from the trajectory and graded."""
    from bench.agents import BuiltinAgent
    from bench.sandbox.local import LocalSandbox
    from bench.specs import Limits
    from bench.types import AgentContext, TrajectoryWriter
    from tests.fake_llm import FakeLLMServer, Reply

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-anthropic-key-not-real-5c1d")
    body = "- Norm takes EPS, 1e-6: pkg/norm.py:9-10\n- forward returns x: pkg/norm.py:12-14"
    answer = f"<final_answer>\n{body}\n</final_answer>"
    script = [
        Reply(tool_calls=[("bash", {"command": "cat -n pkg/norm.py"})]),
        Reply(text="Done.", tool_calls=[("submit", {"summary": answer})]),
    ]
    trajectory = TrajectoryWriter(tmp_path / "out" / "trajectory.jsonl")
    with FakeLLMServer(script) as server:
        agent = BuiltinAgent(model="anthropic/claude-haiku-4-5", base_url=server.url)
        sandbox = LocalSandbox(tree)
        try:
            ctx = AgentContext(instruction="Where is eps set?", sandbox=sandbox, limits=Limits(), trajectory=trajectory)
            outcome = agent.run(ctx)
        finally:
            sandbox.close()
    assert outcome.exit_status == "submitted", outcome.error
    events = trajectory.read()
    assert answers.final_answer(events) == body
    grade = answers.grade(variant, events, [], tree, tmp_path / "grader.log")
    assert grade.resolved and grade.facts == {"eps": "found", "forward": "found"}, grade
