#!/usr/bin/env bash
# Check and time the whole GPU path of vit_hf in one run on any CUDA machine (about 6 minutes on one H100):
#
#   benchmarks/gpu_check.sh OUT_DIR [WHEELS_DIR]
#   benchmarks/gpu_check.sh --cpu-smoke OUT_DIR [WHEELS_DIR]     # the same steps, tiny and on CPU
#
# Steps, each with a time limit, its log in OUT_DIR/<step>.log and a line in OUT_DIR/summary.txt:
#   install      pip install --no-index --find-links WHEELS_DIR the packages pyproject.toml lists (when given)
#   environment  versions, the GPU, and that every package imports
#   equality     vit_hf equals timm on the device: fp32 logits (1e-4), bf16 logits, fp32 gradients, no host sync
#   throughput   training/inference images/s, MFU and peak memory vs timm and transformers, eager, bf16 (all four
#                models) and fp32 (ViT-B/16 224)
#   finetune     recipes/finetune.py for a few steps on a generated CIFAR-10-format dataset, 224 px, bf16
#   overhead     the recipe's whole training loop against the model-only step, ViT-B/16 224 bf16 (goal: within 10%)
#   compile      torch.compile training throughput of ViT-B/16 224 in bf16, vit_hf vs timm
# Exits non-zero if any step failed or ran out of time. The machine needs no network: everything is generated.
set -u

usage() {
    echo "usage: $0 [--cpu-smoke] OUT_DIR [WHEELS_DIR]" >&2
    exit 2
}
smoke=0
if [[ "${1:-}" == "--cpu-smoke" ]]; then
    smoke=1
    shift
