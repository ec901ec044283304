"""Hidden checks for fix-gradient-bug / ep-expert-grads-scaled on TorchTitan: the shared layout checks
(frameworks/torchtitan/grader_support/titan_layout_checks.py, placed beside this file)."""

from titan_layout_checks import *  # noqa: F401,F403 - pytest collects the imported checks and fixtures here
