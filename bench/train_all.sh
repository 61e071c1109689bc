#!/usr/bin/env bash
# Trains every shipped model (seed 0 -> weights/) and the extra seeds for mean +- std (seeds 1, 2 -> runs/seeds/).
# MEDIMG_REPO=/path/to/checkout runs it in another checkout (e.g. a worktree pinned at one commit).
# Re-running resumes: a finished model (its .eval.json exists) is skipped, an interrupted one resumes from its
# checkpoint. Usage: bash bench/train_all.sh [shipped|seeds|all] ; logs in runs/logs/.
# GPU: the same commands run on CUDA (bf16 autocast, channels_last); prefix with
# `torchrun --nproc_per_node=N -m medimg.cli` instead of `medimg` for several GPUs.
set -u
cd "${MEDIMG_REPO:-$(dirname "$0")/..}"
what=${1:-all}
mkdir -p runs/logs runs/seeds
THREADS=${MEDIMG_TRAIN_THREADS:-$(nproc)}

# task | arch | size | epochs | batch | ema | patience | name
MODELS=(
  "pneumoniamnist resnet10_small 28 30 64 0.995 10 pneumoniamnist_resnet10s_28"
  "breastmnist resnet10_small 28 60 32 0.98 20 breastmnist_resnet10s_28"
  "busi resnet10 128 60 32 0.98 20 busi_resnet10_128"
  "pbc-blood resnet18 96 30 64 0.99 10 pbc_blood_resnet18_96"
  "brain-mri resnet18 128 25 64 0.99 10 brain_mri_resnet18_128"
  "kermany-cxr resnet18 128 20 64 0.995 8 cxr_pneumonia_resnet18"
)

run() {  # "seeds" out extra-args... (model-major: all seeds of the cheap models before the next model)
  local seeds=$1 out=$2; shift 2
  for m in "${MODELS[@]}"; do
   for seed in $seeds; do
    read -r task arch size epochs batch ema pat name <<<"$m"
    [ "$seed" != 0 ] && name="${name}_seed${seed}"
    [ -f "$out/$name.eval.json" ] && { echo "skip $name (done)"; continue; }
    echo "$(date -Is) start $name"
    uv run medimg train --task "$task" --arch "$arch" --size "$size" --epochs "$epochs" --batch-size "$batch" \
      --lr 1e-3 --ema-decay "$ema" --patience "$pat" --seed "$seed" --out "$out" --name "$name" \
      --threads "$THREADS" "$@" >>"runs/logs/$name.log" 2>&1
    echo "$(date -Is) end $name rc=$?"
   done
  done
}

case $what in
  shipped) run 0 weights ;;
  seeds) run "1 2" runs/seeds --no-gate ;;
  all) run 0 weights; run "1 2" runs/seeds --no-gate ;;
esac
