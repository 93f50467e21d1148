#!/usr/bin/env bash
# The GPU check (issue 20), in one run of under 10 minutes on a lent GPU:
#
#     bash benchmarks/gpu_check.sh OUT [--quick]
#
# prints the GPU and the versions, runs the CUDA tests on the hardware (pytest -m cuda), then the
# GPU benchmarks: linear_recurrence (T x D = 2**28 float32, against a device-to-device copy), the
# tanh cell against JAX and as many rows of the nonlinear table as fit, linear_recurrence_matrix,
# the front ends on GPU arrays (benchmarks/front_ends.py --device cuda: lfilter, sosfilt, ewm_mean,
# gae against scipy, pandas, a Numba loop and CuPy's filters) with the nonlinear VJP, a Newton
# layer and a GILR-LSTM layer on GPU arrays (benchmarks/gradients.py --device cuda), and a few
# training iterations of the 1M-step task, the whole step on the GPU (examples/long_dependency.py).
# Into OUT (at most 8 files, the device tool's limit): environment.txt, a log per step and
# RESULTS.md, a copy of benchmarks/RESULTS.md whose measured blocks the benchmarks replaced (diff
# it against benchmarks/RESULTS.md and keep the blocks). Each step has its own time limit
# (GPU_CHECK_LIMITS: six numbers of seconds, in the order of the steps), so a step that hangs
# costs only its own.
# Through the device tool: run(command="bash benchmarks/gpu_check.sh $OUT", timeout_s=600).
#
# --quick: the benchmarks' small sizes, which write nothing; with NUMBA_ENABLE_CUDASIM=1 this
# runs the whole script on a machine without a GPU (to try the script, not to measure).
set -u
out=${1:?usage: bash benchmarks/gpu_check.sh OUT_FOLDER [--quick]}
quick=${2:-}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}

# The lent machine's numba-cuda (0.30) refers to np.row_stack, which its NumPy (2.5) no longer
# has: put it back in every Python process, pytest's workers too, before numba-cuda is imported.
shim=$(mktemp -d)
cat > "$shim/sitecustomize.py" <<'PYTHON'
import numpy

if not hasattr(numpy, "row_stack"):
    numpy.row_stack = numpy.vstack
PYTHON
export PYTHONPATH="$PWD:$shim${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CI=true
export SCANLAB_RESULTS="$out/RESULTS.md"
cp benchmarks/RESULTS.md "$SCANLAB_RESULTS"

step() {  # step NAME SECONDS COMMAND...: run it within SECONDS, its output in OUT/NAME.log
    local name=$1 seconds=$2 start=$SECONDS status
    shift 2
    echo "== $name (at most $seconds s): $*"
    timeout --kill-after=10 "$seconds" "$@" > "$out/$name.log" 2>&1
    status=$?
    echo "== $name: exit $status after $((SECONDS - start)) s$([ $status = 124 ] && echo ' (time limit)')"
    grep -v '%|' "$out/$name.log" | tail -n 8
}

{
    date -u
    nvidia-smi || echo "no nvidia-smi"
    "$python" - <<'PYTHON'
import importlib.metadata as metadata
import platform

for name in ("numba", "numba-cuda", "llvmlite", "numpy", "scipy", "jax", "cupy-cuda13x", "pytest"):
    try:
        print(f"{name} {metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"{name} not installed")
print("python", platform.python_version())
from numba import cuda

print("cuda.is_available():", cuda.is_available())
if cuda.is_available():
    cuda.detect()
from scanlab.bench.tables import machine_description

print("host:", machine_description())
PYTHON
} > "$out/environment.txt" 2>&1
cat "$out/environment.txt"

if [ "$quick" = --quick ]; then sizes=--quick; else sizes=; fi
# Each step's limit in seconds; together under the device tool's 600 with the environment's.
limits=(${GPU_CHECK_LIMITS:-170 85 115 55 80 45})
# -v: each test's result is in the log as it finishes, also if the time limit stops the run.
step cuda_tests "${limits[0]}" "$python" -m pytest -m cuda -n 8 -v -p no:cacheprovider \
    --durations=10
echo "passed: $(grep -c ' PASSED' "$out/cuda_tests.log"), failed or errors:"
grep -E ' (FAILED|ERROR) ' "$out/cuda_tests.log" | head -n 30
step linear "${limits[1]}" "$python" benchmarks/linear_recurrence.py --device cuda $sizes
step nonlinear "${limits[2]}" "$python" benchmarks/nonlinear.py --device cuda \
    --seconds "$((limits[2] / 2))" $sizes
step matrix "${limits[3]}" "$python" benchmarks/linear_recurrence.py --device cuda --matrix $sizes
# The front ends, then the nonlinear VJP and a Newton layer on GPU arrays, in one step (and log).
step front_ends "${limits[4]}" bash -c '"$0" benchmarks/front_ends.py --device cuda --seconds "$1" \
    $2; "$0" benchmarks/gradients.py --device cuda $2' "$python" "$((limits[4] / 3))" "$sizes"
# The 1M-step task's seconds per training iteration at the paper's setting (the last line:
# iterations and seconds of training); a few iterations, not the run to convergence.
if [ "$quick" = --quick ]; then preset=(--length 16 --hidden 4 --batch 2); else
    preset=(--preset paper-1m); fi
step long_dependency "${limits[5]}" "$python" examples/long_dependency.py "${preset[@]}" \
    --device cuda --max-iterations 5 --time-limit "$((limits[5] / 2))"

echo "== blocks of RESULTS.md measured here:"
for block in $(grep -o '<!-- [a-z-]*-table:start -->' "$SCANLAB_RESULTS" | cut -d' ' -f2); do
    name=${block%:start}
    if ! diff -q <(sed -n "/<!-- $name:start/,/<!-- $name:end/p" benchmarks/RESULTS.md) \
        <(sed -n "/<!-- $name:start/,/<!-- $name:end/p" "$SCANLAB_RESULTS") > /dev/null; then
        echo "$name"
    fi
done
ls -l "$out"
