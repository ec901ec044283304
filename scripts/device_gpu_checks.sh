#!/usr/bin/env bash
# The reference's GPU checks on a lent GPU machine (issue 18; records: docs/validation/2026-11-30-h200x4-gpu-ladder.md,
# 2026-12-01-reference-gpu-validate-h200.md): every `pytest -m gpu` id at once, `validate --gpus N --share-gpus K`,
# and the ep1/ep2/ep4 bench. Carried from this checkout (git-ignored): .whl/ (the harness's wheels and transformers
# 5.24.0: the graders' ids are made with it) and .carry/ (bubblewrap's Debian .deb). From the repo root there, on a
# 4-GPU machine in two calls of under 10 minutes each (all of it at once outran one call):
#   DEADLINE=560 bash scripts/device_gpu_checks.sh setup gputests bench
#   VTASK=add-new-model,enable-ep,fix-gradient-bug,operate,smoke,qa VGPUS=4 VSHARE=24 DEADLINE=560 \
#       bash scripts/device_gpu_checks.sh setup validate summary
# (at --gpus 1 on one H200, each GPU-graded family's validate took 4-5 minutes with its trials all at once)
# Steps: setup gputests cputests harness pytest validate resume bench summary. Results go to $OUT (the device tool's folder).
# The carried .whl/ and .carry/ are built here by scripts/make_carry.sh (a machine with the package registry).
set -u
source scripts/device_env.sh  # the deadline clock, NCCL settings, bubblewrap, the harness wheels
# transformers into the machine's own Python too (PYTHONPATH unset: pip would count /tmp/site's copy as installed):
# the sandboxed graders do not see /tmp/site
ls .whl/transformers-*.whl >/dev/null 2>&1 && env -u PYTHONPATH python3 -m pip install -q --no-index --no-deps --no-cache-dir .whl/transformers-*.whl
export PYTHONPATH=/tmp/site  # not the checkout: reference_impl runs its own tests package
RES=results
for step in "$@"; do
case $step in
setup)
  { echo "# $(date -u '+%F %H:%M UTC') $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | sort | uniq -c | tr -s ' ')"
    echo "# python $(python3 -c 'import sys, torch, transformers; print(sys.version.split()[0], torch.__version__, transformers.__version__)'), $(nproc) CPUs, bwrap $(bwrap --version)"
    echo "# commit $(git rev-parse --short HEAD 2>/dev/null) (+ uncommitted: $(git status --short 2>/dev/null | wc -l) files)"
    nvidia-smi topo -m
  } 2>&1 | tee -a $OUT/setup.txt ;;
