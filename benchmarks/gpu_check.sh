#!/usr/bin/env bash
# The prepared GPU check: one command that fits a lent device's 10-minute call.
#
#   bash benchmarks/gpu_check.sh --fetch-wheels   # here, once: cp312 wheels into .whl (~36 MB)
#   device run: bash benchmarks/gpu_check.sh      # carry [".whl"], timeout_s 540
#
# The device image has torch, pandas, scikit-learn and pytest but not rdkit, selfies, mlflow
# or the molsets wheel (MOSES's own VAE for the baseline); .whl carries the first two and
# MOSES's VAE code. It prints the GPU tests, host syncs per training step and the GRUs' compute dtype
# (benchmarks/gpu_probe.py), and training molecules/s of the default preset at batch 512 and
# 2048 beside MOSES's VAE on the same GPU (benchmarks/train_throughput.py), into $OUT/gpu.log.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--fetch-wheels" ]]; then
    grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "rdkit==2025.3.6" "selfies==2.2.0"
    python3 -m pip download --no-deps -d /tmp/molsets "molsets==0.3.1"
    # the baseline needs only moses/vae/model.py; the whole wheel (51 MB, the data set) would
    # not fit the 64 MiB a call carries
    mkdir -p .whl/molsets
    python3 - <<'PY'
import zipfile
with zipfile.ZipFile("/tmp/molsets/molsets-0.3.1-py3-none-any.whl") as full, \
        zipfile.ZipFile(".whl/molsets/molsets-0.3.1-py3-none-any.whl", "w") as slim:
    slim.writestr("moses/vae/model.py", full.read("moses/vae/model.py"))
PY
    du -sh .whl
    exit 0
fi
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu.log") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MOLVAE_CACHE=$PWD/.whl TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "== GPU tests"
timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu \
    tests/unit/training/test_loop.py::test_bf16_training_on_cuda
echo "== host syncs and compute dtypes"
timeout 120 python3 benchmarks/gpu_probe.py --steps 20
for batch in 512 2048; do
    echo "== training throughput, batch $batch, beside MOSES's VAE"
    timeout 150 python3 benchmarks/train_throughput.py --presets default --moses-baseline \
        --batch-size "$batch" --steps 30
done
