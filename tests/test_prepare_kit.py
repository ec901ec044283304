"""bench/prepare_kit.py: a prepare step's edits fail loudly when the framework moved under them."""

from __future__ import annotations

import hashlib
import sys

import pytest

from bench import prepare_kit, specs, workspace
from bench.prepare_kit import Checkout

MODULE = """import os


@decorated
def gone(a):
    return a


def kept():
    return 1
"""


def checkout(tmp_path) -> Checkout:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(MODULE)
    (tmp_path / "README.md").write_text("intro\nrun: python -m pkg --feature\nend\n")
    return Checkout(tmp_path)


def test_edits_apply_once_and_a_missing_or_repeated_anchor_exits_naming_the_file(tmp_path):
    ck = checkout(tmp_path)
    ck.edit("pkg/mod.py", "import os\n", "import sys\n")
    assert (tmp_path / "pkg" / "mod.py").read_text().startswith("import sys\n")
    with pytest.raises(SystemExit, match=r"pkg/mod.py, found 0:\nimport os"):
        ck.edit("pkg/mod.py", "import os\n")
    with pytest.raises(SystemExit, match=r"found 2:\n\n\n"):
        ck.edit("pkg/mod.py", "\n\n")
    with pytest.raises(SystemExit, match="pkg/none.py does not exist"):
        ck.edit("pkg/none.py", "x")
    with pytest.raises(SystemExit, match="not found once each, in order"):
        ck.cut("pkg/mod.py", "def kept", "def gone")


def test_drop_functions_drop_lines_and_the_leak_check(tmp_path):
    ck = checkout(tmp_path)
    ck.drop_functions("pkg/mod.py", ["gone"])
    assert (tmp_path / "pkg" / "mod.py").read_text() == "import os\n\n\ndef kept():\n    return 1\n"
    with pytest.raises(SystemExit, match="has no function gone"):
        ck.drop_functions("pkg/mod.py", ["gone"])
    with pytest.raises(SystemExit, match=r"still contains .* in: README.md"):
        ck.leak_check(r"--feature")
    assert ck.drop_lines([tmp_path / "README.md"], r"--feature") == [tmp_path / "README.md"]
    assert (tmp_path / "README.md").read_text() == "intro\nend\n"
    ck.leak_check(r"--feature")  # nothing left: returns
    ck.leak_check(r"kept", skip_parts=("pkg",))


def test_changing_the_kit_re_prepares_every_task(tmp_path, monkeypatch):
    """prepare.py imports the kit, so the prepared-checkout cache key must cover it."""
    variant = specs.load_variant(specs.load_task("smoke"), "reference")
    framework = specs.load_framework("reference")
    before = workspace.prepared_key(variant, framework, "v1")
    edited = tmp_path / "prepare_kit.py"
    edited.write_text(prepare_kit.__doc__ + "\n# changed\n")
    monkeypatch.setattr(workspace, "PREPARE_KIT", edited)
    assert workspace.prepared_key(variant, framework, "v1") != before


def test_import_pinned_imports_only_the_pinned_text(tmp_path, monkeypatch):
    """A prepare step's shared module (tests/, grader_support/) is pinned by digest: the cache key does not
    hash it, so an edit must fail until prepare.py names the new digest, and the message gives it."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    module = tmp_path / "tests" / "pinned_run_module.py"
    module.parent.mkdir()
    module.write_text("VALUE = 1\n")
    digest = hashlib.sha256(module.read_bytes()).hexdigest()
    module.write_text("VALUE = 2\n")
    edited = hashlib.sha256(module.read_bytes()).hexdigest()
    with pytest.raises(SystemExit, match=f"tests/pinned_run_module.py changed; its sha256 is now {edited}: update"):
        prepare_kit.import_pinned(module, digest)
    try:
        assert prepare_kit.import_pinned(module, edited).VALUE == 2
    finally:
        sys.modules.pop("pinned_run_module", None)
