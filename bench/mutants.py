"""Mutation score of a task's grader: small edits of the gold solution that the hidden tests must reject.

Why: `validate` proves the gold passes and one shipped wrong patch fails; a grader can still accept many
wrong solutions. A mutant is the gold with one AST-level edit on a line the gold adds (an operator or a
comparison flipped, a constant off by one, two arguments swapped, a statement dropped, a collective's
process group exchanged for another group the file names). Each is graded
through the normal trial path, the oracle applying the mutant's patch instead of the gold. A surviving
mutant is equivalent to the gold or a blind spot of the grader; the report lists the survivors' diffs
for the task author to judge. The same seed, task and gold give the same mutants.
"""

from __future__ import annotations

import ast
import difflib
import json
import random
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

from bench import workspace
from bench.agents import MUTANT, mutant_spec
from bench.specs import FrameworkSpec, TaskVariant

AGENT_NAME = MUTANT  # the agent (and folder) of mutant trials

BINARY_SWAPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
}
COMPARE_SWAPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
DROPPABLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)


@dataclass(frozen=True)
class Edit:
    """Replace source[start:end] (character offsets) with `text`."""

    file: str
    line: int
    kind: str  # operator | comparison | boolean | negation | constant | swap-args | drop-statement | group
    start: int
    end: int
    text: str

    def key(self) -> tuple:
        return (self.file, self.start, self.end, self.kind, self.text)


@dataclass
class Mutant:
    """One graded mutant: where and what, the patch the oracle applies, and the diff against the gold."""

    index: int
    file: str
    line: int
    kind: str
    before: str
    after: str
    patch: str
    diff: str

    def describe(self) -> str:
        return f"{self.file}:{self.line} {self.kind}: {self.before!r} -> {self.after!r}"


def added_lines(before: str, after: str) -> set[int]:
    """1-based numbers of the lines in `after` that are new or changed relative to `before`."""
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines(), autojunk=False)
    lines = set()
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        if tag in ("insert", "replace"):
            lines.update(range(j1 + 1, j2 + 1))
    return lines


def _offsets(source: str) -> list[int]:
    """Character offset of the start of each line (index 0 = line 1)."""
    starts, total = [], 0
    for line in source.splitlines(keepends=True):
        starts.append(total)
        total += len(line)
    return starts + [total]


