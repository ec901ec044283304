#!/usr/bin/env bash
# TorchTitan's GPU checks on a lent GPU machine (issue 13; record: docs/validation/). Carried from this checkout
# (git-ignored): .whl/ (the harness's wheels and transformers 5.24.0), .whl/mg/ (transformers' dependencies the
# GPU image lacks), .whl/tt/ (TorchTitan's: datasets, dill, multiprocess, torchdata, tyro, typeguard, tomli, expecttest),
# .carry/ (bubblewrap's .deb; titan-partial.tgz: a depth-1, blob-less clone of the pin checked out but for the
# one blob the mirror lacks, tests/assets/c4_test/data.json, which the override route names as missing).
# From the repo root there:
#   bash scripts/device_torchtitan_checks.sh setup fwthroughput trial
# Steps:
#   setup         machine facts; bubblewrap; the harness's wheels; transformers and TorchTitan's dependencies
#                 into the machine's Python (sandboxes see it, not /tmp/site); the clone
#   fwthroughput  frameworks/torchtitan/framework.toml's throughput command in an export of the pin
#   trial         runner.py --task add-new-model/qwen3_moe --framework torchtitan --agent oracle --gpus 1: grading,
#                 then the post-task throughput of the built model on the trial's GPU (the framework's command)
#   gpuchecks     the GPU rungs every TorchTitan ladder task grades (grader_support/titan_gpu_checks.py) on the pin's
#                 pristine package, at every world this machine's GPUs cover: what each comparison measured
#   validate      runner.py validate --framework torchtitan --task $VTASK --gpus $VGPUS (2), trials sharing the GPUs
#                 (--share-gpus/--parallel $VPAR, 6), run id tt-$VID-<n>; VTASK may name several tasks, comma-separated
#                 (one validate each, all at once); then every trial's verdict, per-id outcomes and grader.log
#                 archive. The GPU tasks: VTASK=enable-ep,add-new-model/qwen3_moe,fix-gradient-bug/router-tp-not-reduced
# Results go to $OUT (the device tool's folder).
# The carried .whl/ and .carry/ are built here by scripts/make_carry.sh (a machine with the package registry).
set -u
source scripts/device_env.sh  # the deadline clock, NCCL settings, bubblewrap, the harness wheels
[ -d /tmp/ttp ] || tar xzf .carry/titan-partial.tgz -C /tmp
export ATEBENCH_SRC_TORCHTITAN=/tmp/ttp
for step in "$@"; do
case $step in
setup)
  # PYTHONPATH holds /tmp/site: pip would count what is there as installed, where sandboxes do not look
  { env -u PYTHONPATH python3 -m pip install -q --no-index --find-links .whl --find-links .whl/mg --find-links .whl/tt \
      transformers==5.24.0 datasets torchdata tyro tomli docstring-parser typeguard expecttest 2>&1 | tail -3
    # a dependency pin the image cannot meet (datasets' pyarrow floor): the carried wheels alone, as they are
    python3 -c 'import datasets, torchdata, tyro, expecttest' 2>/dev/null || env -u PYTHONPATH python3 -m pip install -q --no-index \
      --no-deps .whl/tt/*.whl 2>&1 | tail -3
    echo "# $(date -u '+%F %H:%M UTC') $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | sort | uniq -c | tr -s ' ')"
    echo "# python $(python3 -c 'import sys, torch, transformers, datasets, torchdata, tyro; print(sys.version.split()[0], torch.__version__, "transformers", transformers.__version__, "datasets", datasets.__version__, "torchdata", torchdata.__version__, "tyro", tyro.__version__)'), $(nproc) CPUs, bwrap $(bwrap --version)"
    echo "# commit $(git rev-parse --short HEAD 2>/dev/null) (+ uncommitted: $(git status --short 2>/dev/null | wc -l) files)"
    echo "# torchtitan clone at $(git -C /tmp/ttp rev-parse HEAD)"
  } 2>&1 | tee -a $OUT/setup.txt ;;
fwthroughput)
  [ -d /tmp/tt-run ] || python3 -c '
from pathlib import Path
from bench import sources, specs
missing = sources.export_checkout(Path("/tmp/ttp"), specs.load_framework("torchtitan").source.commit, Path("/tmp/tt-run"))
print("exported; missing:", missing)'
  cmd=$(python3 -c "import tomllib; print(tomllib.load(open('frameworks/torchtitan/framework.toml','rb'))['commands']['throughput'])")
  ( cd /tmp/tt-run && PYTHONPATH=/tmp/tt-run timeout -k 10 $(left) bash -c "$cmd" ) > /tmp/fwthroughput.txt 2>&1
  echo "exit $?" >> /tmp/fwthroughput.txt
  tail -c 5000 /tmp/fwthroughput.txt | tee $OUT/fwthroughput.txt ;;
trial)
  rm -rf results/tt-gpu
  timeout -s INT $(left) python3 runner.py --task add-new-model/qwen3_moe --framework torchtitan --agent oracle --gpus 1 \
      --results-dir results --run-id tt-gpu > /tmp/trial.txt 2>&1
  echo "exit $?" >> /tmp/trial.txt
  grep -v ": grade$\|: agent$\|: setup$" /tmp/trial.txt | tail -40 | tee $OUT/trial.txt
  python3 - <<'PY' 2>&1 | tee -a $OUT/trial.txt
import json, pathlib
for p in sorted(pathlib.Path("results/tt-gpu").glob("**/result.json")):
    r = json.loads(p.read_text())
    g = r.get("grade") or {}
    print(r["task"], r["agent"], r["status"], "phases", r.get("phase_seconds"), "grade error", g.get("error"),
          {k.split("::")[-1]: v for k, v in {**(g.get("fail_to_pass") or {}), **(g.get("pass_to_pass") or {})}.items()})
    print("throughput", json.dumps(r.get("throughput"))[:2500], "notes", r.get("notes"))
PY
  for f in $(find results/tt-gpu -name grader.log | head -2); do echo "=== $f"; tail -c 6000 $f; done | tee -a $OUT/trial.txt
  ;;
validate)
  # VTASK may list several tasks (comma-separated): one validate each, all at once, run ids tt-$VID-<n>
  n=0
  for task in ${VTASK//,/ }; do
    n=$((n + 1)); rm -rf results/tt-${VID:-gpu}-$n
    ( timeout -s INT $(left) python3 runner.py validate --framework torchtitan --task $task --gpus ${VGPUS:-2} \
        --share-gpus ${VPAR:-6} --parallel ${VPAR:-6} --results-dir results --run-id tt-${VID:-gpu}-$n \
        > /tmp/validate-$n.txt 2>&1; echo "exit $?" >> /tmp/validate-$n.txt ) &
  done
  wait
  for i in $(seq 1 $n); do
    grep -v ": grade$\|: agent$\|: setup$" /tmp/validate-$i.txt | tail -40 | tee -a $OUT/validate.txt
  done
  python3 - <<'PY' 2>&1 | tee -a $OUT/validate_trials.txt
import json, pathlib
for p in sorted(pathlib.Path("results").glob("tt-*/**/result.json")):
    r = json.loads(p.read_text())
    g = r.get("grade") or {}
    print(p.parts[1], r["task"], r["agent"], r["status"], "phases", r.get("phase_seconds"), "grade error", g.get("error"),
          {k.split("::")[-1]: v for k, v in {**(g.get("fail_to_pass") or {}), **(g.get("pass_to_pass") or {})}.items()})
PY
  find results -path 'results/tt-*' -name grader.log -print0 | tar czf $OUT/tt_grader_logs.tgz --null -T - ;;
gpuchecks)
  ( PYTHONPATH=/tmp/ttp:$PWD/frameworks/torchtitan/grader_support:$PYTHONPATH timeout -k 10 $(left) python3 -m pytest \
      -q -s -rA -p no:cacheprovider -o addopts="" --timeout 0 frameworks/torchtitan/grader_support/titan_gpu_checks.py \
      ) > /tmp/gpuchecks.txt 2>&1
  echo "exit $?" >> /tmp/gpuchecks.txt
  (grep -E "measured|PASSED|FAILED|SKIPPED|passed|failed|Error" /tmp/gpuchecks.txt | cut -c1-400; tail -c 4000 /tmp/gpuchecks.txt) \
      | tee $OUT/gpuchecks.txt ;;
esac
done