gputests)
  # every GPU test id in its own pytest, all at once: a hang or failure in one cannot hide the others
  mkdir -p /tmp/gt; i=0
  ( cd reference_impl && python3 -m pytest -m gpu --collect-only -q -p no:cacheprovider 2>/dev/null | grep "::" | grep "${GTK:-::}" ) > /tmp/gt/ids
  while read -r id; do i=$((i+1))
    ( cd reference_impl && NCCL_DEBUG=WARN timeout -k 10 -s INT 190 python3 -m pytest "$id" -v --tb=long -p no:cacheprovider \
        -o faulthandler_timeout=170 > /tmp/gt/$i.log 2>&1; echo "exit $?" >> /tmp/gt/$i.log ) &
  done < /tmp/gt/ids
  wait
  for f in $(ls /tmp/gt/*.log | sort -V); do echo "=== $f: $(sed -n ${f//[^0-9]/}p /tmp/gt/ids)"; cat $f; done > $OUT/pytest_gpu.txt
  grep -h "PASSED\|FAILED\|SKIPPED\|^exit" /tmp/gt/*.log ;;
cputests)
  # the trainer's own suite as the README runs it, on a host whose GPUs are visible (graders run it so at --gpus N)
  ( cd reference_impl && timeout -s INT $(left) python3 -m pytest -q -p no:cacheprovider 2>&1 ) > $OUT/pytest_cpu.txt
  tail -15 $OUT/pytest_cpu.txt ;;
harness)
  # the harness's own suite on a GPU host: the README's first half (slow ones left out), and beside it, in their own
  # pytests, the slow reference/operate task runs (their graders see the GPU, as a user's would)
  H="timeout -s INT $(left) env PYTHONPATH=/tmp/site:$PWD:$PWD/reference_impl python3 -m pytest -p no:cacheprovider -rs"
  $H -m slow tests/test_tasks_reference.py > $OUT/pytest_harness_slow_reference.txt 2>&1 &
  $H -m slow tests/test_tasks_operate.py -k "not torchtitan" > $OUT/pytest_harness_slow_operate.txt 2>&1 &
  $H -q > $OUT/pytest_harness.txt 2>&1
  wait
  tail -n 25 $OUT/pytest_harness*.txt ;;
pytest)
  ( cd reference_impl && timeout 240 python3 -m pytest -m gpu -q -rs -p no:cacheprovider 2>&1 ) | tee $OUT/pytest_gpu.txt ;;
validate)
  # VTASK may list several tasks or families (comma-separated): one validate each, all at once, run ids gpu4-<n>
  n=0
  for task in ${VTASK//,/ }; do
    n=$((n + 1)); rm -rf $RES/gpu4-$n
    ( timeout -s INT $(left) python3 runner.py validate --framework reference --task $task --gpus ${VGPUS:-4} \
        --share-gpus ${VSHARE:-24} --parallel 24 --results-dir $RES --run-id gpu4-$n > /tmp/validate-$n.txt 2>&1
      echo "exit $?" >> /tmp/validate-$n.txt ) &
  done
  wait
  for i in $(seq 1 $n); do grep -v ": grade$\|: agent$\|: setup$" /tmp/validate-$i.txt | tee -a $OUT/validate.txt; done ;;
resume)
  for run in $(ls -d $RES/gpu4-* 2>/dev/null); do
    timeout -s INT $(left) python3 runner.py validate --results-dir $RES --run-id ${run##*/} --resume --parallel 24 2>&1 \
        | grep -v ": grade$\|: agent$\|: setup$" | tee -a $OUT/validate.txt
  done ;;
bench)
  cd reference_impl
  export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
  B="-m reftrain.bench examples/bench_qwen3_30b_a3b_4l.toml --warmup 4 --steps 10"
  T="timeout -k 5 110"
  { echo "== ep1 (1 GPU, global batch 4)"; CUDA_VISIBLE_DEVICES=0 $T python3 $B 2>&1 | tail -3
    echo "== ep2 (2 GPUs, global batch 8)"; CUDA_VISIBLE_DEVICES=0,1 $T torchrun --standalone --nproc-per-node=2 $B --parallel.ep=2 --data.global_batch_size=8 2>&1 | tail -3
    echo "== ep4 (4 GPUs, global batch 16)"; $T torchrun --standalone --nproc-per-node=4 $B --parallel.ep=4 --data.global_batch_size=16 2>&1 | tail -3
  } 2>&1 | tee $OUT/bench_ep.txt
  cd .. ;;
summary)
  python3 - <<'PY' 2>&1 | tee $OUT/validate_trials.txt
import json, pathlib
for p in sorted(pathlib.Path("results").glob("gpu4-*/**/result.json")):
    r = json.loads(p.read_text())
    g = r.get("grade") or {}
    gpu = {k.split("::")[-1]: v for k, v in {**(g.get("fail_to_pass") or {}), **(g.get("pass_to_pass") or {})}.items() if "gpu" in k}
    err = (r.get("error") or {}).get("message", "")[:300]
    print(r["task"], r["agent"], r["status"], "gpus", r["metrics"].get("gpus"), "grade_s", r.get("phase_seconds", {}).get("grade"), err, gpu)
PY
  tar czf $OUT/gpu4_results.tgz --exclude='*.pt' --exclude='*.safetensors' --exclude='*.npz' results/gpu4-* 2>/dev/null; ls -la $OUT ;;
esac
done