fi
[[ $# -ge 1 && $# -le 2 ]] || usage
wheels="${2:-}"
if [[ -n "$wheels" && ! -d "$wheels" ]]; then
    echo "WHEELS_DIR $wheels is not a directory (prepare it with pip download; see benchmarks/README.md)" >&2
    exit 2
fi
[[ -z "$wheels" ]] || wheels="$(cd "$wheels" && pwd)"
mkdir -p "$1" || exit 2
out="$(cd "$1" && pwd)"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 2

python="${PYTHON:-python}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"  # vit_hf and benchmarks import from this checkout
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

summary="$out/summary.txt"
printf '%-12s %-8s %6s  %s\n' step status seconds log >"$summary"
failed=0

# run_step NAME LIMIT_S COMMAND...: run with a time limit, log to OUT_DIR/NAME.log, record the outcome.
run_step() {
    local name=$1 limit=$2
    shift 2
    local log="$out/$name.log" start=$SECONDS status=PASS
    echo "== $name (limit ${limit}s): $*"
    # A child bash runs the command, so it may be one of the functions below (exported).
    timeout --kill-after=15 "$limit" bash -c '"$@"' "$name" "$@" >"$log" 2>&1
    local rc=$?
    if ((rc == 124 || rc == 137)); then
        status=TIMEOUT
    elif ((rc != 0)); then
        status=FAIL
    fi
    if [[ $status != PASS ]]; then
        failed=1
        tail -n 25 "$log" | sed 's/^/   | /'
    fi
    printf '%-12s %-8s %6d  %s\n' "$name" "$status" "$((SECONDS - start))" "$log" | tee -a "$summary"
}

skip_step() {
    printf '%-12s %-8s %6s  %s\n' "$1" SKIP - "$2" | tee -a "$summary"
}

install_requirements() {
    # The run-time dependencies pyproject.toml lists; pip keeps the installed ones that satisfy them (torch).
    local requirements
    requirements="$("$python" - <<'EOF'
try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
EOF
)" || return 1
    mapfile -t requirements <<<"$requirements"
    "$python" -m pip install --no-index --find-links "$wheels" "${requirements[@]}"
}

check_environment() {
    "$python" - "$smoke" <<'EOF' || return 1
import importlib
import sys

# What the checks and benchmarks import, then what only the fine-tuning recipe needs.
required = ("torch", "torchvision", "transformers", "timm", "accelerate", "safetensors", "vit_hf")
for_finetune = ("datasets", "evaluate", "matplotlib", "sklearn", "yaml")
missing = []
for name in required + for_finetune:
    try:
        print(f"{name:14s} {getattr(importlib.import_module(name), '__version__', '?')}")
    except ImportError as error:
        print(f"{name:14s} MISSING ({error})")
        missing.append(name)
import torch

print("python", sys.version.split()[0], "| torch cuda:", torch.version.cuda, "| cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(), "| capability:", torch.cuda.get_device_capability())
elif sys.argv[1] == "0":
    sys.exit("torch sees no CUDA device: this check needs a GPU (or use --cpu-smoke).")
if missing:
    sys.exit(f"missing packages: {missing}. Pass a WHEELS_DIR holding them (see benchmarks/README.md).")
EOF
    if command -v nvidia-smi >/dev/null; then nvidia-smi; fi
}

finetune() {
    local device_flag="" model=base_patch16_224 steps=60 batch=64 train=2048 test=512
    if ((smoke)); then
        device_flag=--cpu model=tiny_patch16_224 steps=2 batch=8 train=200 test=20  # 10% hold-out: 2 per class
    fi
    "$python" -m benchmarks.fake_cifar10 "$out/cifar10" --train-size "$train" --test-size "$test" || return 1
    rm -rf "$out/finetune"
    "$python" -m accelerate.commands.launch --config_file accelerate_config.yaml $device_flag \
        recipes/finetune.py --dataset "$out/cifar10" --model "$model" --image_size 224 --mixed_precision bf16 \
        --max_steps "$steps" --per_device_train_batch_size "$batch" --output_dir "$out/finetune" --report_to none \
        || return 1
    "$python" - "$out/finetune/all_results.json" <<'EOF'
import json
import sys

results = json.load(open(sys.argv[1]))
print("all_results.json:", json.dumps(results, indent=1))
missing = {"train_samples_per_second", "eval_accuracy", "test_accuracy"} - set(results)
sys.exit(f"all_results.json lacks {sorted(missing)}" if missing else 0)
EOF
}

throughput() {
    local bench=("$python" -m benchmarks.model_throughput)
    if ((smoke)); then
        "${bench[@]}" --device cpu --models vit_tiny_patch16_224 --batch-size 2 --warmup 0 --steps 1 --repeats 2 \
            --modes eager --output "$out/throughput.md" --output "$out/throughput.json"
        return
    fi
    local common=(--device cuda --modes eager --warmup 2 --steps 8 --repeats 3)
    "${bench[@]}" "${common[@]}" --precisions bf16 --output "$out/throughput_bf16.md" \
        --output "$out/throughput_bf16.json" || return 1
    "${bench[@]}" "${common[@]}" --models vit_base_patch16_224 --precisions fp32 \
        --output "$out/throughput_fp32.md" --output "$out/throughput_fp32.json"
}

compile_throughput() {
    # More warm-up than eager: the first calls after compiling were seen to run several times slower.
    local outputs=(--output "$out/throughput_compile.md" --output "$out/throughput_compile.json")
    if ((smoke)); then
        "$python" -m benchmarks.model_throughput --device cpu --models vit_tiny_patch16_224 --batch-size 2 \
            --warmup 0 --steps 1 --repeats 2 --modes compile --precisions fp32 --tasks infer \
            --implementations vit_hf timm "${outputs[@]}"
    else
        "$python" -m benchmarks.model_throughput --device cuda --models vit_base_patch16_224 --modes compile \
            --precisions bf16 --tasks train --implementations vit_hf timm --warmup 5 --steps 8 --repeats 3 \
            "${outputs[@]}"
    fi
}

overhead() {
    if ((smoke)); then
        "$python" -m benchmarks.recipe_overhead --device cpu --image-size 32 --batch-size 8 --steps 3 --warmup 1 \
            --workers 0 --output "$out/overhead.md"
    else
        "$python" -m benchmarks.recipe_overhead --device cuda --model base_patch16_224 --image-size 224 \
            --batch-size 128 --mixed-precision bf16 --steps 60 --warmup 10 --workers 8 --output "$out/overhead.md"
    fi
}

equality() {
    if ((smoke)); then
        "$python" -m benchmarks.check_model --device cpu --models vit_tiny_patch16_224 --batch-size 2 \
            --output "$out/equality.json"
    else
        "$python" -m benchmarks.check_model --device cuda --output "$out/equality.json"
    fi
}

export python out wheels smoke
export -f install_requirements check_environment equality throughput finetune overhead compile_throughput

if [[ -n "$wheels" ]]; then
    run_step install 180 install_requirements
else
    skip_step install "no WHEELS_DIR given: using the installed packages"
fi
run_step environment 60 check_environment
if ((failed)); then  # no GPU or missing packages: every later step would fail or, worse, run on the CPU
    echo "gpu_check: the environment check failed (see above); nothing else was run" | tee -a "$summary"
    exit 1
fi
run_step equality 150 equality
run_step throughput 240 throughput
run_step finetune 240 finetune
run_step overhead 180 overhead
run_step compile 300 compile_throughput

echo
echo "== summary ($out)"
cat "$summary"
for table in "$out"/throughput*.md "$out"/overhead.md; do
    [[ -f "$table" ]] && { echo; echo "-- $(basename "$table")"; cat "$table"; }
done
if [[ -f "$out/finetune/all_results.json" ]]; then
    echo
    echo "-- finetune/all_results.json"
    cat "$out/finetune/all_results.json"
fi
if ((failed)); then
    echo "gpu_check: some steps failed (see the logs above)" | tee -a "$summary"
    exit 1
fi
echo "gpu_check: all steps passed" | tee -a "$summary"
