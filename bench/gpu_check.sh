#!/usr/bin/env bash
# One-shot check of the CUDA paths on one GPU, within a time budget, offline.
#
#   OUT=/some/empty/folder bench/gpu_check.sh             # on a CUDA machine (about 8 minutes)
#   bench/gpu_check.sh --dry-run                          # the same steps on CPU, tiny shapes
#
# Steps (each under its own `timeout`, logged with its time; a failing step is recorded as FAIL
# and the next one runs; the exit status is non-zero when any step failed):
#   1   build the extension with its CUDA part (TORCH_CUDA_ARCH_LIST=9.0, MAX_JOBS=16) and check
#       that ddad::l1_discrepancy and its backward have CUDA kernels that match eager
#       (dry run: the CPU extension as it is built)
#   2   the CUDA test cases of tests/test_l1.py and tests/test_bn_stats.py (-k cuda)
#   3a  bench/bench_bn_stats.py (ResNet-34's BN inputs, batch 256, bf16 channels_last)
#   3b  bench/bench_l1.py (bf16)
#   4   bench/bench_step.py: ResNet-34 -> ResNet-18, batch 256, 3x32x32, 10 classes, eager fp32 vs
#       fast: images/s, peak memory, TFLOP/s and its share of the bf16 peak, and the matmul rate
#       and copy bandwidth measured on the spot
#   5   bench/parity.py: fast vs eager, 2 seeds x 360 steps on digits, final accuracy and
#       discrepancy side by side
#   6   the top 10 kernels of one fast iteration (torch.profiler, in step 4's process)
#   7a  `torchrun --nproc_per_node=1 -m ddad_fast distill ... --device cuda --backend fast`
#       (dry run: --backend eager)
#   7b  a one-rank NCCL process group: the collectives the trainer uses, then three iterations of
#       the fast backend (CUDA graphs) in it
#   8   bench/bench_step.py as step 4 with --replay 65536 --teacher-fp32: each backend with a
#       replay memory, and fast with the teacher in fp32, beside eager and fast (rows to
#       variants.csv). On a GPU only when GPU_CHECK_STEPS names it (a whole check leaves it no
#       time); the dry run always takes it.
# They run in the order 1, 2, 4, 6, 5, 7a, 7b, 3a, 3b, 8, so that a spent budget costs the op
# benchmarks first. Each step's limit is cut to what is left of GPU_CHECK_BUDGET_S (450 s; 400 s
# in a dry run); a step with no time left is recorded as SKIPPED. GPU_CHECK_STEPS (say "1 2 5")
# runs only the steps it names (step 1, the build, always runs); the others are not run.
#
# Everything goes under $OUT (default: a fresh temporary folder, printed): gpu_check.md (the
# table), gpu_check.log (every step's command and output), logs/<step>.log, steps.csv,
# results.csv (the benchmarks' rows), variants.csv (step 8's), tests.xml, parity/, torchrun/,
# top_kernels.md. A folder that already holds a check's results is refused. Nothing else is written but build products
# .gitignore lists and torch's compile caches. PYTHON (default python3) is the interpreter.
set -u -o pipefail

usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }

DRY=0
case "${1:-}" in
    "") ;;
    --dry-run) DRY=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PYTHON=${PYTHON:-python3}
if [[ -z "${OUT:-}" ]]; then
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
fi
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
if [[ -e "$OUT/steps.csv" || -e "$OUT/gpu_check.md" || -e "$OUT/gpu_check.log" ]]; then
    echo "gpu_check: $OUT already holds a check's results; set OUT to an empty folder" >&2
    exit 2
fi
mkdir -p "$OUT/logs"
LOG=$OUT/gpu_check.log
if ((DRY)); then
    DEV=cpu MODE="dry run, CPU"
    BUDGET=${GPU_CHECK_BUDGET_S:-400}
else
    DEV=cuda MODE="GPU"
    BUDGET=${GPU_CHECK_BUDGET_S:-450}
fi
export ROOT OUT PYTHON DRY DEV PYTHONUNBUFFERED=1
START=$SECONDS

say() { echo "gpu_check: $*" | tee -a "$LOG"; }

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $COMMIT != unknown && -n "$(git status --porcelain 2>/dev/null)" ]]; then
    COMMIT="$COMMIT (with uncommitted changes)"