def _position(source_lines: list[str], starts: list[int], lineno: int, col_bytes: int) -> int:
    """ast gives UTF-8 byte columns; convert to a character offset in the source."""
    line = source_lines[lineno - 1]
    return starts[lineno - 1] + len(line.encode()[:col_bytes].decode(errors="ignore"))


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes inside annotations, f-strings and docstrings: edits there are equivalent or invalid."""
    skipped: set[int] = set()

    def mark(node):
        if node is not None:
            skipped.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.arg, ast.AnnAssign)):
            mark(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
        if isinstance(node, ast.JoinedStr):
            mark(node)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            mark(node)
    return skipped


def candidate_edits(file: str, source: str, lines: set[int]) -> list[Edit]:
    """Every mutation of a node that lies wholly on `lines` (the gold's added lines) of one Python file."""
    tree = ast.parse(source)
    skipped = _skipped_nodes(tree)
    source_lines = source.splitlines(keepends=True)
    starts = _offsets(source)
    edits: list[Edit] = []

    def span(node) -> tuple[int, int] | None:
        if getattr(node, "lineno", None) is None or node.end_lineno is None:
            return None
        if not all(n in lines for n in range(node.lineno, node.end_lineno + 1)):
            return None
        return (
            _position(source_lines, starts, node.lineno, node.col_offset),
            _position(source_lines, starts, node.end_lineno, node.end_col_offset),
        )

    def add(node, kind: str, replacement: ast.AST | str):
        where = span(node)
        if where is None:
            return
        text = replacement if isinstance(replacement, str) else f"({ast.unparse(replacement)})"
        edits.append(Edit(file, node.lineno, kind, where[0], where[1], text))

    groups = sorted({n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.endswith("_group")})
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if (
            isinstance(node, ast.keyword)
            and node.arg == "group"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr in groups
        ):
            other = [g for g in groups if g != node.value.attr]
            if other:  # a collective over another process group of the same file
                add(node.value, "group", ast.Attribute(node.value.value, other[0], ast.Load()))
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY_SWAPS:
            add(node, "operator", ast.BinOp(node.left, BINARY_SWAPS[type(node.op)](), node.right))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARE_SWAPS:
            add(node, "comparison", ast.Compare(node.left, [COMPARE_SWAPS[type(node.ops[0])]()], node.comparators))
        elif isinstance(node, ast.BoolOp):
            add(node, "boolean", ast.BoolOp(ast.Or() if isinstance(node.op, ast.And) else ast.And(), node.values))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            add(
                node,
                "negation",
                ast.unparse(node.operand)
                if isinstance(node.operand, ast.Constant)
                else f"({ast.unparse(node.operand)})",
            )
        elif isinstance(node, ast.Constant) and type(node.value) in (bool, int, float):
            value = node.value
            new = (
                (not value)
                if isinstance(value, bool)
                else value + 1
                if isinstance(value, int)
                else (value * 2 if value else 1.0)
            )
            add(node, "constant", repr(new))
        elif (
            isinstance(node, ast.Call)
            and len(node.args) >= 2
            and not any(isinstance(a, ast.Starred) for a in node.args[:2])
        ):
            first, second = node.args[0], node.args[1]
            if ast.unparse(first) != ast.unparse(second):
                swapped = ast.Call(node.func, [second, first, *node.args[2:]], node.keywords)
                add(node, "swap-args", swapped)
        if isinstance(
            node,
            (
                ast.FunctionDef,
                ast.AsyncFunctionDef,
                ast.ClassDef,
                ast.If,
                ast.For,
                ast.While,
                ast.With,
                ast.Try,
                ast.Module,
            ),
        ):
            body = [s for s in node.body if isinstance(s, DROPPABLE) and id(s) not in skipped]
            for statement in body if len(node.body) > 1 else []:
                where = span(statement)
                if where is not None and statement.lineno == statement.end_lineno:
                    edits.append(Edit(file, statement.lineno, "drop-statement", where[0], where[1], "pass"))
    return edits


def apply_edit(source: str, edit: Edit) -> str | None:
    """The mutated source, or None when the edit does not parse or changes nothing."""
    mutated = source[: edit.start] + edit.text + source[edit.end :]
    if mutated == source:
        return None
    try:
        if ast.dump(ast.parse(mutated)) == ast.dump(ast.parse(source)):
            return None
    except SyntaxError:
        return None
    return mutated


def _git(*args: str, cwd: Path, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=atebench", "-c", "user.email=atebench@localhost", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise workspace.WorkspaceError(f"git {args[0]} failed while making mutants: {done.stderr.strip()[-2000:]}")
    return done.stdout


def changed_python_files(patch: str) -> list[str]:
    """Paths of the .py files a unified diff writes (its `+++ b/...` lines)."""
    files = []
    for line in patch.splitlines():
        if line.startswith("+++ b/") and line.endswith(".py"):
            files.append(line[len("+++ b/") :])
    return sorted(set(files))


def make_mutants(
    prepared: Path, gold: str, count: int, seed: int, label: str, exclude: frozenset[str] = frozenset()
) -> list[Mutant]:
    """`count` mutants (fewer if the gold offers fewer) of `gold` applied to the tree `prepared`.

    Which ones: every candidate edit on the gold's added lines, outside the paths in `exclude` (test files
    the grading restores: a mutant there never reaches the grader), sorted, then a sample drawn with
    random.Random(f"{seed}:{label}"), so the same inputs give the same mutants.
    """
    with tempfile.TemporaryDirectory(prefix="atebench-mutants-") as scratch:
        repo = Path(scratch) / "tree"
        workspace.copy_clean(prepared, repo)
        _git("init", "-q", cwd=repo)
        _git("add", "-A", cwd=repo)
        _git("commit", "-q", "--no-verify", "--allow-empty", "-m", "prepared", cwd=repo)
        _git("apply", "--whitespace=nowarn", "-", cwd=repo, stdin=gold)
        solved: dict[str, str] = {}
        edits: list[Edit] = []
        for rel in changed_python_files(gold):
            path = repo / rel
            if rel in exclude or not path.is_file():
                continue
            after = path.read_text()
            before = _git("show", f"HEAD:{rel}", cwd=repo) if _tracked(repo, rel) else ""
            solved[rel] = after
            try:
                edits += candidate_edits(rel, after, added_lines(before, after))
            except SyntaxError:
                continue
        edits.sort(key=Edit.key)
        rng = random.Random(f"{seed}:{label}")
        order = rng.sample(range(len(edits)), len(edits))
        mutants: list[Mutant] = []
        for position in order:
            if len(mutants) >= count:
                break
            edit = edits[position]
            source = solved[edit.file]
            mutated = apply_edit(source, edit)
            if mutated is None:
                continue
            path = repo / edit.file
            path.write_text(mutated)
            _git("add", "-A", cwd=repo)
            patch = _git("diff", "--cached", "--binary", "HEAD", cwd=repo)
            path.write_text(source)
            diff = "".join(
                difflib.unified_diff(
                    source.splitlines(keepends=True),
                    mutated.splitlines(keepends=True),
                    f"gold/{edit.file}",
                    f"mutant/{edit.file}",
                    n=2,
                )
            )
            mutants.append(
                Mutant(
                    index=len(mutants),
                    file=edit.file,
                    line=edit.line,
                    kind=edit.kind,
                    before=source[edit.start : edit.end],
                    after=edit.text,
                    patch=patch,
                    diff=diff,
                )
            )
        return mutants


def _tracked(repo: Path, rel: str) -> bool:
    done = subprocess.run(["git", "cat-file", "-e", f"HEAD:{rel}"], cwd=repo, capture_output=True)
    return done.returncode == 0


def is_test_file(rel: str) -> bool:
    """A file of the framework's own test suite (under a tests/ folder, test_*.py, *_test.py, conftest.py).

    The gold may add tests alongside its change (enable-ep brings back the framework's ep tests); they are
    not the solution's behaviour, and grading runs the graded set, not the agent's copies, so a mutant
    there could only ever survive.
    """
    parts = rel.split("/")
    name = parts[-1]
    return "tests" in parts[:-1] or name == "conftest.py" or name.startswith("test_") or name.endswith("_test.py")


def mutants_for(
    variant: TaskVariant, framework: FrameworkSpec, count: int, seed: int, cache: Path | None = None
) -> list[Mutant]:
    """The mutants of one task's gold on one framework: edits of the solution's code, not of test files.
    A task graded by its answer (Q&A) has no gold patch: none."""
    if variant.answer_key is not None:
        return []
    prepared = workspace.prepared_checkout(variant, framework, cache)
    gold = workspace.gold_patch(variant, framework, cache)
    tests = {rel for rel in changed_python_files(gold) if is_test_file(rel)}
    return make_mutants(
        prepared,
        gold,
        count,
        seed,
        f"{variant.task.id}:{framework.name}",
        frozenset(variant.graded_test_paths()) | tests,
    )


def mutant_trials(oracle_trials: list, count: int, seed: int) -> tuple[list, dict]:
    """One oracle trial per mutant of each task (agent 'oracle-mutant', trial index = mutant index), and
    the mutants by (task id, framework)."""
    from bench.trial import TrialConfig

    trials, by_task = [], {}
    for config in oracle_trials:
        mutants = mutants_for(config.variant, config.framework, count, seed, config.cache)
        by_task[(config.variant.task.id, config.framework.name)] = mutants
        for mutant in mutants:
            trials.append(
                TrialConfig(
                    **{
                        **config.__dict__,
                        "agent": mutant_spec(mutant.patch),
                        "index": mutant.index,
                        "measure_throughput": False,
                    }
                )
            )
    return trials, by_task


def score(rows: list[dict], by_task: dict) -> list[dict]:
    """Per task: mutants killed (graded unresolved), survived (resolved), errored, and the survivors."""
    status = {(r["task"], r["framework"], r["trial"]): r["status"] for r in rows if r["agent"] == AGENT_NAME}
    report = []
    for (task, framework), mutants in sorted(by_task.items()):
        outcome = {m.index: status.get((task, framework, m.index), "missing") for m in mutants}
        killed = [m for m in mutants if outcome[m.index] == "unresolved"]
        survived = [m for m in mutants if outcome[m.index] == "resolved"]
        judged = len(killed) + len(survived)
        report.append(
            {
                "task": task,
                "framework": framework,
                "mutants": len(mutants),
                "killed": len(killed),
                "survived": [asdict(m) | {"patch": None} for m in survived],
                "errored": sorted(m.index for m in mutants if outcome[m.index] not in ("resolved", "unresolved")),
                "score": len(killed) / judged if judged else None,
            }
        )
    return report


def score_table(report: list[dict]) -> Table:
    table = Table(title="mutation score (killed / graded)")
    for column in ("task", "framework", "mutants", "killed", "survived", "errored", "score"):
        table.add_column(column)
    for r in report:
        shown = "-" if r["score"] is None else f"{r['score']:.0%}"
        table.add_row(
            r["task"],
            r["framework"],
            str(r["mutants"]),
            str(r["killed"]),
            str(len(r["survived"])),
            str(len(r["errored"])),
            shown,
        )
    return table


def write_report(report: list[dict], run_dir: Path) -> Path:
    """mutants.json (scores) and survivors.md (each survivor's diff against the gold) in the run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "mutants.json").write_text(json.dumps(report, indent=1))
    lines = [
        "# Surviving mutants",
        "",
        "Each survived grading: equivalent to the gold, or a blind spot of the hidden tests.",
        "",
    ]
    for r in report:
        lines.append(f"## {r['task']} ({r['framework']}): {r['killed']}/{r['mutants']} killed")
        for m in r["survived"]:
            lines += [
                "",
                f"mutant {m['index']}: {m['file']}:{m['line']} {m['kind']}",
                "",
                "```diff",
                m["diff"].rstrip(),
                "```",
            ]
        lines.append("")
    path = run_dir / "survivors.md"
    path.write_text("\n".join(lines))
    return path
