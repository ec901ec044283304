"""Answer grading for read-only Q&A tasks: the agent's final answer against the variant's answer key.

The threat: an answer that sounds right without having found anything. So the verdict rests only on
what can be checked mechanically: every required fact of the key (answer_key.toml) must be stated in one
statement that cites a line inside one of the fact's source regions and states the fact's values; no
citation may name a file or line the checkout does not have; the answer cites at most the key's
`max_citations` distinct places (a spray of candidate places, each followed by every name in it, would
otherwise find facts without finding anything); and the workspace must be unchanged (an edit fails the
trial). Regions are named by symbol and resolved with `ast` in the checkout the agent
started from, never in the agent's tree, so a key survives reformatting and an edit cannot move a region.

The answer is read from the trajectory (what the agent wrote, never what a tool printed), so a saved
trial can be graded again from its files.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path

from bench.grading import Grade
from bench.keys import redact
from bench.specs import REPO_ROOT, AnswerKey, Fact, SpecError, TaskVariant

FINAL_ANSWER = re.compile(r"<final_answer>(.*?)</final_answer>", re.DOTALL)
# path:line or path:start-end; the path has a file extension, may start with "./" or "/" (an absolute
# path under the workspace), and is not glued to a longer word ("http://host:80" has no extension).
CITATION = re.compile(
    r"(?<![\w.~/-])(?P<path>(?:\.?/)?(?:[\w.-]+/)*[\w-][\w.-]*\.[A-Za-z]\w*)"
    r":(?P<start>\d+)(?:\s*[-\u2013]\s*(?P<end>\d+))?(?![\d\w])"
)
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]*\w)")
THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
ABSENT = re.compile(r"\babsent\b", re.IGNORECASE)
# A statement starts at a blank line or a list item ("- ", "* ", "1. ").
ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
TEMPLATE = re.compile(r"\{\{\s*([^:{}\s]+)::([\w.]+)\s*\}\}")
AGENT_TEXT_KINDS = ("assistant", "cli_result")
"""Trajectory events the agent wrote: a message (all agents; the oracle's one message too), a CLI's final
result. Tool output is never read: a file the agent printed could hold a `<final_answer>`."""


@dataclass(frozen=True)
class Citation:
    path: str  # as written in the answer
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.path}:{self.start}" + (f"-{self.end}" if self.end != self.start else "")


@dataclass(frozen=True)
class Span:
    """A region of the key, resolved: the symbol's lines in the checkout."""

    path: str
    symbol: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{Citation(self.path, self.start, self.end)} ({self.symbol})"


# ---- reading the answer ----------------------------------------------------------------------------


def final_answer(events: list[dict]) -> str | None:
    """The last `<final_answer>` block the agent wrote: in a message, in a tool call's arguments (the
    builtin agent's `submit` summary), or in a CLI's final result."""
    texts = []
    for event in events:
        if event.get("kind") not in AGENT_TEXT_KINDS:
            continue
        texts += [str(event.get("content") or ""), str(event.get("result") or "")]
        for call in event.get("tool_calls") or []:
            arguments = call.get("arguments") if isinstance(call, dict) else None
            if isinstance(arguments, dict):
                texts += [v for v in arguments.values() if isinstance(v, str)]
    blocks = [m.group(1) for text in texts for m in FINAL_ANSWER.finditer(text)]
    return blocks[-1].strip() if blocks else None


def parse_citations(text: str) -> list[Citation]:
    """Every `path:line` and `path:start-end` in `text`, in order."""
    return [Citation(m["path"], int(m["start"]), int(m["end"] or m["start"])) for m in CITATION.finditer(text)]


def statements(answer: str) -> list[str]:
    """The answer cut into statements: paragraphs, and each list item on its own."""
    parts: list[list[str]] = [[]]
    for line in answer.splitlines():
        if not line.strip() or ITEM.match(line):
            parts.append([])
        if line.strip():
            parts[-1].append(line)
    return ["\n".join(p) for p in parts if p]


def checkout_path(cited: str, workdir: str | None) -> str | None:
    """The cited path relative to the checkout's root, or None when it points outside it."""
    if workdir and cited.startswith(workdir.rstrip("/") + "/"):
        cited = cited[len(workdir.rstrip("/")) + 1 :]
    cited = cited.removeprefix("./")
    if cited.startswith("/") or ".." in cited.split("/"):
        return None
    return cited


def citation_problem(citation: Citation, tree: Path, workdir: str | None) -> str | None:
    """Why a citation does not point at lines of the checkout, or None when it does."""
    rel = checkout_path(citation.path, workdir)
    if rel is None:
        return f"{citation}: not a path inside the repository"
    file = tree / rel
    if not file.is_file():
        return f"{citation}: no such file in the repository"
    lines = len(file.read_text(errors="replace").splitlines())
    if citation.start < 1 or citation.end < citation.start or citation.end > lines:
        return f"{citation}: {rel} has {lines} lines"
    return None


# ---- resolving the key -----------------------------------------------------------------------------


def _statements_in(body: list[ast.stmt]):
    """The statements of one level (module or class body), looking into if/try/with blocks at that level."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for inner in ("body", "orelse", "finalbody"):
                yield from _statements_in(getattr(node, inner, []))
            for handler in getattr(node, "handlers", []):
                yield from _statements_in(handler.body)


def _defines(node: ast.stmt, name: str) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == name
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return name in names


def symbol_lines(source: str, symbol: str) -> tuple[int, int] | str:
    """(first, last) line of `symbol` (decorators included) in a module's source, or why it has none."""
    try:
        module = ast.parse(source)
    except SyntaxError as e:
        return f"the file does not parse ({e.msg}, line {e.lineno})"
    scopes: list[ast.AST] = [module]
    for depth, part in enumerate(symbol.split(".")):
        found = [n for scope in scopes for n in _statements_in(getattr(scope, "body", [])) if _defines(n, part)]
        prefix = ".".join(symbol.split(".")[: depth + 1])
        if not found:
            return f"no function, class or assignment named {prefix!r}"
        if len(found) > 1:
            return f"{prefix!r} is defined {len(found)} times (lines {', '.join(str(n.lineno) for n in found)})"
        scopes = found
    node = scopes[0]
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return first, node.end_lineno


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def resolve_key(key: AnswerKey, tree: Path, key_file: Path) -> dict[str, list[Span]]:
    """Every fact's regions as line spans in `tree`; a region that does not resolve is a SpecError naming the
    key file, the fact and the symbol."""
    resolved = {}
    for fact in key.facts:
        spans = []
        for region in fact.regions:
            file = tree / region.path
            where = f"{_shown(key_file)}: fact {fact.id!r}: symbol {region.symbol!r} in {region.path}"
            if not file.is_file():
                raise SpecError(f"{where}: the checkout has no such file; fix the region's path")
            lines = symbol_lines(file.read_text(errors="replace"), region.symbol)
            if isinstance(lines, str):
                raise SpecError(f"{where}: {lines}; fix the key to name the symbol as the code spells it now")
            spans.append(Span(region.path, region.symbol, *lines))
        resolved[fact.id] = spans
    return resolved


def render_template(text: str, tree: Path, source_file: Path) -> str:
    """`{{path::Symbol}}` -> `path:first-last` in `tree` (wrong answers cite real places, whatever the
    formatting); an unresolvable one is a SpecError naming the file."""

    def cite(match: re.Match) -> str:
        path, symbol = match[1], match[2]
        file = tree / path
        lines = symbol_lines(file.read_text(errors="replace"), symbol) if file.is_file() else "no such file"
        if isinstance(lines, str):
            raise SpecError(f"{_shown(source_file)}: {{{{{path}::{symbol}}}}}: {lines}; fix the reference")
        return str(Citation(path, *lines))

    return TEMPLATE.sub(cite, text)


def _value_text(value: str | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def gold_answer(key: AnswerKey, resolved: dict[str, list[Span]]) -> str:
    """The oracle's answer: each fact, its values, cited at the first line of its first region."""
    lines = []
    for fact in key.facts:
        span = resolved[fact.id][0]
        values = f" Values: {', '.join(_value_text(v) for v in fact.values)}." if fact.values else ""
        lead = "Absent: " if fact.absent else ""
        lines.append(f"- {lead}{fact.claim}{values} See {span.path}:{span.start}.")
    return "<final_answer>\n" + "\n".join(lines) + "\n</final_answer>"


# ---- judging ---------------------------------------------------------------------------------------


def states_value(statement: str, value: str | float) -> bool:
    """A number matches in any notation (1e-6 = 1e-06 = 0.000001, 1e6 = 1,000,000); a string as a whole word,
    any case, or as the head of a longer identifier (dp_ep in dp_ep_mesh: agents quote the code's names), but
    never inside a longer word (ep is not in epoch, intermediate_size is not in moe_intermediate_size)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        numbers = []
        for token in NUMBER.findall(THOUSANDS.sub("", statement)):
            try:
                numbers.append(float(token))
            except ValueError:
                continue
        return any(math.isclose(n, float(value), rel_tol=1e-9, abs_tol=0.0) for n in numbers)
    return re.search(r"(?<!\w)" + re.escape(str(value)) + r"(?![^\W_])", statement, re.IGNORECASE) is not None


def _inside(citation: Citation, rel: str, span: Span) -> bool:
    """The citation names the span's file and at least half of its lines lie in the span (a whole-file
    range does not count; a range a line or two past the edge does)."""
    if rel != span.path:
        return False
    overlap = min(citation.end, span.end) - max(citation.start, span.start) + 1
    return overlap > 0 and 2 * overlap >= citation.end - citation.start + 1


def judge_fact(fact: Fact, spans: list[Span], parts: list[str], workdir: str | None) -> tuple[bool, str]:
    """(found, why): found when one statement cites inside a region, states every value and, for an absent
    fact, says "absent" (a present fact's statement must not)."""
    near = []
    for statement in parts:
        cited = [(c, checkout_path(c.path, workdir)) for c in parse_citations(statement)]
        hits = [c for c, rel in cited if rel and any(_inside(c, rel, s) for s in spans)]
        if not hits:
            continue
        text = CITATION.sub(" ", statement)
        missing = [_value_text(v) for v in fact.values if not states_value(text, v)]
        says_absent = ABSENT.search(text) is not None
        if not missing and says_absent == fact.absent:
            return True, f"found: cited {', '.join(map(str, hits))}"
        why = (
            f"does not state {', '.join(missing)}"
            if missing
            else "does not say 'absent'"
            if fact.absent
            else "says 'absent', but the key says it exists"
        )
        near.append(f"{', '.join(map(str, hits))} {why}")
    regions = "; ".join(map(str, spans))
    if near:
        return False, f"cited inside its region ({regions}), but the statement at {'; at '.join(near)}"
    return False, f"no statement cites inside its region(s): {regions}"


def grade(
    variant: TaskVariant,
    events: list[dict],
    changed: list[str],
    baseline: Path,
    log_path: Path,
    workdir: str | None = None,
) -> Grade:
    """Judge the agent's final answer in `events` against the variant's key, resolved in `baseline` (the
    checkout the agent started from). `changed` is the workspace diff's files (must be empty); `workdir` is
    the workspace path the agent saw, so absolute citations under it count as repository paths."""
    key = variant.answer_key
    try:
        resolved = resolve_key(key, baseline, variant.answer_key_path)
    except SpecError as e:
        log_path.write_text(redact(f"answer key error: {e}\n"))
        return Grade(resolved=False, error=f"the answer key does not resolve (see grader.log): {e}")
    answer = final_answer(events)
    problems, log = [], []
    if changed:
        problems.append(f"the workspace changed ({', '.join(changed[:10])}); a Q&A task is read-only")
    if answer is None:
        problems.append("no <final_answer>...</final_answer> in the agent's messages")
        answer = ""
    citations = parse_citations(answer)
    bad = [p for p in (citation_problem(c, baseline, workdir) for c in citations) if p]
    problems += [f"citation of a line that does not exist: {p}" for p in bad]
    places = {(checkout_path(c.path, workdir) or c.path, c.start, c.end) for c in citations}
    if len(places) > key.max_citations:
        problems.append(
            f"the answer cites {len(places)} distinct places, more than the {key.max_citations} this question "
            "allows (4 per fact it asks about, plus 8; the instruction says so): cite what you found, not "
            "every candidate"
        )
    parts = statements(answer)
    facts = {}
    for fact in key.facts:
        found, why = judge_fact(fact, resolved[fact.id], parts, workdir)
        facts[fact.id] = "found" if found else why
        log.append(f"fact {fact.id}{'' if fact.required else ' (not required)'}: {why}")
    missed = [f.id for f in key.facts if f.required and facts[f.id] != "found"]
    resolved_ok = not problems and not missed
    verdict = (
        "resolved"
        if resolved_ok
        else f"unresolved ({len(problems)} answer problem(s), required facts missing: {', '.join(missed) or 'none'})"
    )
    log_path.write_text(
        redact(
            f"answer graded against {_shown(variant.answer_key_path)}\n"
            + "".join(f"problem: {p}\n" for p in problems)
            + "\n".join(log)
            + f"\nverdict: {verdict}\n\n--- final answer ---\n{answer}\n"
        )
    )
    return Grade(resolved=resolved_ok, facts=facts, answer_problems=problems)