fi
say "$MODE check of commit $COMMIT, budget ${BUDGET}s, writing to $OUT"
{
    echo "=== environment ($(date -u +%FT%TZ))"
    uname -a
    nproc
    if ((!DRY)); then  # (step 1 prints the Python side)
        timeout 20 nvidia-smi
        timeout 20 nvcc --version
    fi
} >>"$LOG" 2>&1

printf 'id,name,status,seconds,rc,limit\n' >"$OUT/steps.csv"

# run_step ID NAME LIMIT_S COMMAND...: COMMAND under `timeout`, its output to logs/ID.log and the
# main log, one row to steps.csv.
run_step() {
    local id=$1 name=$2 limit=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START) - 20))
    ((left < limit)) && limit=$left
    local status rc=- seconds=0 t0
    if [[ $id != 1 && -n ${GPU_CHECK_STEPS:-} && " $GPU_CHECK_STEPS " != *" $id "* ]]; then
        say "step $id ($name): not run (GPU_CHECK_STEPS=$GPU_CHECK_STEPS)"
        return
    elif ((limit < 10)); then
        status=SKIPPED
        say "step $id ($name): SKIPPED, the ${BUDGET}s budget is spent"
    else
        say "step $id ($name): running, limit ${limit}s"
        {
            echo "=== step $id: $name ($(date -u +%FT%TZ), limit ${limit}s)"
            echo "\$ $*"
        } >>"$LOG"
        t0=$(date +%s.%N)
        timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$OUT/logs/$id.log" >>"$LOG"
        rc=${PIPESTATUS[0]}
        seconds=$(awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }')
        if ((rc == 0)); then
            status=PASS
        elif ((rc == 124 || rc == 137)); then
            status=FAIL
            echo "(timed out after ${limit}s)" | tee -a "$OUT/logs/$id.log" >>"$LOG"
        else
            status=FAIL
        fi
        say "step $id ($name): $status in ${seconds}s (exit $rc)"
    fi
    printf '%s,"%s",%s,%s,%s,%s\n' "$id" "$name" "$status" "$seconds" "$rc" "$limit" \
        >>"$OUT/steps.csv"
}

step_build() {
    if ((DRY)); then
        "$PYTHON" bench/gpu_check.py extension --device cpu
    else
        local t0=$SECONDS built
        # PIP_BREAK_SYSTEM_PACKAGES: a system Python (PEP 668) would refuse the editable install
        TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PIP_BREAK_SYSTEM_PACKAGES=1 \
            "$PYTHON" -m pip install --no-build-isolation \
            --no-deps --progress-bar off -e .
        built=$?
        echo "pip install (the extension's build): exit $built after $((SECONDS - t0)) s"
        "$PYTHON" bench/gpu_check.py extension --device cuda && return "$built"
    fi
}

step_tests() {
    "$PYTHON" -m pytest -q -p no:cacheprovider -rs -k "cuda and not nvcc" \
        --junitxml="$OUT/tests.xml" tests/test_l1.py tests/test_bn_stats.py
}

step_bn_stats() {
    if ((DRY)); then
        "$PYTHON" bench/bench_bn_stats.py --device cpu --model tinycnn --batch 8 --size 8 \
            --repeats 3 --no-compile --csv "$OUT/results.csv"
    else
        "$PYTHON" bench/bench_bn_stats.py --device cuda --model resnet34 --batch 256 --size 32 \
            --dtype bfloat16 --channels-last --csv "$OUT/results.csv"
    fi
}

step_l1() {
    if ((DRY)); then
        "$PYTHON" bench/bench_l1.py --device cpu --shapes 256x10 2x11x16x20 --repeats 3 \
            --no-compile --csv "$OUT/results.csv"
    else
        "$PYTHON" bench/bench_l1.py --device cuda --dtype bfloat16 --csv "$OUT/results.csv"
    fi
}

step_step() {
    if ((DRY)); then  # the digits shapes of step 5 and tests/test_fast_backend.py
        "$PYTHON" bench/bench_step.py --device cpu --teacher smallcnn --student tinycnn \
            --batch 64 --image-size 8 --channels 1 --nz 32 --ngf 16 --iters 2 --peaks \
            --csv "$OUT/results.csv" --profile "$OUT/top_kernels.md"
    else
        "$PYTHON" bench/bench_step.py --device cuda --teacher resnet34 --student resnet18 \
            --batch 256 --image-size 32 --channels 3 --classes 10 --iters 20 \
            --csv "$OUT/results.csv" --profile "$OUT/top_kernels.md"
    fi
}

