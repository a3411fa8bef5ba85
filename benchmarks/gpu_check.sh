#!/usr/bin/env bash
# The prepared GPU check: one command, at most 330 s on an H100/H200, from a checkout
# (nothing installed, no network, no TensorRT needed):
#
#     bash benchmarks/gpu_check.sh              # on the GPU machine
#     bash benchmarks/gpu_check.sh --cpu-smoke  # a dry run of every stage on the CPU, tiny sizes
#
# Stages, each with its own time limit; a stage that fails or times out is recorded and the
# next one runs:
#   tests     the GPU tests (-m gpu) and the device-path tests         (limit 40 s)
#   cli       vdsr upscale through the CLI on the device: 2 frames, --tile auto, fp16 (25 s)
#   parity    device path fp32/fp16 vs the CPU reference: max error, identical 8-bit
#             pixels, PSNR                                              (limit 35 s)
#   bench     PyTorch fp16 tiles 512/1024/whole x batch 1/4/8, fp32 (TF32 off/on) batch 4
#             and whole, bare and pipeline; batch job over 8 frames; 3840x2160 output
#                                                                       (limit 90 s)
#   huge      one 12000x12000 output (6000x6000 input at x2), fp16, --tile auto: peak GPU
#             and host memory                                           (limit 55 s)
#   tensorrt  vdsr upscale --backend tensorrt --tile auto on 2 frames (engine built, then
#             cached) when TensorRT imports; "not available" otherwise  (limit 25 s)
#   report    one JSON and one Markdown under benchmarks/results/       (limit 10 s)
# Worst case: the limits sum to 280 s, each stage may take 5 s more to be killed (35 s), so
# 315 s; and a deadline of 325 s (VDSR_GPU_CHECK_DEADLINE) shortens any stage that would end
# after it, keeping 10 s for the report, so the whole check ends within 330 s whatever hangs.
#
# Environment: VDSR_GPU_CHECK_OUT (default: a new folder under /tmp) keeps the stage logs
# and JSON files; VDSR_GPU_CHECK_RESULTS (default benchmarks/results) gets the report.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"

smoke=""
scale=1
if [[ "${1:-}" == "--cpu-smoke" ]]; then
    smoke="--cpu-smoke"
    scale=3  # a 2-core CPU machine needs longer than the GPU machine for the same stage
fi
out="${VDSR_GPU_CHECK_OUT:-$(mktemp -d /tmp/vdsr-gpu-check.XXXXXX)}"
results="${VDSR_GPU_CHECK_RESULTS:-benchmarks/results}"
mkdir -p "$out"
: >"$out/status.txt"
echo "gpu_check: logs and stage files in $out"

deadline=$(("${VDSR_GPU_CHECK_DEADLINE:-325}" * scale))
kill_after=5
run_stage() {  # name limit_seconds command...
    local name=$1 limit=$(($2 * scale))
    shift 2
    local reserve=$((10 * scale))  # the report's limit, kept for it
    if [[ $name == report ]]; then reserve=0; fi
    local left=$((deadline - SECONDS - kill_after - reserve))
    if ((left < limit)); then limit=$left; fi
    if ((limit < 1)); then
        echo "$name=skipped-deadline,0s" >>"$out/status.txt"
        echo "[$name] skipped: the ${deadline} s deadline is reached"
        return
    fi
    local began=$SECONDS rc
    timeout --kill-after=$kill_after "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    local state
    case $rc in
        0) state=ok ;;
        124 | 137) state="timeout-${limit}s" ;;
        *) state="failed-rc${rc}" ;;
    esac
    echo "$name=$state,$((SECONDS - began))s" >>"$out/status.txt"
    echo "[$name] $state in $((SECONDS - began)) s"
    if [[ $state != ok ]]; then tail -n 15 "$out/$name.log"; fi
}

# -- tests: the GPU tests and the device-path tests; the summary line goes into tests.json
tests_stage() {
    local files=(tests/planes/test_device_colour.py tests/planes/test_device_pipeline.py tests/bench/test_device.py)
    local command=("$python" -m pytest -q -p no:cacheprovider -x "${files[@]}")
    if [[ -z $smoke ]]; then command=("$python" -m pytest -q -p no:cacheprovider tests/gpu "${files[@]}"); fi
    "${command[@]}" 2>&1 | tee "$out/pytest.txt"
    local rc=${PIPESTATUS[0]}
    "$python" - "$out" "$rc" "${command[*]}" <<'EOF'
import json, sys
from pathlib import Path
out, rc, command = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lines = [l for l in (out / "pytest.txt").read_text().splitlines() if l.strip()]
summary = next((l for l in reversed(lines) if " passed" in l or " failed" in l or " error" in l), "no summary")
failures = [l for l in lines if l.startswith(("FAILED", "ERROR"))]
(out / "tests.json").write_text(json.dumps({"command": command, "exit_code": rc, "summary": summary, "failures": failures}, indent=2))
EOF
    return "$rc"
}

# -- cli: the real command line on the device, from the checkout
cli_stage() {
    local folder="$out/cli"
    rm -rf "$folder" && mkdir -p "$folder/in"
    "$python" - "$folder/in" "$smoke" <<'EOF' || return 1
import sys
from pathlib import Path
from vdsr_deploy.bench import bench_image
from vdsr_deploy.imageio import write_image
size = (64, 96) if sys.argv[2] else (1080, 1920)
for index in range(2):
    write_image(Path(sys.argv[1]) / f"frame{index}.png", bench_image((2 * size[0], 2 * size[1]), 2.0, seed=index), bit_depth=8)
EOF
    local device=cuda precision=fp16
    if [[ -n $smoke ]]; then device=cpu precision=fp32; fi
    "$python" -c "from vdsr_deploy.cli import app; app()" upscale "$folder/in" -o "$folder/out" \
        -b torch --device "$device" --precision "$precision" --tile auto --quiet --report "$folder/report.json"
}

export out smoke python
export -f tests_stage cli_stage
run_stage tests 40 bash -c tests_stage
run_stage cli 25 bash -c cli_stage
run_stage parity 35 "$python" benchmarks/gpu.py parity --out "$out" $smoke
run_stage bench 90 "$python" benchmarks/gpu.py bench --out "$out" $smoke
run_stage huge 55 "$python" benchmarks/gpu.py huge --out "$out" $smoke
run_stage tensorrt 25 "$python" benchmarks/gpu.py tensorrt --out "$out" $smoke
run_stage report 10 "$python" benchmarks/gpu.py report --out "$out" --results "$results" $smoke
cat "$out/report.log"
echo "gpu_check: stages: $(tr '\n' ' ' <"$out/status.txt")"
grep -q "=ok," "$out/status.txt" && ! grep -qv "=ok," "$out/status.txt"
