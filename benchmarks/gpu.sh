#!/usr/bin/env bash
# The GPU benchmarks of vibe-rt on a bare CUDA machine, in one go (see benchmarks/README.md, "GPU in one script").
#
#   benchmarks/gpu.sh [--wheels DIR] [--out DIR] [--python PY] [--budget S] [--cpu-dry-run]
#   benchmarks/gpu.sh --make-wheels DIR [--tier inference|all] [--python-version 3.11] [--torch 2.14.1]
#
# Run: checks that torch sees a CUDA GPU (else one line and exit 2; --cpu-dry-run runs the same steps on the CPU
# with tiny settings), installs the Python packages vibe-rt needs that this Python lacks from a local wheel
# folder (pip install --no-index --find-links DIR --no-deps: no network), then runs `vibe-rt bench inference`
# (embedded model + ViT-B-32: torch eager fp32/fp16, fp16 with CUDA graphs, ONNX Runtime CUDA and TensorRT where
# installed) and `vibe-rt bench latency` (both models, torch fp16 eager and with a CUDA graph, a fixed 6 ms
# lookahead with 1 ms pushes and the automatic one) with settings that end within --budget seconds (default 480). Results go to --out (default
# benchmarks/results/; a dry run: a temporary folder), named after the GPU (inference_latency-nvidia-h200.json ...). The latency benchmark needs
# OpenCV, which the 64 MiB "inference" wheel tier leaves out: without them it is skipped, said so, and
# the inference results stand.
#
# --make-wheels DIR (on a machine with network): downloads those packages' wheels for the target's Python
# (--python-version, default this one's) and torch (--torch: picks the matching torchvision), prints what the
# folder holds and its size. Tier "inference" (default, ~61 MB): what the inference benchmark imports; "all"
# (~119 MB): also OpenCV for the latency benchmark (its frame preprocessing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-python3}"
wheels="" out="" budget=480 dry=0 make="" tier="inference" pyver="" torchver=""

die() { echo "gpu.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels) wheels="${2:?--wheels needs a folder}"; shift 2 ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    --python) py="${2:?--python needs an interpreter}"; shift 2 ;;
    --budget) budget="${2:?--budget needs seconds}"; shift 2 ;;
    --cpu-dry-run) dry=1; shift ;;
    --make-wheels) make="${2:?--make-wheels needs a folder}"; shift 2 ;;
    --tier) tier="${2:?--tier needs inference or all}"; shift 2 ;;
    --python-version) pyver="${2:?--python-version needs e.g. 3.11}"; shift 2 ;;
    --torch) torchver="${2:?--torch needs the torch version of the target, e.g. 2.14.1}"; shift 2 ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ "$budget" =~ ^[0-9]+$ && "$budget" -ge 120 ]] || die "--budget must be whole seconds, at least 120, got $budget"
[[ "$tier" == inference || "$tier" == all ]] || die "--tier must be inference or all, got $tier"
command -v "$py" >/dev/null || die "no Python interpreter '$py': give one with --python"

# import name=distribution, pinned to the versions vibe-rt is developed with (pyproject.toml has the ranges)
INFERENCE=(open_clip=open_clip_torch==3.3.0 ftfy=ftfy==6.3.1 wcwidth=wcwidth==0.9.4 regex=regex==2026.11.19
           PIL=pillow==11.3.0 safetensors=safetensors==0.8.0 tqdm=tqdm==4.70.1 scipy=scipy==1.17.1
           pylsl=pylsl==1.18.6 psutil=psutil==7.2.2 mne=mne==1.13.2 decorator=decorator==5.3.1
           lazy_loader=lazy-loader==0.6)
LATENCY=(cv2=opencv-python-headless==5.0.0.93)

