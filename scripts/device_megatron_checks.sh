#!/usr/bin/env bash
# Megatron-LM's GPU checks on a lent GPU machine (issues 14 and 16; record: docs/validation/). Carried from this
# checkout (git-ignored): .whl/ (the harness's wheels), .carry/ (bubblewrap's Debian .deb and
# megatron-partial.tgz: a depth-1, blob-less, sparse clone of the pin with megatron/, pretrain_gpt.py and the MoE
# unit tests checked out, which bench/sources.py's override route exports file by file against the pin's blob
# ids). From the repo root there:
#   bash scripts/device_megatron_checks.sh setup patches validate summary
# Steps:
#   setup     machine facts; the Megatron clone; bubblewrap; the harness's wheels
#   gsmirror  operate/getting-started's wheel mirror, repacked from the machine's Python ($ATEBENCH_WHEELS)
#   hfwheels  transformers (add-new-model's specification and grader) into the machine's Python, from .whl/ and
#             .whl/mg/ (its dependencies the GPU image lacks), so sandboxes see it
#   patches   tasks/operate/make_patches.py --framework megatron for routing-trace and heavy-kernels (GPU golds)
#   validate  runner.py validate --framework megatron --task $VTASK (operate) --gpus $VGPUS (1) --share-gpus and --parallel $VPAR (6), VRUNS
#             runs at once, run ids megatron-$VID-<n>; the 2-GPU build tasks: VTASK=enable-ep VGPUS=2 (or fix-gradient-bug)
#   smoke     one GPU, for the 2-GPU build tasks: enable-ep's restored (1, 1) dispatcher ids on the gold; the hidden
#             modules collect, their 2-GPU checks skip with the reason and validate_args checks pass; one pretrain_gpt.py
#             run of the fix-gradient-bug layout checks (their one-GPU reference) through the hooks
#   fwtest    frameworks/megatron/framework.toml's test command in a copy of the pinned tree
#   fwids     per-id outcomes of Megatron's MoE unit tests at this machine's GPU count (FWIDS_K: a -k filter)
#   throughput  its throughput command there
#   summary   every trial's verdict and grading times
# Results go to $OUT (the device tool's folder).
# The carried .whl/ and .carry/ are built here by scripts/make_carry.sh (a machine with the package registry).
set -u
source scripts/device_env.sh  # the deadline clock, NCCL settings, bubblewrap, the harness wheels
[ -d /tmp/mgp ] || tar xzf .carry/megatron-partial.tgz -C /tmp
export ATEBENCH_SRC_MEGATRON=/tmp/mgp
RES=results
prep_tree() {  # an export of the pinned tree with the dataset helper built, at /tmp/mg-run
  [ -d /tmp/mg-run ] && return
  python3 - <<'PY'
import sys
from pathlib import Path
sys.path[:0] = ["frameworks/megatron/grader_support"]
from bench import sources, specs
import megatron_run
fw = specs.load_framework("megatron")
sources.export_checkout(Path("/tmp/mgp"), fw.source.commit, Path("/tmp/mg-run"))
megatron_run.build_dataset_helper(Path("/tmp/mg-run"))
PY
  mkdir -p /opt/data && touch /opt/data/.keep  # Megatron's unit-test conftest downloads into an empty /opt/data
}
run_fw_command() {  # $1: test | throughput, from frameworks/megatron/framework.toml, run in /tmp/mg-run
  prep_tree
  local cmd
  cmd=$(python3 -c "import tomllib; print(tomllib.load(open('frameworks/megatron/framework.toml','rb'))['commands']['$1'])")
  ( cd /tmp/mg-run && CUDA_DEVICE_MAX_CONNECTIONS=1 timeout -k 10 $(left) bash -c "$cmd" )
}
for step in "$@"; do
case $step in
setup)
  { echo "# $(date -u '+%F %H:%M UTC') $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | sort | uniq -c | tr -s ' ')"
    echo "# python $(python3 -c 'import sys, torch; print(sys.version.split()[0], torch.__version__)'), $(nproc) CPUs, bwrap $(bwrap --version), $(g++ --version | head -1)"
    echo "# commit $(git rev-parse --short HEAD 2>/dev/null) (+ uncommitted: $(git status --short 2>/dev/null | wc -l) files)"
    echo "# megatron clone at $(git -C /tmp/mgp rev-parse HEAD)"
    python3 -c 'import einops, packaging, pybind11, pytest; print("# einops", einops.__version__, "pybind11", pybind11.__version__, "pytest", pytest.__version__)'
  } 2>&1 | tee -a $OUT/setup.txt ;;
hfwheels)
  # PYTHONPATH holds /tmp/site: pip would count what is there as installed, where sandboxes do not look
  { env -u PYTHONPATH python3 -m pip install -q --no-index --find-links .whl --find-links .whl/mg transformers==5.24.0 \
      || env -u PYTHONPATH python3 -m pip install -q --break-system-packages --no-index --find-links .whl --find-links .whl/mg transformers==5.24.0
    env -u PYTHONPATH python3 -c 'import transformers; print("# transformers", transformers.__version__, "in the machine python")'
  } 2>&1 | tail -5 | tee -a $OUT/setup.txt ;;
gsmirror)
  # getting-started's wheel mirror from the machine's own Python (no network, and torch with its CUDA libraries is
  # gigabytes): framework.toml's python_packages and their closure, repacked; validate then takes $ATEBENCH_WHEELS
  reqs=$(python3 -c "import tomllib; print(' '.join(tomllib.load(open('frameworks/megatron/framework.toml','rb'))['sandbox']['python_packages']))")
  env -u PYTHONPATH python3 scripts/wheels_from_installed.py /tmp/mirror $reqs 2>&1 | cut -c1-3000 | tee -a $OUT/setup.txt
  export ATEBENCH_WHEELS=/tmp/mirror ;;
