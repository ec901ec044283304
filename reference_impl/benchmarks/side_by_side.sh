#!/bin/bash
# Throughput of reftrain and TorchTitan 0.2.2 on the same GPU, in ONE run, on the same two shapes
# (Qwen3-30B-A3B and DeepSeek-V3-16B, 4 layers each, batch 4 x seq 4096, bf16).
#
#   bash reference_impl/benchmarks/side_by_side.sh KIT_DIR [PHASES]        (from the repo root, on a GPU machine)
#
# KIT_DIR (or $TT_KIT): the TorchTitan anchor kit set up as its run_tt022.sh header says: its tt022/ folder,
#   wheels in whl/ and whl022/, data/ and tokenizer/ from make_assets.py. It is not part of this repo.
# PHASES (default: all but ladder and attn), any of:
#   ladder                  the GPU correctness ladder (pytest tests/test_ladder.py -k gpu)
#   attn                    SDPA backends on both shapes (benchmarks/attention_backends.py)
#   ours_<shape>[_<var>]    reftrain.bench; var: noac (default) | mbs2 (2 micro-batches of 2) | ac (full per-layer AC)
#   tt_<shape>_<var>        TorchTitan; var: sac (its config: selective per-op AC) | noac
#   where <shape> is qwen or dsv3.
# Env: OUT (logs; default /tmp/side_by_side), BUDGET_S (stop starting phases after this many seconds, default 470),
#   TT_STEPS (default 20), OUR_WARMUP (default 4), OUR_STEPS (default 10), PROFILE=1 (kernel table of one step).
# Prints the tail of each phase's log, then the table of benchmarks/summarize.py; writes $OUT/summary.md and
# every full log in $OUT/logs.tgz.
set -u
KIT=${1:-${TT_KIT:-}}
PHASES=${2:-"tt_qwen_sac tt_dsv3_sac tt_dsv3_noac ours_qwen ours_dsv3"}
[ -n "$KIT" ] && [ -d "$KIT/tt022" ] || { echo "error: pass the TorchTitan kit folder (with tt022/, whl/, whl022/) as the first argument or TT_KIT" >&2; exit 2; }
KIT=$(cd "$KIT" && pwd)
HERE=$(cd "$(dirname "$0")/.." && pwd)   # reference_impl/
OUT=${OUT:-/tmp/side_by_side}; LOGS=$(mktemp -d /tmp/side_by_side_logs.XXXX); mkdir -p "$OUT"
BUDGET_S=${BUDGET_S:-470}; TT_STEPS=${TT_STEPS:-20}; OUR_WARMUP=${OUR_WARMUP:-4}; OUR_STEPS=${OUR_STEPS:-10}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME=/tmp/hf TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True   # TorchTitan's run_train.sh default; same for both

echo "# side_by_side $(date -u +%Y-%m-%dT%H:%MZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
echo "# torch $(python3 -c 'import torch; print(torch.__version__)') phases: $PHASES"

install_torchtitan() {
    [ -d /tmp/site022/torchtitan ] && return 0
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site022 \
        "$KIT"/whl022/torchtitan-0.2.2-py3-none-any.whl $(ls "$KIT"/whl/*.whl | grep -v -e torchtitan- -e spmd_types)
}

phase() {  # name, time limit (s), command...
    local name=$1 lim=$2; shift 2
    local left=$((BUDGET_S - SECONDS))
    [ $left -lt 45 ] && { echo "=== SKIP $name (${left}s of the budget left)"; return 1; }
    [ $lim -gt $left ] && lim=$left
    echo "=== $name (limit ${lim}s, at ${SECONDS}s): $*"
    timeout "$lim" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    grep -v -e Warning -e warn "$LOGS/$name.log" | tail -n 25
    echo "=== $name rc=$rc after ${SECONDS}s"
    return $rc
}

ours() {  # shape, variant
    local toml=$HERE/examples/bench_qwen3_30b_a3b_4l.toml extra=()
    [ "$1" = dsv3 ] && toml=$HERE/examples/bench_dsv3_16b_4l.toml
    case $2 in
        noac) ;;
        mbs2) extra=(--data.micro_batch_size=2) ;;
        ac)   extra=(--training.activation_checkpointing=true) ;;
        *) echo "error: unknown reftrain variant '$2' (noac, mbs2 or ac)" >&2; return 2 ;;
    esac
    [ "${PROFILE:-0}" = 1 ] && extra+=(--profile "$OUT/profile_$1_$2.txt")
    (cd "$HERE" && phase "ours_$1_$2" 300 python3 -m reftrain.bench "$toml" --warmup "$OUR_WARMUP" --steps "$OUR_STEPS" "${extra[@]}")
}

torchtitan() {  # shape, variant
    local toml=qwen3_30b_a3b_4l.toml extra=()
    [ "$1" = dsv3 ] && toml=dsv3_16b_4l.toml
    case $2 in
        sac) ;;
        noac) extra=(--activation_checkpoint.mode none) ;;
        *) echo "error: unknown TorchTitan variant '$2' (sac or noac)" >&2; return 2 ;;
    esac
    install_torchtitan || return 2
    PYTHONPATH=/tmp/site022:$KIT/tt022 phase "tt_$1_$2" 240 python3 -m torch.distributed.run --standalone \
        --nproc-per-node=1 -m torchtitan.train --job.config_file "$KIT/tt022/$toml" --training.steps "$TT_STEPS" \
        --model.hf_assets_path "$KIT/tokenizer" --training.dataset_path "$KIT/data/c4_sub" "${extra[@]}"
}

for ph in $PHASES; do
    case $ph in
        ladder) (cd "$HERE" && phase ladder 150 python3 -m pytest tests/test_ladder.py -k gpu -q -p no:cacheprovider) ;;
        attn)   phase attn 90 python3 "$HERE/benchmarks/attention_backends.py" ;;
        ours_*) IFS=_ read -r _ shape variant <<< "$ph"; ours "$shape" "${variant:-noac}" ;;
        tt_*)   IFS=_ read -r _ shape variant <<< "$ph"; torchtitan "$shape" "$variant" ;;
        *) echo "error: unknown phase '$ph'" >&2 ;;
    esac
done
tar czf "$OUT/logs.tgz" -C "$LOGS" .
python3 "$HERE/benchmarks/summarize.py" "$LOGS" | tee "$OUT/summary.md"
echo "DONE in ${SECONDS}s"