# ------------------------------------------------------------------------------------------ --make-wheels DIR
if [[ -n "$make" ]]; then
  pyver="${pyver:-$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
  torchver="${torchver:-$("$py" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)}"
  [[ -n "$torchver" ]] || die "--make-wheels: give the target's torch version with --torch (no torch here)"
  IFS=. read -r tmaj tmin tpatch <<<"$torchver"
  [[ "$tmaj" == 2 ]] || die "--torch $torchver: only torch 2.x is mapped to its torchvision (0.<minor + 15>)"
  specs=("torchvision==0.$((tmin + 15)).${tpatch:-0}")
  list=("${INFERENCE[@]}"); [[ "$tier" == all ]] && list+=("${LATENCY[@]}")
  for item in "${list[@]}"; do specs+=("${item#*=}"); done
  mkdir -p "$make"
  "$py" -m pip download --no-deps --only-binary=:all: --python-version "$pyver" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_35_x86_64 -d "$make" "${specs[@]}"
  echo "gpu.sh: wheel folder $make for Python $pyver, torch $torchver (tier $tier):"
  ls -1s --block-size=K "$make"/*.whl
  du -sh "$make"
  exit 0
fi

# ------------------------------------------------------------------------------------------------------ run
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
"$py" -c 'import torch, onnx, onnxruntime, numpy' 2>/dev/null \
  || die "$py lacks torch, onnx, onnxruntime or numpy (the machine's own packages); install them first"
if [[ "$dry" == 0 ]]; then
  gpu="$("$py" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")')"
  [[ -n "$gpu" ]] || die "torch sees no CUDA GPU here; run on a GPU machine, or --cpu-dry-run to test the steps on the CPU"
else
  gpu="none (--cpu-dry-run)"
fi

missing() {  # the distributions of the given name=dist items whose module does not import
  local item
  for item in "$@"; do
    "$py" -c "import ${item%%=*}" 2>/dev/null || echo "${item#*=}"
  done
}
install_missing() {  # tier name, items...
  local name="$1"; shift
  local need; need="$(missing "$@")"
  [[ -z "$need" ]] && return 0
  if [[ -z "$wheels" ]]; then
    echo "gpu.sh: the $name packages $(echo $need | tr '\n' ' ')are missing and no --wheels DIR was given" >&2
    return 1
  fi
  echo "gpu.sh: installing from $wheels: $(echo $need | tr '\n' ' ')"
  # shellcheck disable=SC2086
  "$py" -m pip install --quiet --no-index --find-links "$wheels" --no-deps $need || return 1
  [[ -z "$(missing "$@")" ]]
}

# torchvision unpinned: the folder holds the one matching the target's torch (--make-wheels --torch)
install_missing inference torchvision=torchvision "${INFERENCE[@]}" \
  || die "the inference benchmark's packages could not be installed from ${wheels:-(no --wheels)}: make the folder with --make-wheels"
latency=1
install_missing latency "${LATENCY[@]}" || latency=0

# a dry run writes into a temporary folder unless told otherwise: its results are no benchmark figures
if [[ -z "$out" && "$dry" == 1 ]]; then out="$(mktemp -d -t vibe-rt-gpu-dry-run-XXXX)"; fi
out="${out:-$root/benchmarks/results}"
mkdir -p "$out"
log="$out/gpu-sh.log"
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }
{
  echo "gpu.sh: $(date -u +%FT%TZ), GPU: $gpu, Python: $("$py" -V 2>&1), budget ${budget}s"
  "$py" -c 'import torch, onnxruntime as o; print("torch", torch.__version__, "CUDA", torch.version.cuda, "| onnxruntime", o.__version__, o.get_available_providers())'
  "$py" -c 'import tensorrt; print("tensorrt", tensorrt.__version__)' 2>/dev/null || echo "tensorrt: not installed (its variants are skipped)"
} | tee "$log"

vibe=("$py" -m vibe_rt bench)
if [[ "$dry" == 1 ]]; then
  inference=(inference --device cpu --model tiny --backend torch,onnxruntime --seconds 0.05 --min-iters 2
             --max-iters 3 --warmup 1)
  lat=(latency --device cpu --model tiny --backend torch --duration 2 --lookahead-mode both)
else
  # every GPU variant the machine can run (parse_variants: torch fp32/fp16/fp16+CUDA graph, ORT CUDA, TensorRT)
  inference=(inference --device cuda --seconds 0.5 --min-iters 20 --warmup 5)
  # the fixed run at 6 ms with 1 ms pushes is the glass-to-LSL floor (goal p99 < 8 ms; late ones are counted)
  lat=(latency --device cuda --model default --model base --backend torch-fp16,torch-fp16-cudagraph
       --duration 15 --event-rate 5 --lookahead 0.006 --chunk-ms 1 --lookahead-mode both)
fi

status=0
echo "gpu.sh: ${inference[*]} (at most $(( $(left) * 6 / 10 )) s)" | tee -a "$log"
timeout --signal=INT "$(( $(left) * 6 / 10 ))" "${vibe[@]}" "${inference[@]}" --out "$out" 2>&1 | tee -a "$log" \
  || { status=1; echo "gpu.sh: the inference benchmark failed or ran out of time" | tee -a "$log"; }
if [[ "$latency" == 1 ]]; then
  echo "gpu.sh: ${lat[*]} (at most $(( $(left) - 10 )) s)" | tee -a "$log"
  timeout --signal=INT "$(( $(left) - 10 ))" "${vibe[@]}" "${lat[@]}" --out "$out" 2>&1 | tee -a "$log" \
    || { status=1; echo "gpu.sh: the latency benchmark failed or ran out of time" | tee -a "$log"; }
else
  echo "gpu.sh: latency benchmark skipped: it needs OpenCV (wheel tier 'all'), which is not here" | tee -a "$log"
fi
# a benchmark that ran but lost a model or a variant says so in its JSON: name each such entry
"$py" - "$out" <<'PY' 2>&1 | tee -a "$log" || status=1
import json, sys
from pathlib import Path
bad = 0
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    results = json.loads(path.read_text()).get("results", {})
    for key, entry in results.items():
        errors = {key: entry["error"]} if "error" in entry else {
            f"{key}:{v}": e["error"] for v, e in entry.get("variants", {}).items() if "error" in e}
        for what, err in errors.items():
            print(f"gpu.sh: {path.name}: {what} did not run: {err}")
            bad += 1
sys.exit(1 if bad else 0)
PY
echo "gpu.sh: done in $(( $(date +%s) - start )) s; results in $out:" | tee -a "$log"
ls -1 "$out" | grep -E '^(inference_latency|latency)' | tee -a "$log" || true
exit "$status"
