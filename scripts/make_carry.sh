#!/usr/bin/env bash
# What the device scripts (scripts/device_*_checks.sh) carry to a lent GPU machine, which reaches no network: run
# here, on a machine with the package registry, from the repo root. Writes the git-ignored .whl/ and .carry/
# (about 40 MB together; the device tool carries at most 64 MiB a call):
#   .whl/*.whl     the harness's dependencies for the GPU image's Python 3.12, and transformers 5.24.0 (the graders'
#                  ids are made with it); the device scripts install them into /tmp/site
#   .whl/mg/       transformers' dependencies the GPU image's are too old for
#   .whl/tt/       TorchTitan's dependencies the GPU image lacks (datasets, torchdata, tyro, expecttest for its own unit tests, ...)
#   .carry/*.deb   bubblewrap (the isolated local sandbox), unpacked there with dpkg -x
#   .carry/megatron-partial.tgz  mgp/: a depth-1, blob-less, sparse clone of Megatron-LM's pin with what the
#                  Megatron tasks run (bench/sources.py's override route exports it file by file against the pin)
#   .carry/titan-partial.tgz     ttp/: the same for TorchTitan's pin, every file but the one blob GitHub's mirror
#                  lacks (tests/assets/c4_test/data.json)
# Usage: MEGATRON_GIT=<clone or URL> TITAN_GIT=<clone or URL> bash scripts/make_carry.sh [whl] [deb] [megatron] [titan]
# (no step named: all four). A local bare clone needs `git config uploadpack.allowFilter true` and
# `uploadpack.allowAnySHA1InWant true` to serve a depth-1 fetch of a commit.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(whl deb megatron titan)
pin() { python3 -c "import tomllib; print(tomllib.load(open('frameworks/$1/framework.toml','rb'))['source']['commit'])"; }
WHEEL=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_34_x86_64
       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
       --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
partial() {  # $1: git source, $2: commit, $3: folder name in the archive, $4: archive, then sparse-checkout patterns
  local source=$1 commit=$2 name=$3 archive=$4 work
  shift 4
  work=$(mktemp -d)
  git -C "$work" init -q "$name"
  git -C "$work/$name" fetch -q --depth 1 --filter=blob:none "$source" "$commit"
  git -C "$work/$name" sparse-checkout set --no-cone "$@"
  git -C "$work/$name" checkout -q FETCH_HEAD
  [ "$(git -C "$work/$name" rev-parse HEAD)" = "$commit" ]
  tar czf "$archive" -C "$work" "$name"
  rm -rf "$work"
  echo "$archive: $(du -h "$archive" | cut -f1) ($name at ${commit:0:12})"
}
mkdir -p .whl/mg .whl/tt .carry
for step in "${steps[@]}"; do
case $step in
whl)
  python3 -m pip download -q "${WHEEL[@]}" -d .whl pydantic rich docker "anthropic>=0.40" "openai>=1.0" httpx2 \
      nvidia-ml-py submitit
  python3 -m pip download -q --no-deps "${WHEEL[@]}" -d .whl transformers==5.24.0
  python3 -m pip download -q --no-deps "${WHEEL[@]}" -d .whl/mg "regex>=2025.10.22"
  python3 -m pip download -q --no-deps "${WHEEL[@]}" -d .whl/tt datasets dill multiprocess torchdata==0.11.0 tyro \
      typeguard tomli shtab expecttest
  echo ".whl: $(du -sh .whl | cut -f1)" ;;
deb)
  (cd .carry && apt-get download bubblewrap 2>/dev/null) && ls .carry/*.deb ;;
megatron)
  partial "${MEGATRON_GIT:?set MEGATRON_GIT to a Megatron-LM clone or URL}" "$(pin megatron)" mgp \
      .carry/megatron-partial.tgz /megatron/ /pretrain_gpt.py /gpt_builders.py /model_provider.py /pyproject.toml \
      /tests/__init__.py /tests/unit_tests/__init__.py /tests/unit_tests/conftest.py /tests/unit_tests/test_utilities.py \
      /tests/unit_tests/dist_checkpointing/ /tests/test_utils/python_scripts/ /tests/unit_tests/transformer/moe/ \
      /tools/checkpoint/ /tools/preprocess_data.py /examples/mixtral/ /docs/models/ ;;
titan)
  partial "${TITAN_GIT:?set TITAN_GIT to a TorchTitan clone or URL}" "$(pin torchtitan)" ttp \
      .carry/titan-partial.tgz '/*' '!/tests/assets/c4_test/data.json' ;;
*)
  echo "make_carry.sh: unknown step '$step' (whl, deb, megatron, titan)" >&2; exit 2 ;;
esac
done
echo "carried in all: $(du -sch .whl .carry | tail -1 | cut -f1)"
