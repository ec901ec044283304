"""The browsable report: one self-contained report.html plus one page per trial's trajectory.

Why self-contained: a report is passed around as a CI artifact or an attachment, so figures are
inline base64 PNGs and styles are inline; the only other files are the linked trajectory pages.
Everything that came from a trial (agent text, tool output, diffs) is HTML-escaped.
"""

from __future__ import annotations

import base64
import difflib
import json
import re
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from bench import plots, profile, throughput
from bench.report import (
    CATEGORIES,
    CATEGORY_METRICS,
    GROUPINGS,
    LEVEL_TITLES,
    METRICS,
    THROUGHPUT,
    format_cell,
    format_change,
    format_number,
    format_pass_at_k,
    format_rate,
    format_spread,
    format_trials_noise,
    in_category,
    level_value,
    metric_header,
    not_reported,
    qa_cell,
    qa_matrix,
    shows_families,
    throughput_rows,
    trial_error,
    trial_frame,
    trial_notes,
    with_unit,
)

HEAD_LINES = 40
TAIL_LINES = 20
MAX_LINE_CHARS = 400
MAX_DIFF_LINES = 3000
GRADER_LOG_TAIL = 200
SHELL_TOOLS = {"bash", "shell"}

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d1d1f;max-width:1400px}
*{box-sizing:border-box}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 6px;text-align:left}
th{background:#f3f4f6;vertical-align:bottom}td{vertical-align:top;overflow-wrap:break-word}td.num{text-align:right}
td.long{min-width:16em;max-width:32em;overflow-wrap:anywhere}td.id{white-space:nowrap}
.resolved{color:#1a7f37}.unresolved,.failed,.error{color:#b42318}.interrupted,.running,.missing,.skipped{color:#9a6700}
.figs{display:flex;flex-wrap:wrap;gap:16px}.fig{border:1px solid #eee;padding:6px;flex:1 1 520px;max-width:680px}
.fig img{width:100%;height:auto}.scroll{overflow-x:auto;max-width:100%}
.na{color:#777;font-style:italic}pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:12px;white-space:pre-wrap}
.event{border-left:4px solid #ccc;padding:4px 10px;margin:10px 0}.assistant{border-color:#3b6ea8}
.tool_result{border-color:#4f9a5a}.user,.system{border-color:#999}.error,.limit{border-color:#b42318}
.meta{color:#666;font-size:11px}.add{color:#1a7f37}.del{color:#b42318}.hunk{color:#7d5ba6}.omitted{color:#9a6700}
"""

# Records what a headless browser test checks: every image decoded, and the page's width (horizontal
# overflow) in the window it was opened in.
RENDER_CHECK = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; });
  document.body.setAttribute('data-images-total', String(imgs.length));
  document.body.setAttribute('data-images-rendered', String(ok.length));
  document.body.setAttribute('data-scroll-width', String(document.documentElement.scrollWidth));
  document.body.setAttribute('data-window-width', String(window.innerWidth));
});
</script>
"""


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n{RENDER_CHECK}</body></html>\n"
    )


def img(png: bytes | None, alt: str, missing: str) -> str:
    if png is None:
        return f'<p class="na">{escape(missing)}</p>'
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def trial_page_name(trial: dict) -> str:
    parts = [
        trial.get("run_id") or "run",
        trial["task"].replace("/", "__"),
        trial["framework"],
        trial["agent"],
        str(trial.get("trial")),
    ]
    return re.sub(r"[^A-Za-z0-9._-]", "_", "__".join(parts)) + ".html"


# ---------------------------------------------------------------- report.html


def scroll(table: str) -> str:
    """A wide table scrolls inside its own box; the page itself never scrolls sideways."""
    return f'<div class="scroll">{table}</div>'


def outcome_table(rows: list[dict], level: str) -> str:
    head = (
        "<tr><th>{}</th><th>Framework</th><th>Agent / model</th><th>Trials</th><th>Resolved</th><th>Unresolved</th>"
        "<th>Error</th><th>Incomplete</th><th>Success</th><th>pass@1</th><th>pass@k</th></tr>"
    ).format(LEVEL_TITLES[level])
    body = []
    for r in rows:
        cells = [escape(level_value(r, level)), escape(r["framework"]), escape(f"{r['agent']}/{r['model']}")]
        cells += [str(r[n]) for n in ("n_trials", "n_resolved", "n_unresolved", "n_error", "n_incomplete")]
        cells += [format_rate(r["success_rate"]), format_rate(r["pass_at_1"]), escape(format_pass_at_k(r))]
        body.append(
            "<tr>"
            + "".join(f'<td class="num">{c}</td>' if i >= 3 else f"<td>{c}</td>" for i, c in enumerate(cells))
            + "</tr>"
        )
    return scroll(f"<table>{head}{''.join(body)}</table>")


def summary_table(rows: list[dict], level: str, metrics: list[str] | None = None) -> str:
    """Effort metrics: median [95% CI] with units, change versus the reference framework below; `metrics`
    picks and orders the columns (default: all)."""
    keys = metrics or list(METRICS)
    head = f"<tr><th>{LEVEL_TITLES[level]}</th><th>Framework</th><th>Agent / model</th>"
    head += "".join(f"<th>{escape(metric_header(*METRICS[k]))}</th>" for k in keys) + "</tr>"
    body = []
    for r in rows:
        cells = [escape(level_value(r, level)), escape(r["framework"]), escape(f"{r['agent']}/{r['model']}")]
        for k in keys:
            unit = METRICS[k][1]
            if not_reported(r, k):
                cells.append(f'<span class="na">{escape(not_reported(r, k))}</span>')
                continue
            text = escape(format_cell(r["metrics"][k], unit))
            if r["metrics"][k]["unavailable"]:
                text = f'<span class="na">{text}</span>'
            if k in r["vs_reference"]:
                text += f'<br><span class="meta">{escape(format_change(r["vs_reference"][k]))} vs ref</span>'
            cells.append(text)
        body.append(
            "<tr>"
            + "".join(
                f'<td class="num">{c}</td>' if i >= 3 else f'<td class="id">{c}</td>' for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    return scroll(f"<table>{head}{''.join(body)}</table>")


def qa_matrix_table(matrix: dict) -> str:
    """Q&A across frameworks: a line per topic, a column per framework, per-turn context first."""
    frameworks = matrix["frameworks"]
    head = "<tr><th>Topic</th><th>Agent / model</th>" + "".join(f"<th>{escape(f)}</th>" for f in frameworks)
    body = []
    for line in matrix["lines"]:
        cells = []
        for f in frameworks:
            row = line["cells"].get(f)
            if row is None:
                cells.append('<td class="na">not run</td>')
                continue
            ctx, rest = qa_cell(row).split(" · ", 1)
            cells.append(f'<td class="num"><b class="context">{escape(ctx)}</b><br>{escape(rest)}</td>')
        body.append(
            f'<tr><td class="id">{escape(line["task"])}</td><td class="id">{escape(line["agent"])}/'
            f"{escape(str(line['model']))}</td>{''.join(cells)}</tr>"
        )
    return scroll(f'<table class="qa-matrix">{head}</tr>{"".join(body)}</table>')


def category_sections(summaries: dict[str, list[dict]], reference_framework: str) -> list[str]:
    """One section per category the runs hold (Q&A, operate, build), in ATE-Bench's order."""
    parts = []
    for category, label in CATEGORIES.items():
        tasks = in_category(summaries["task"], category)
        if not tasks:
            continue
        parts.append(f'<h2 id="category-{category}">{escape(label)}</h2>')
        if category == "qa":
            parts += [
                '<p class="meta">Read-only questions graded by the cited answer. No session duration or GPU time '
                "(as in ATE-Bench); the context an agent reads per turn comes first.</p>",
                "<h3>Q&amp;A across frameworks: per-turn context (median) · agent turns (median) · resolved</h3>",
                qa_matrix_table(qa_matrix(summaries["task"], summaries["category"], reference_framework)),
            ]
        if shows_families(category):
            families = in_category(summaries["family"], category)
            parts += [
                "<h3>By task family</h3>",
                outcome_table(families, "family"),
                summary_table(families, "family", CATEGORY_METRICS[category]),
            ]
        parts += [
            "<h3>By task</h3>",
            outcome_table(tasks, "task"),
            summary_table(tasks, "task", CATEGORY_METRICS[category]),
        ]
    return parts


def throughput_table(rows: list[dict]) -> str:
    """Per task: what the post-task benchmark ran, the median, the range of every sample, and whether the
    trials differ by more than that range."""
    shown = throughput_rows(rows)
    if not shown:
        return (
            '<p class="na">No trial measured post-task throughput '
            "(no resolved trial of a task that declares a benchmark).</p>"
        )
    unit = throughput.UNIT
    head = (
        f"<tr><th>Task</th><th>Framework</th><th>Agent / model</th><th>Measured</th><th>Median ({unit})</th>"
        f"<th>Range of all samples ({unit})</th><th>Trials</th><th>Between trials</th><th>Versus other tasks</th></tr>"
    )
    body = []
    for r in shown:
        cell = r["metrics"][THROUGHPUT]
        who = (
            f"<td>{escape(r['task'])}</td><td>{escape(r['framework'])}</td>"
            f"<td>{escape(r['agent'])}/{escape(str(r['model']))}</td>"
        )
        if cell["unavailable"]:
            note = "; ".join(r["throughput_notes"]) or cell["unavailable"]
            body.append(f'<tr>{who}<td class="long na" colspan="6">{escape(note)}</td></tr>')
            continue
        m = cell["median"]
        body.append(
            f"<tr>{who}<td>{escape('; '.join(r['throughput_measured']) or '-')}</td>"
            f'<td class="num">{escape(with_unit(format_number(m, unit), unit))}</td>'
            f'<td class="num">{escape(format_spread(cell, unit))}</td>'
            f'<td class="num">{cell["n"]} trial(s)</td><td>{escape(format_trials_noise(r))}</td>'
            f"<td>{'<br>'.join(escape(v) for v in r['throughput_vs_tasks']) or '-'}</td></tr>"
        )
    return scroll(f"<table>{head}{''.join(body)}</table>")


def trials_table(trials: list[dict]) -> str:
    head = (
        "<tr><th>Run</th><th>Task</th><th>Framework</th><th>Agent / model</th><th>Trial</th><th>Status</th>"
        f"<th>Exit</th><th>Turns</th><th>Throughput ({throughput.UNIT})</th><th>Error / notes</th>"
        "<th>Trajectory</th></tr>"
    )
    body = []
    ordered = sorted(
        trials, key=lambda t: (t["task"], t["framework"], t["agent"], t.get("run_id") or "", t.get("trial") or 0)
    )
    for t in ordered:
        error = trial_error(t)
        lines = (
            [f'<span class="error">{escape(str(error.get("phase")))}: {escape(str(error.get("message")))}</span>']
            if error
            else []
        )
        lines += [f'<span class="meta">{escape(note)}</span>' for note in trial_notes(t)]
        metrics = t.get("metrics") or {}
        turns = metrics.get("agent_turns")
        rate = metrics.get(THROUGHPUT)
        spread = metrics.get("throughput_spread")
        rate_text = "" if rate is None else format_number(rate, throughput.UNIT)
        if rate is not None and spread:
            low, high = (format_number(value, throughput.UNIT, rate) for value in spread[:2])
            rate_text += f" ({low}–{high})"
        body.append(
            f"<tr><td>{escape(str(t.get('run_id')))}</td><td>{escape(t['task'])}</td><td>{escape(t['framework'])}</td>"
            f"<td>{escape(t['agent'])}/{escape(str(t.get('model') or '-'))}</td><td>{escape(str(t.get('trial')))}</td>"
            f'<td class="{escape(t["status"])}">{escape(t["status"])}</td>'
            f"<td>{escape(str(t.get('exit_status') or ''))}</td>"
            f'<td class="num">{"" if turns is None else escape(str(turns))}</td>'
            f'<td class="num">{escape(rate_text)}</td>'
            f'<td class="long">{"<br>".join(lines)}</td>'
            f'<td><a class="trajectory" href="trajectories/{escape(trial_page_name(t))}">view</a></td></tr>'
        )
    return scroll(f"<table>{head}{''.join(body)}</table>")


def profile_table(profiles: list[dict]) -> str:
    head = (
        "<tr><th>Framework</th><th>Path</th><th>Python files</th><th>Python lines</th><th>Tokens to read</th>"
        "<th>Agent guides</th><th>Skills</th><th>Entry point</th></tr>"
    )
    body, tasks = [], []
    for p in profiles:
        body.append(
            f'<tr><td>{escape(p["framework"])}</td><td>{escape(p["path"])}</td><td class="num">{p["python_files"]}</td>'
            f'<td class="num">{p["python_lines"]}</td><td class="num">{p["read_tokens"]}'
            f'<br><span class="meta">{escape(p["token_counter"])}</span></td>'
            f"<td>{escape(', '.join(p['agent_guides']) or 'none')}</td>"
            f"<td>{escape(', '.join(p['skills']) or 'none')}</td>"
            f"<td>{escape(p.get('entry_point') or 'n/a')}</td></tr>"
        )
        for task in p.get("tasks", []):
            depth = profile.depth_text(task)
            tasks.append(
                f"<tr><td>{escape(p['framework'])}</td><td>{escape(task['task'])}</td>"
                f'<td class="num">{task["files_touched"]}</td><td class="num">{task["lines_touched"]}</td>'
                f'<td class="num">{escape(depth)}</td></tr>'
            )
    html = scroll(f"<table>{head}{''.join(body)}</table>")
    if tasks:
        html += "<h3>Gold solutions</h3>" + scroll(
            "<table><tr><th>Framework</th><th>Task</th><th>Files touched</th>"
            f"<th>Lines touched</th><th>Import depth from entry</th></tr>{''.join(tasks)}</table>"
        )
    return html


def mutation_table(rows: list[dict]) -> str:
    body = "".join(
        f"<tr><td>{escape(r['run'])}</td><td>{escape(r['task'])}</td><td>{escape(r['framework'])}</td>"
        f"<td>{r['mutants']}</td><td>{r['killed']}</td><td>{r['survived']}</td><td>{r['errored']}</td>"
        f"<td>{'n/a' if r['score'] is None else format(r['score'], '.0%')}</td></tr>"
        for r in rows
    )
    return scroll(
        "<table><tr><th>Run</th><th>Task</th><th>Framework</th><th>Mutants</th><th>Killed</th>"
        f"<th>Survived</th><th>Errored</th><th>Score</th></tr>{body}</table>"
        "<p class=\"meta\">The survivors' diffs are in each run's survivors.md.</p>"
    )


def report_html(
    run_names: list[str],
    trials: list[dict],
    summaries: dict[str, list[dict]],
    reference_framework: str,
    profiles: list[dict] | None,
    profile_note: str | None,
    mutation: list[dict] | None = None,
) -> str:
    frame = trial_frame(trials)
    task_rows = summaries["task"]
    bars = "".join(
        f'<div class="fig"><h3>{escape(metric_header(label, unit))}</h3>'
        f"{img(plots.metric_bars(task_rows, key), label, _missing_reason(task_rows, key, unit))}</div>"
        for key, (label, unit) in METRICS.items()
    )
    strips = "".join(
        f'<div class="fig"><h3>{escape(metric_header(label, unit))}</h3>'
        + img(
            plots.trial_strip(frame, key, GROUPINGS["task"]),
            label + " per trial",
            _missing_reason(task_rows, key, unit),
        )
        + "</div>"
        for key, (label, unit) in METRICS.items()
    )
    scatter = img(
        plots.throughput_vs_turns(task_rows),
        "throughput vs agent turns",
        "No chart: no task has both a measured post-task throughput and agent turns above zero.",
    )
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<h1>atebench report: {escape(', '.join(run_names))}</h1>",
        f'<p class="meta">Generated {generated}. {len(trials)} trials. Medians with percentile-bootstrap 95% CIs '
        f"(fixed seed) where a row has at least two trials, else the one value with (n=1); changes are versus the "
        f"<b>{escape(reference_framework)}</b> framework. Effort metrics use "
        "trials whose agent session ran to its end; errors count as failures in the success rate; incomplete "
        "trials (interrupted, running, missing) are listed but left out of both. pass@k is per task. Post-task "
        "throughput is the median of repeated benchmark runs of what the task changed; a difference whose "
        "sample ranges overlap is within noise.</p>",
        "<h2>By category</h2>",
        outcome_table(summaries["category"], "category"),
        summary_table(summaries["category"], "category"),
        *category_sections(summaries, reference_framework),
        "<h2>Post-task throughput</h2>",
        throughput_table([r for r in task_rows if r["category"] != "qa"]),
        "<h2>Metrics by task (median; whiskers: 95% CI, or for throughput the range of all samples)</h2>",
        f'<div class="figs">{bars}</div>',
        "<h2>Throughput versus agent turns</h2>",
        f'<div class="fig">{scatter}</div>',
        "<h2>Every trial</h2>",
        f'<div class="figs">{strips}</div>',
    ]
    if mutation:
        parts += ["<h2>Grader mutation score (validate --mutants)</h2>", mutation_table(mutation)]
    if profiles:
        parts += ["<h2>Framework profile (static)</h2>", profile_table(profiles)]
    elif profile_note:
        parts += ["<h2>Framework profile (static)</h2>", f'<p class="na">{escape(profile_note)}</p>']
    parts += ["<h2>Trials</h2>", trials_table(trials)]
    return page("atebench report", "\n".join(parts))


def _missing_reason(rows: list[dict], key: str, unit: str) -> str:
    """The sentence that replaces a chart with nothing to draw."""
    measured = [r for r in rows if not r["metrics"][key]["unavailable"]]
    if measured:  # every value is zero (e.g. agents that call no model use no tokens)
        return f"No chart: every trial recorded 0 {unit}."
    reasons = sorted({re.sub(r"^n/a \((.*)\)$", r"\1", r["metrics"][key]["unavailable"]) for r in rows})
    return f"No chart: no trial has this metric ({'; '.join(reasons) or 'no trial'})."


# ---------------------------------------------------------------- trajectory pages


def head_tail(text: str, head: int = HEAD_LINES, tail: int = TAIL_LINES) -> str:
    """Escaped text keeping the first and last lines of long output, as a terminal user would skim it."""
    lines = [line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " …" for line in str(text).splitlines()]
    if len(lines) <= head + tail:
        return escape("\n".join(lines))
    omitted = len(lines) - head - tail
    return (
        escape("\n".join(lines[:head]))
        + f'\n<span class="omitted">… {omitted} lines omitted …</span>\n'
        + escape("\n".join(lines[-tail:]))
    )


def diff_html(diff: str) -> str:
    lines = diff.splitlines()
    more = len(lines) - MAX_DIFF_LINES
    out = []
    for line in lines[:MAX_DIFF_LINES]:
        css = (
            "hunk"
            if line.startswith("@@")
            else "add"
            if line.startswith("+") and not line.startswith("+++")
            else "del"
            if line.startswith("-") and not line.startswith("---")
            else ""
        )
        out.append(f'<span class="{css}">{escape(line)}</span>' if css else escape(line))
    if more > 0:
        out.append(f'<span class="omitted">… {more} more diff lines in the diff file …</span>')
    return '<pre class="diff">' + "\n".join(out) + "</pre>"


def edit_diff(arguments: dict) -> str | None:
    """A unified diff for a file-editing tool call (old/new strings or whole-file writes); None otherwise."""
    path = arguments.get("path") or arguments.get("file_path") or "file"
    old = next((arguments[k] for k in ("old_str", "old_string", "old") if k in arguments), None)
    new = next((arguments[k] for k in ("new_str", "new_string", "new") if k in arguments), None)
    if old is None and new is None:
        new = next((arguments[k] for k in ("file_text", "content") if k in arguments), None)
        old = "" if new is not None else None
    if not isinstance(old, str) or not isinstance(new, str):
        return None
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), f"a/{path}", f"b/{path}", lineterm="")
    return "\n".join(diff)


def tool_call_html(call: dict) -> str:
    arguments = call.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            arguments = {"raw": arguments}
    arguments = arguments if isinstance(arguments, dict) else {"value": arguments}
    title = f'<div class="meta">tool call <b>{escape(str(call.get("name")))}</b> id {escape(str(call.get("id")))}</div>'
    diff = edit_diff(arguments)
    if diff is not None:
        return title + diff_html(diff)
    command = arguments.get("command")
    if isinstance(command, str) and (call.get("name") in SHELL_TOOLS or set(arguments) == {"command"}):
        return title + f'<pre class="command">$ {head_tail(command)}</pre>'
    return title + f"<pre>{head_tail(json.dumps(arguments, indent=2, default=str))}</pre>"


def usage_line(event: dict) -> str:
    usage = event.get("usage") or {}
    context = sum(usage.get(k) or 0 for k in ("input_tokens", "cache_read_tokens", "cache_write_tokens"))
    cost = event.get("cost_usd")
    return (
        f'<div class="meta usage">input {usage.get("input_tokens", 0)} · output {usage.get("output_tokens", 0)} · '
        f"cache read {usage.get('cache_read_tokens', 0)} · cache write {usage.get('cache_write_tokens', 0)} · "
        f"context {context} · cost {'n/a' if cost is None else f'${cost:.4f}'}</div>"
    )


def event_html(event: dict, start: float) -> str:
    kind = str(event.get("kind"))
    offset = f"+{event['t'] - start:.1f} s" if isinstance(event.get("t"), (int, float)) else ""
    turn = f" · turn {event['turn']}" if "turn" in event else ""
    header = f'<div class="meta">{escape(kind)}{escape(turn)} · {offset}</div>'
    if kind == "assistant":
        text = event.get("content") or ""
        calls = "".join(tool_call_html(c) for c in event.get("tool_calls") or [])
        usage = usage_line(event) if "usage" in event else ""  # a CLI agent's usage is on its llm_call events
        body = (f"<pre>{head_tail(text)}</pre>" if text else "") + calls + usage
    elif kind == "llm_call" and event.get("usage"):  # a CLI agent's turn, as its metering proxy recorded it
        call = f'<div class="meta">{escape(str(event.get("model")))} · HTTP {event.get("status")}</div>'
        body = call + usage_line(event)
    elif kind == "tool_result":
        body = (
            f'<div class="meta">{escape(str(event.get("name")))} · exit {escape(str(event.get("exit_code")))} · '
            f"{event.get('duration_s', 0) or 0:.2f} s</div><pre>{head_tail(event.get('output') or '')}</pre>"
        )
    elif kind in ("system", "user"):
        body = f"<pre>{head_tail(event.get('content') or '')}</pre>"
    else:
        rest = {k: v for k, v in event.items() if k not in ("t", "kind")}
        body = f"<pre>{head_tail(json.dumps(rest, indent=2, default=str))}</pre>"
    return f'<div class="event {escape(kind)}">{header}{body}</div>'


def grade_html(grade: dict | None) -> str:
    if not grade:
        return '<p class="na">Not graded.</p>'
    parts = [
        f'<p>Resolved: <b class="{"resolved" if grade.get("resolved") else "unresolved"}">'
        f"{escape(str(grade.get('resolved')))}</b> · tests run {escape(str(grade.get('tests_run')))}</p>"
    ]
    if grade.get("error"):
        parts.append(f'<p class="error">Grader error: {escape(str(grade["error"]))}</p>')
    if grade.get("facts") or grade.get("answer_problems"):  # a task graded by the agent's answer (Q&A)
        parts += [f'<p class="error">{escape(problem)}</p>' for problem in grade.get("answer_problems") or []]
        facts = grade.get("facts") or {}
        rows = "".join(
            f'<tr><td>{escape(fact)}</td><td class="{"resolved" if why == "found" else "unresolved"}">'
            f"{escape(why)}</td></tr>"
            for fact, why in facts.items()
        )
        found = sum(why == "found" for why in facts.values())
        parts.append(
            f"<h3>Facts of the answer key ({found} of {len(facts)} found)</h3>"
            + scroll(f"<table><tr><th>Fact</th><th>Found, or why not</th></tr>{rows}</table>")
        )
    for title, key in (("Fail-to-pass", "fail_to_pass"), ("Pass-to-pass", "pass_to_pass")):
        tests = grade.get(key) or {}
        rows = "".join(
            f'<tr><td>{escape(name)}</td><td class="{escape(str(o))}">{escape(str(o))}</td></tr>'
            for name, o in tests.items()
        )
        parts.append(
            f"<h3>{title} ({len(tests)})</h3>" + scroll(f"<table><tr><th>Test</th><th>Outcome</th></tr>{rows}</table>")
        )
    rows = "".join(
        f"<tr><td>{escape(t.get('name', ''))}</td>"
        f'<td class="{escape(str(t.get("outcome")))}">{escape(str(t.get("outcome")))}</td>'
        f'<td class="num">{t.get("duration_s", 0) or 0:.2f} s</td></tr>'
        for t in grade.get("tests") or []
    )
    parts.append(
        "<h3>All tests</h3>" + scroll(f"<table><tr><th>Test</th><th>Outcome</th><th>Duration</th></tr>{rows}</table>")
    )
    if grade.get("modified_test_files"):
        parts.append(
            f'<p class="error">The agent modified test files: {escape(", ".join(grade["modified_test_files"]))}</p>'
        )
    return "".join(parts)


def trajectory_html(trial: dict) -> str:
    trial_dir = Path(trial["dir"])
    files = trial.get("files") or {}
    metrics = trial.get("metrics") or {}
    who = f"{trial['agent']}/{trial.get('model') or '-'}"
    title = f"{trial['task']} · {trial['framework']} · {who} · trial {trial.get('trial')}"
    parts = [
        '<p><a href="../report.html">← report</a></p>',
        f"<h1>{escape(title)}</h1>",
        f"<p>Run {escape(str(trial.get('run_id')))} · "
        f'status <b class="{escape(trial["status"])}">{escape(trial["status"])}</b>'
        f" · exit {escape(str(trial.get('exit_status')))} · started {escape(str(trial.get('started_at')))} · "
        f"finished {escape(str(trial.get('finished_at')))}</p>",
    ]
    error = trial_error(trial)
    if error:
        parts.append(
            f'<p class="error">Error in {escape(str(error.get("phase")))}: {escape(str(error.get("message")))}</p>'
        )
    parts += [f'<p class="meta">Note: {escape(note)}</p>' for note in trial_notes(trial)]
    rows = "".join(
        f'<tr><td>{escape(k)}</td><td class="num">{"n/a" if v is None else escape(str(v))}</td></tr>'
        for k, v in metrics.items()
    )
    parts += [f"<h2>Metrics</h2>{scroll(f'<table>{rows}</table>')}", "<h2>Grade</h2>", grade_html(trial.get("grade"))]
    parts.append("<h2>Conversation</h2>")
    events = _read_events(trial_dir, files.get("trajectory"))
    if events is None:
        parts.append('<p class="na">No trajectory was recorded for this trial.</p>')
    else:
        start = next((e["t"] for e in events if isinstance(e.get("t"), (int, float))), 0.0)
        parts += [event_html(e, start) for e in events]
    diff_file = trial_dir / files["diff"] if files.get("diff") else None
    parts.append("<h2>Final diff</h2>")
    if diff_file and diff_file.is_file() and diff_file.read_text(errors="replace").strip():
        parts.append(diff_html(diff_file.read_text(errors="replace")))
    else:
        parts.append('<p class="na">No diff recorded (empty or absent).</p>')
    log = trial_dir / files["grader_log"] if files.get("grader_log") else None
    if log and log.is_file():
        tail = log.read_text(errors="replace").splitlines()[-GRADER_LOG_TAIL:]
        parts.append(f"<h2>Grader log (last {GRADER_LOG_TAIL} lines)</h2><pre>{escape(chr(10).join(tail))}</pre>")
    return page(title, "\n".join(parts))


def _read_events(trial_dir: Path, name: str | None) -> list[dict] | None:
    if not name or not (trial_dir / name).is_file():
        return None
    events = []
    for line in (trial_dir / name).read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            events.append({"kind": "unreadable", "line": line})  # a crash can cut the last line short
    return events


def write_html(
    out_dir: Path,
    run_names: list[str],
    trials: list[dict],
    summaries: dict[str, list[dict]],
    reference_framework: str,
    profiles: list[dict] | None = None,
    profile_note: str | None = None,
    mutation: list[dict] | None = None,
) -> Path:
    """Writes report.html and trajectories/*.html under out_dir; returns the report path."""
    pages = out_dir / "trajectories"
    pages.mkdir(parents=True, exist_ok=True)
    for trial in trials:
        (pages / trial_page_name(trial)).write_text(trajectory_html(trial))
    path = out_dir / "report.html"
    path.write_text(report_html(run_names, trials, summaries, reference_framework, profiles, profile_note, mutation))
    return path
