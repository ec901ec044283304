"""The built-in agent's tools: `bash`, a file editor, and `submit`; specs plus their execution.

Why these three: a shell is enough to explore and test, a structured editor avoids fragile sed/heredoc
edits of large files, and an explicit `submit` makes "done" a decision the trial records.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from dataclasses import dataclass

from bench.llm import ToolCall, ToolSpec
from bench.types import Sandbox, truncate

BASH = ToolSpec(
    name="bash",
    description="Run one bash command in the workspace's persistent shell (cwd and env persist between calls). "
    "Long output is cut in the middle. Do not start interactive programs.",
    parameters={
        "type": "object",
        "properties": {"command": {"type": "string", "description": "the command to run"}},
        "required": ["command"],
    },
)
EDIT = ToolSpec(
    name="str_replace_based_edit_tool",
    description="View, create or edit a file. view: show a file with line numbers (optionally view_range [start, end]) "
    "or list a directory. create: write file_text to path. str_replace: replace old_str, which must "
    "occur exactly once, by new_str. Relative paths are relative to the workspace.",
    parameters={
        "type": "object",
        "properties": {
            "command": {"type": "string", "enum": ["view", "create", "str_replace"]},
            "path": {"type": "string"},
            "file_text": {"type": "string", "description": "create: the whole file"},
            "old_str": {"type": "string", "description": "str_replace: exact text to replace"},
            "new_str": {"type": "string", "description": "str_replace: replacement text"},
            "view_range": {
                "type": "array",
                "items": {"type": "integer"},
                "description": "view: [first, last] line, 1-based",
            },
        },
        "required": ["command", "path"],
    },
)
SUBMIT = ToolSpec(
    name="submit",
    description="Call once the task is done and verified. Ends the session; the workspace (or answer) is graded.",
    parameters={
        "type": "object",
        "properties": {"summary": {"type": "string", "description": "what you changed, or your answer to a question"}},
    },
)
TOOLS = [BASH, EDIT, SUBMIT]


@dataclass
class ToolResult:
    output: str
    exit_code: int
    duration_s: float


def run_tool(call: ToolCall, sandbox: Sandbox, timeout_s: float, max_output_chars: int) -> ToolResult:
    """Execute one tool call; bad arguments come back as an error observation, not an exception."""
    started = time.monotonic()
    if "_unparsed_arguments" in call.arguments:
        output, code = f"error: the arguments are not a JSON object: {call.arguments['_unparsed_arguments']!r}", 2
    elif call.name == "bash":
        output, code = _bash(call.arguments, sandbox, timeout_s)
    elif call.name == "str_replace_based_edit_tool":
        output, code = _edit(call.arguments, sandbox, timeout_s)
    else:
        output, code = f"error: unknown tool {call.name!r}; available: bash, str_replace_based_edit_tool, submit", 2
    return ToolResult(truncate(output, max_output_chars), code, time.monotonic() - started)


def _bash(args: dict, sandbox: Sandbox, timeout_s: float) -> tuple[str, int]:
    command = args.get("command")
    if not isinstance(command, str) or not command.strip():
        return "error: bash needs a non-empty 'command' string", 2
    result = sandbox.execute(command, timeout=timeout_s)
    output = result.output
    if result.timed_out and "timed out" not in output[-500:]:
        output += f"\n[command timed out after {timeout_s:g} s and was killed]"
    return f"{output}\n[exit code {result.exit_code}]", result.exit_code


def _edit(args: dict, sandbox: Sandbox, timeout_s: float) -> tuple[str, int]:
    command, path = args.get("command"), args.get("path")
    if not isinstance(path, str) or not path:
        return "error: the editor needs a 'path'", 2
    shown, path = path, posixpath.normpath(posixpath.join(sandbox.workdir, path))
    try:
        if command == "view":
            return _view(sandbox, path, args.get("view_range"), timeout_s)
        if command == "create":
            if not isinstance(args.get("file_text"), str):
                return "error: create needs 'file_text'", 2
            sandbox.write_file(path, args["file_text"])
            return f"created {shown}", 0
        if command == "str_replace":
            return _str_replace(sandbox, path, shown, args.get("old_str"), args.get("new_str", ""))
    except Exception as e:  # the model sees what went wrong and can correct itself
        return f"error: {command} {shown}: {type(e).__name__}: {e}", 1
    return f"error: unknown editor command {command!r}; use view, create or str_replace", 2


def _view(sandbox: Sandbox, path: str, view_range, timeout_s: float) -> tuple[str, int]:
    listing = sandbox.execute(
        f"test -d {shlex.quote(path)} && find {shlex.quote(path)} -maxdepth 2 -not -path '*/.*' | sort",
        timeout=timeout_s,
    )
    if listing.exit_code == 0:
        return listing.output, 0
    lines = sandbox.read_file(path).splitlines()
    first, last = 1, len(lines)
    if view_range:
        first, last = int(view_range[0]), int(view_range[1]) if int(view_range[1]) > 0 else len(lines)
    return "\n".join(f"{n:6d}\t{line}" for n, line in enumerate(lines[first - 1 : last], start=first)), 0


def _str_replace(sandbox: Sandbox, path: str, shown: str, old: str | None, new: str) -> tuple[str, int]:
    if not old:
        return "error: str_replace needs a non-empty 'old_str'", 2
    text = sandbox.read_file(path)
    count = text.count(old)
    if count != 1:
        return f"error: old_str occurs {count} times in {shown}; it must occur exactly once (add surrounding lines)", 1
    sandbox.write_file(path, text.replace(old, new, 1))
    return f"edited {shown}", 0
