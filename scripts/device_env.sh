# Sourced by scripts/device_*_checks.sh on a lent GPU machine, from the repo root there: the deadline clock
# (`left`: seconds until $DEADLINE, 560 by default, counted from here), NVLink multicast off for NCCL, PyTorch and
# NVSHMEM (the GPU hosts' rule), bubblewrap from the carried .carry/*.deb, and the harness's wheels (.whl/*.whl)
# in /tmp/site, which PYTHONPATH puts first with the checkout.
START=$(date +%s)
left() { echo $(( ${DEADLINE:-560} - ($(date +%s) - START) )); }
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 CUDA_DEVICE_ORDER=PCI_BUS_ID
mkdir -p /tmp/bw && for f in .carry/*.deb; do dpkg -x "$f" /tmp/bw; done
export PATH=/tmp/bw/usr/bin:$PATH
[ -d /tmp/site/pydantic ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
