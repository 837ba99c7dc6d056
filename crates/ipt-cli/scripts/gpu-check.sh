#!/usr/bin/env bash
# GPU check for ipt-rs: run on a CUDA machine with the release `ipt` binary carried over
# (such a machine may have PyTorch 2.11.0 but no Rust). See docs/performance.md, "GPU check".
#
#   crates/ipt-cli/scripts/gpu-check.sh --ipt target/release/ipt --data DIR [--out DIR] [--quick]
#
#   --ipt FILE   the release binary (`cargo build --release -p ipt-cli`); built against the CUDA wheel
#                (`cargo xtask setup --cuda`) it also has NCCL, else step 4 is reported as skipped
#   --data DIR   a folder holding Set5/ (the benchmark root)
#   --out DIR    where the logs and JSON go (default: gpu-check-out)
#   --weights F  the ×2 checkpoint for step 4 (default: data/weights/ipt-small-finetune-sr2.safetensors)
#   --quick      bench-speed without the base-model rows
#   --torch DIR  the `torch` package folder to take libtorch from (default: IPT_PYTHON's, below)
#   --device D   cuda (default) or cpu: `--device cpu --quick` runs the same steps on the CPU (no bf16
#                row in step 3, Gloo instead of NCCL in step 4), to try the script without a GPU
#
# libtorch comes from the machine's PyTorch (IPT_PYTHON, default python3): its torch/lib and the
# nvidia/*/lib folders beside it go on LD_LIBRARY_PATH. Steps, each reported PASS/FAIL/SKIP:
#   1. libtorch's CUDA loads (`ipt doctor` says cuda available)
#   2. `ipt bench-speed --device cuda` (restore fp32 and bf16 rows, training rows, ...), with the peak
#      GPU memory seen by nvidia-smi
#   3. Set5 ×2 restored in fp32 and in bf16 (`bench-sr`), and the PSNR-Y difference
#   4. 50 training steps of configs/demo.toml on the GPU as one NCCL rank (torchrun's variables)
set -uo pipefail
IPT="" DATA="" OUT="gpu-check-out" QUICK="" TORCH_DIR="" DEVICE="cuda" WEIGHTS="data/weights/ipt-small-finetune-sr2.safetensors"
while [ $# -gt 0 ]; do
  case "$1" in
    --ipt) IPT="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --weights) WEIGHTS="$2"; shift 2 ;;
    --quick) QUICK="--quick"; shift ;;
    --torch) TORCH_DIR="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    *) echo "gpu-check: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -x "$IPT" ] || { echo "gpu-check: --ipt must name the release ipt binary (got '$IPT')" >&2; exit 2; }
[ -d "$DATA/Set5" ] || { echo "gpu-check: --data must hold Set5/ (got '$DATA')" >&2; exit 2; }
mkdir -p "$OUT"
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu-check: --device must be cuda or cpu (got '$DEVICE')" >&2; exit 2 ;; esac
PY="${IPT_PYTHON:-python3}"
if [ -z "$TORCH_DIR" ]; then
  TORCH_DIR=$("$PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>/dev/null) || {
    echo "gpu-check: $PY has no torch; set IPT_PYTHON to a Python with torch 2.11.0, or pass --torch DIR" >&2; exit 2; }
fi
[ -d "$TORCH_DIR/lib" ] || { echo "gpu-check: $TORCH_DIR has no lib/ folder (not a torch package)" >&2; exit 2; }
NV_LIBS=$(ls -d "$(dirname "$TORCH_DIR")"/nvidia/*/lib 2>/dev/null | paste -sd: -)
export LD_LIBRARY_PATH="$TORCH_DIR/lib${NV_LIBS:+:$NV_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "torch: $TORCH_DIR; device: $DEVICE"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
status=0
result() { echo "== $1: $2"; [ "$2" = FAIL ] && status=1; return 0; }

# 1. CUDA loads
"$IPT" doctor | tee "$OUT/doctor.txt"
if [ "$DEVICE" = cpu ]; then result "1 libtorch CUDA" SKIP
elif grep -q "cuda available: true" "$OUT/doctor.txt"; then result "1 libtorch CUDA" PASS
else result "1 libtorch CUDA" FAIL; echo "gpu-check: CUDA did not load; nothing else to check"; exit 1; fi

# 2. bench-speed on the GPU, peak memory from nvidia-smi sampled every 0.2 s
( while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -n1; done ) > "$OUT/memory.txt" &
SAMPLER=$!
if "$IPT" bench-speed --device "$DEVICE" $QUICK > "$OUT/bench-speed.md" 2> "$OUT/bench-speed.err"; then
  result "2 bench-speed ($DEVICE)" PASS; cat "$OUT/bench-speed.md"
else result "2 bench-speed ($DEVICE)" FAIL; tail -n 20 "$OUT/bench-speed.err"; fi
kill $SAMPLER 2>/dev/null
echo "peak GPU memory during bench-speed: $(sort -n "$OUT/memory.txt" | tail -n1) MiB"

# 3. Set5 ×2 in fp32 and bf16
ok=1
PRECISIONS="fp32 bf16"; [ "$DEVICE" = cpu ] && PRECISIONS="fp32"
for p in $PRECISIONS; do
  flag=""; [ $p = bf16 ] && flag="--bf16"
  "$IPT" bench-sr --weights "$WEIGHTS" --sets Set5 --scales 2 --device "$DEVICE" $flag \
    --data-root "$DATA" --json "$OUT/set5-$p.json" > "$OUT/set5-$p.txt" 2>&1 || ok=0
done
psnr() { grep -o '"psnr_y":[-0-9.]*' "$1" | head -n1 | cut -d: -f2; }
if [ $ok = 1 ]; then
  a=$(psnr "$OUT/set5-fp32.json")
  if [ "$DEVICE" = cuda ]; then
    b=$(psnr "$OUT/set5-bf16.json")
    echo "Set5 x2 PSNR-Y: fp32 $a dB, bf16 $b dB, difference $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%+.4f", b - a }') dB"
  else echo "Set5 x2 PSNR-Y: fp32 $a dB (no bf16 on the CPU)"; fi
  result "3 Set5 x2 fp32 vs bf16" PASS
else result "3 Set5 x2 fp32 vs bf16" FAIL; cat "$OUT"/set5-*.txt | tail -n 20; fi

# 4. 50 steps as one NCCL rank
sed -e "s/^device = .*/device = \"$DEVICE\"/" -e 's/^name = .*/name = "gpu-check"/' configs/demo.toml > "$OUT/gpu-check.toml"
export RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29517
if "$IPT" pretrain "$OUT/gpu-check.toml" --run-dir "$OUT/run" --stop-after 50 > "$OUT/nccl.txt" 2>&1; then
  result "4 one rank (NCCL on cuda, Gloo on cpu), 50 steps" PASS; grep -E "^(pre-training|step|done)" "$OUT/nccl.txt" | tail -n 4
elif grep -q "NCCL backend is not available" "$OUT/nccl.txt"; then
  result "4 one rank (NCCL on cuda, Gloo on cpu), 50 steps" SKIP; tail -n 3 "$OUT/nccl.txt"
else result "4 one rank (NCCL on cuda, Gloo on cpu), 50 steps" FAIL; tail -n 20 "$OUT/nccl.txt"; fi
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT
exit $status
