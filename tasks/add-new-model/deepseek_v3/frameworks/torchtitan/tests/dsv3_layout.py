"""titan_layout.py (the TorchTitan grader support's one-step layout runner) on the tiny DeepSeek-V3 of
dsv3_case.py instead of its Qwen3-MoE. Usage (torchrun): dsv3_layout.py ep2|dp2|one <folder> <max_norm>"""

import sys
from pathlib import Path

import dsv3_case
import titan_layout

if __name__ == "__main__":
    titan_layout.case = dsv3_case  # the runner reads its model through this module
    titan_layout.main(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4:] == ["step"])