patches)
  for t in ${PATCH_TASKS:-routing-trace:tokens-in-megatrons-s-b-order.patch heavy-kernels:includes-a-warm-up-step.patch}; do
    ( timeout -k 10 $(left) python3 tasks/operate/make_patches.py operate/${t%%:*} ${t#*:} --framework megatron 2>&1 \
        | tail -c 12000 ) &
  done
  wait
  tar czf $OUT/patches.tgz tasks/operate/*/frameworks/megatron/solution.patch tasks/operate/*/frameworks/megatron/wrong/*.patch
  tar tzvf $OUT/patches.tgz ;;
validate)
  # VRUNS validate runs at once on the one GPU (each oracle trial of each run is one rerun of the gold)
  rm -rf $RES/megatron-${VID:-operate}-*
  for i in $(seq ${VRUNS:-1}); do
    ( timeout -s INT $(left) python3 runner.py validate --framework megatron --task ${VTASK:-operate} --gpus ${VGPUS:-1} \
        --share-gpus ${VPAR:-6} --parallel ${VPAR:-6} --results-dir $RES --run-id megatron-${VID:-operate}-$i > /tmp/validate-${VID:-operate}-$i.txt 2>&1 ) &
  done
  wait
  for i in $(seq ${VRUNS:-1}); do echo "== validate ${VID:-operate} run $i"; grep -v ": grade$\|: agent$\|: setup$" /tmp/validate-${VID:-operate}-$i.txt; done \
      | tee -a $OUT/validate.txt ;;
fwtest)
  run_fw_command test > /tmp/fwtest.txt 2>&1; (head -c 6000 /tmp/fwtest.txt; echo ...; tail -c 6000 /tmp/fwtest.txt) | tee $OUT/fwtest.txt ;;
fwids)
  # per-id outcomes of Megatron's own MoE unit tests on this machine's GPUs, to select the ids the test command runs
  prep_tree
  ( cd /tmp/mg-run && CUDA_DEVICE_MAX_CONNECTIONS=1 timeout -k 10 $(left) torchrun --standalone --nproc_per_node 1 -m pytest \
      -q -rA -p no:cacheprovider tests/unit_tests/transformer/moe/test_routers.py \
      tests/unit_tests/transformer/moe/test_a2a_token_dispatcher.py tests/unit_tests/transformer/moe/test_token_dispatcher.py \
      tests/unit_tests/transformer/moe/test_moe_layer.py ${FWIDS_K:+-k "$FWIDS_K"} ) > /tmp/fwids.txt 2>&1
  grep -E "^(PASSED|FAILED|ERROR|SKIPPED)|passed|failed" /tmp/fwids.txt | cut -c1-300 | tee $OUT/fwids.txt ;;
smoke)
  prep_tree
  rm -rf /tmp/mg-run/grader_tests && mkdir /tmp/mg-run/grader_tests
  cp tasks/enable-ep/frameworks/megatron/tests/*.py frameworks/megatron/grader_support/megatron_parallel.py \
     frameworks/megatron/grader_support/megatron_layout_checks.py /tmp/mg-run/grader_tests/
  ( timeout -k 10 $(left) python3 - <<'PY' ) 2>&1 | tail -c 20000 | tee $OUT/smoke.txt
import os, subprocess, sys, tomllib
from pathlib import Path
grading = tomllib.load(open("tasks/enable-ep/frameworks/megatron/grading.toml", "rb"))
own = [t for t in grading["fail_to_pass"] + grading["pass_to_pass"] if t.startswith("tests/")]
tree, env = Path("/tmp/mg-run"), {**os.environ, "CUDA_DEVICE_MAX_CONNECTIONS": "1"}
command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "pytest",
           "-q", "-rA", "-p", "no:cacheprovider", "--rootdir=.", *own, "grader_tests/test_expert_parallel.py",
           "grader_tests/megatron_layout_checks.py"]
out = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True).stdout
print("\n".join(line[:300] for line in out.splitlines() if line.startswith(("PASSED", "FAILED", "ERROR", "SKIPPED"))
                or " passed" in line or " failed" in line))
sys.path.insert(0, str(tree / "grader_tests"))
import megatron_layout_checks as checks, megatron_parallel as mp
run = mp.pretrain(tree, Path("/tmp/smoke-one-gpu"), checks.FLAGS, 1, capture=1, pad=True)
print("one-GPU reference run: exit", run.returncode, run.failure()[-3000:])
print("metrics", run.metrics)
print(len(run.grads), "gradients captured, replica mismatches:", run.replica_mismatches)
PY
  ;;
throughput)
  run_fw_command throughput 2>&1 | tail -30 | tee $OUT/throughput.txt ;;
summary)
  python3 - <<'PY' 2>&1 | tee $OUT/validate_trials.txt
import json, pathlib
for p in sorted(pathlib.Path("results").glob("megatron-*/**/result.json")):
    r = json.loads(p.read_text())
    g = r.get("grade") or {}
    err = (r.get("error") or {}).get("message", "")[:600]
    print(p.parts[1], r["task"], r["agent"], r["status"], "phases", r.get("phase_seconds"), err, g.get("error"),
          {k.split("::")[-1]: v for k, v in {**(g.get("fail_to_pass") or {}), **(g.get("pass_to_pass") or {})}.items()})
PY
  # every trial's grader.log (what each comparison measured), one archive: the device tool brings back few files
  find results -path 'results/megatron-*' -name grader.log -print0 | tar czf $OUT/grader_logs.tgz --null -T - ;;
esac
done