step_variants() {
    if ((DRY)); then  # step 4's dry-run shapes, one timed iteration
        "$PYTHON" bench/bench_step.py --device cpu --teacher smallcnn --student tinycnn \
            --batch 64 --image-size 8 --channels 1 --nz 32 --ngf 16 --iters 1 --warmup 1 \
            --replay 256 --teacher-fp32 --csv "$OUT/variants.csv"
    else  # a memory of 256 batches; fewer iterations than step 4: five backends compile here
        "$PYTHON" bench/bench_step.py --device cuda --teacher resnet34 --student resnet18 \
            --batch 256 --image-size 32 --channels 3 --classes 10 --iters 10 --warmup 2 \
            --replay 65536 --teacher-fp32 --csv "$OUT/variants.csv"
    fi
}

step_profile() {
    cat "$OUT/top_kernels.md" && grep -q '^| 1 |' "$OUT/top_kernels.md"
}

step_parity() {
    if ((DRY)); then
        "$PYTHON" bench/parity.py --device cpu --seeds 0 --epochs 2 --epoch-iters 3 \
            --out-dir "$OUT/parity"
    else
        "$PYTHON" bench/parity.py --device cuda --seeds 0 1 --min-acc 70 --out-dir "$OUT/parity"
    fi
}

step_torchrun() {
    local teacher=$OUT/parity/teacher/teacher.pt
    local BACKEND=fast
    ((DRY)) && BACKEND=eager  # the dry run's fast paths compile in steps 4, 5 and 7b already
    if [[ ! -s $teacher ]]; then  # step 5 did not leave one
        teacher=$OUT/teacher/teacher.pt
        "$PYTHON" -m ddad_fast teacher --model smallcnn --dataset digits --epochs 3 \
            --batch-size 64 --lr 0.05 --device "$DEV" --no-progress --out-dir "$OUT/teacher" ||
            return
    fi
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 -m ddad_fast distill \
        --teacher-ckpt "$teacher" --student tinycnn --dataset digits --epochs 2 --epoch-iters 5 \
        --student-steps 2 --batch-size 32 --nz 16 --ngf 8 --device "$DEV" --backend "$BACKEND" \
        --no-progress --out-dir "$OUT/torchrun" &&
        test -s "$OUT/torchrun/last.pt"
}

step_process_group() {
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 bench/gpu_check.py pg \
        --device "$DEV"
}

export -f step_build step_tests step_bn_stats step_l1 step_step step_profile step_parity \
    step_torchrun step_process_group step_variants

if ((DRY)); then
    run_step 1 "extension, CPU (as built)" 60 bash -c step_build
else
    run_step 1 "build the extension with CUDA (sm_90), kernels registered" 240 bash -c step_build
fi
run_step 2 "CUDA tests (test_l1, test_bn_stats; -k cuda)" 150 bash -c step_tests
run_step 4 "bench_step: eager fp32 vs fast" 300 bash -c step_step
run_step 6 "top 10 kernels of a fast iteration (step 4's profile)" 15 bash -c step_profile
run_step 5 "parity: fast vs eager on digits" 180 bash -c step_parity
run_step 7a "torchrun, 1 rank: ddad distill" 120 bash -c step_torchrun
run_step 7b "torchrun, 1 rank: process group ($([[ $DEV == cuda ]] && echo NCCL || echo gloo))" \
    150 bash -c step_process_group
run_step 3a "bench_bn_stats" 120 bash -c step_bn_stats
run_step 3b "bench_l1" 120 bash -c step_l1
if ((DRY)) || [[ " ${GPU_CHECK_STEPS:-} " == *" 8 "* ]]; then
    run_step 8 "bench_step: replay, and the teacher in fp32" 300 bash -c step_variants
fi

TOTAL=$((SECONDS - START))
timeout 60 "$PYTHON" bench/gpu_check.py report "$OUT" --mode "$MODE" --commit "$COMMIT" \
    --seconds "$TOTAL" >>"$LOG" 2>&1
STATUS=$?
if [[ -s "$OUT/gpu_check.md" ]]; then
    cat "$OUT/gpu_check.md"
else
    say "no report written (exit $STATUS); see $LOG"
    STATUS=1
fi
say "done in ${TOTAL}s, exit $STATUS; everything is under $OUT"
exit "$STATUS"
