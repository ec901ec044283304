"""A wheel mirror made from what this interpreter has installed: for an offline host whose Python already holds a
framework's packages but that cannot download their wheels (a GPU machine without network, where torch and its
CUDA libraries are gigabytes). Each distribution of the requirements' closure (their Requires-Dist, extras
followed, markers evaluated for this interpreter) is written back as a wheel from the files its RECORD lists, with
a new RECORD of their hashes; point $ATEBENCH_WHEELS at the folder (task.toml python = "bare" takes it as the
framework's mirror).

    python scripts/wheels_from_installed.py <folder> torch numpy "transformers==5.24.0" ...

The wheels hold the installed files, so they are what this machine runs, not the index's bytes: compiled caches
(__pycache__), console scripts (pip writes them again from entry_points.txt) and the installer's own records
(INSTALLER, REQUESTED, direct_url.json) are left out. A distribution that is missing, or installed without a
RECORD (an editable or a system package), stops the script with its name.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import re
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name

SKIPPED_INFO = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def closure(requirements: list[str]) -> dict[str, md.Distribution]:
    """{canonical name: installed distribution} of the requirements and everything they require here."""
    found: dict[str, md.Distribution] = {}
    extras_done: set[tuple[str, str]] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, via = todo.pop()
        name = canonicalize_name(req.name)
        try:
            dist = found.get(name) or md.distribution(req.name)
        except md.PackageNotFoundError:
            sys.exit(f"wheels_from_installed: {req.name} (required{via}) is not installed in {sys.prefix}")
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            sys.exit(f"wheels_from_installed: {req.name}{req.specifier} is required{via}, {dist.version} is installed")
        first = name not in found
        found[name] = dist
        extras = [""] * first + [e for e in req.extras if (name, e) not in extras_done]
        for extra in extras:
            extras_done.add((name, extra))
            for line in dist.requires or []:
                sub = Requirement(line)
                base = sub.marker is None or sub.marker.evaluate({"extra": ""})
                # the base requirements once; an extra's own ones (true with it, false without) for each extra asked
                if (extra == "" and base) or (extra and not base and sub.marker.evaluate({"extra": extra})):
                    todo.append((sub, f" by {dist.metadata['Name']}{f'[{extra}]' if extra else ''}"))
    return found


def wheel_tag(wheel_text: str) -> str:
    """The file-name tag: the first of the WHEEL file's Tag lines this interpreter accepts (the mirror is for it)."""
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")]
    accepted = {str(tag) for tag in sys_tags()}
    for tag in tags:
        if tag in accepted:
            return tag
    raise ValueError(f"none of the WHEEL tags {tags} fits this interpreter")


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(name: str, folder: str) -> str:
    """Write distribution `name` as a wheel into `folder`; returns the wheel's file name."""
    dist = md.distribution(name)
    if dist.read_text("RECORD") is None or dist.files is None:
        raise SystemExit(f"wheels_from_installed: {name} has no RECORD (an editable or system install): cannot repack")
    # the .dist-info folder (where RECORD lies) and the site-packages its paths are relative to
    info = next(Path(f) for f in dist.files if f.name == "RECORD" and f.parent.name.endswith(".dist-info")).parent
    site = Path(dist.locate_file(""))
    wheel_text = dist.read_text("WHEEL") or ""
    project = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    target = Path(folder) / f"{project}-{dist.version}-{wheel_tag(wheel_text)}.whl"
    record = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as zf:
        for file in dist.files:
            rel = file.as_posix()
            parts = rel.split("/")
            if rel.startswith("../") or "__pycache__" in parts or rel.endswith(".pyc"):
                continue
            if parts[0] == info.name and parts[-1] in SKIPPED_INFO:
                continue
            path = site / rel
            if not path.is_file():
                continue  # listed but gone (a file the package removes at run time)
            data = path.read_bytes()
            entry = zipfile.ZipInfo(rel, date_time=(2020, 1, 1, 0, 0, 0))
            entry.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16  # pip keeps the executable bits
            zf.writestr(entry, data)
            record.append(f"{rel},{_record_hash(data)},{len(data)}")
        record.append(f"{info.name}/RECORD,,")
        entry = zipfile.ZipInfo(f"{info.name}/RECORD", date_time=(2020, 1, 1, 0, 0, 0))
        entry.external_attr = 0o100644 << 16
        zf.writestr(entry, "\n".join(record) + "\n")
    return target.name


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.exit(__doc__)
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    dists = closure(argv[1:])
    with ProcessPoolExecutor() as pool:
        names = list(pool.map(repack, [d.metadata["Name"] for d in dists.values()], [str(folder)] * len(dists)))
    size = sum((folder / n).stat().st_size for n in names)
    print(f"{len(names)} wheels, {size / 2**30:.2f} GiB in {folder}: {', '.join(sorted(names))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
