"""File reads and writes for agent tools, performed by commands inside the sandbox, never by the runner.

Why: an editor that opens agent-chosen paths in the runner process reads and writes the host
(absolute paths, `/proc/self/root`, symlinks out of the workspace). Run as a command in the sandbox, a
read sees only what the agent's shell could see and a write lands only where its shell could write;
the command timeout applies, and only regular files of bounded size are read, so a FIFO or
/dev/zero can neither hang nor bloat the runner.
"""

from __future__ import annotations

import base64
import shlex
import uuid
from collections.abc import Iterable
from pathlib import Path

MAX_READ_BYTES = 2 * 1024 * 1024
WRITE_CHUNK = 48 * 1024  # base64 of one chunk stays well under a single argument's size limit (128 KiB)
_BEGIN, _END = "__ATEBENCH_FILE_BEGIN__", "__ATEBENCH_FILE_END__"


MAX_SPAWN_OUTPUT_BYTES = 256 * 1024 * 1024  # of a spawned process's output on the host; the rest is read and dropped


def copy_output(chunks: Iterable[bytes], path: Path, limit: int | None = None) -> None:
    """Append a spawned process's output to its host file, at most `limit` bytes; then one line saying it was cut,
    and the rest is drained unread so the process never blocks on a full pipe. Why a copy and not the file as the
    process's stdout: any process behind the wall can open /proc/<pid>/fd/1 of another, and with a file there it
    could rewrite or truncate a host file, or fill the host's disk up to the file-size limit."""
    limit = MAX_SPAWN_OUTPUT_BYTES if limit is None else limit
    written = 0
    with open(path, "ab") as out:
        for chunk in chunks:
            if written < limit:
                out.write(chunk[: limit - written])
                out.flush()
                written += min(len(chunk), limit - written)
                if written >= limit:
                    out.write(f"\n[atebench: output cut at {limit} bytes]\n".encode())
                    out.flush()


class SandboxFileError(OSError):
    """The file cannot be read or written as asked; the message says why, for the model to correct."""


def read_file(execute, path: str, timeout: float = 60.0, max_bytes: int = MAX_READ_BYTES) -> str:
    """The text of a regular file of at most `max_bytes`, read by `execute` (a sandbox's execute)."""
    p = shlex.quote(path)
    script = (
        f"if [ ! -e {p} ]; then echo 'no such file'; exit 3; fi; "
        f"if [ ! -f {p} ]; then echo 'not a regular file'; exit 4; fi; "
        f"size=$(stat -L -c %s {p}) || exit 5; "
        f'if [ "$size" -gt {max_bytes} ]; then echo "$size bytes"; exit 6; fi; '
        f"echo {_BEGIN}; head -c {max_bytes} -- {p} | base64 -w0; echo; echo {_END}"
    )
    result = execute(script, timeout, output_limit=max_bytes * 4 // 3 + 4096)
    if result.timed_out:
        raise SandboxFileError(f"{path}: reading timed out after {timeout:g}s")
    if result.exit_code == 3:
        raise FileNotFoundError(f"{path}: no such file")
    if result.exit_code == 4:
        raise SandboxFileError(f"{path}: not a regular file (a directory, a device, a FIFO or a socket)")
    if result.exit_code == 6:
        raise SandboxFileError(
            f"{path}: too large to open in the editor ({result.output.strip()}, limit "
            f"{max_bytes}); view parts with bash (head, sed -n)"
        )
    if result.exit_code != 0 or _BEGIN not in result.output or _END not in result.output:
        raise SandboxFileError(f"{path}: could not be read (exit {result.exit_code}): {result.output[-500:]}")
    encoded = result.output.split(_BEGIN, 1)[1].split(_END, 1)[0]
    return base64.b64decode("".join(encoded.split())).decode(errors="replace")


def write_file(execute, path: str, content: str, timeout: float = 60.0) -> None:
    """Write `content` to `path` through `execute`, in chunks to a staging file, then rename it into place."""
    p = shlex.quote(path)
    staging = shlex.quote(f"{path}.atebench-{uuid.uuid4().hex[:8]}")
    data = content.encode()
    steps = [
        f"if [ -d {p} ]; then echo 'is a directory'; exit 1; fi; mkdir -p -- \"$(dirname -- {p})\" && : > {staging}"
    ]
    steps += [
        f"printf %s '{base64.b64encode(data[i : i + WRITE_CHUNK]).decode()}' | base64 -d >> {staging}"
        for i in range(0, len(data), WRITE_CHUNK)
    ]
    steps.append(f"mv -f -- {staging} {p}")
    for step in steps:
        result = execute(step, timeout)
        if result.exit_code != 0:
            execute(f"rm -f -- {staging}", timeout)
            raise SandboxFileError(
                f"{path}: could not be written (exit {result.exit_code}): {result.output.strip()[-500:]}"
            )
