#!/usr/bin/env bash
# Time and peak memory of the release `ipt restore` on photo-sized inputs, exact and fast window
# layouts, with a random tiny ×2 checkpoint (the figures of docs/restore.md). A benchmark, not a
# test: run it by hand on an otherwise idle machine.
#
#   eval "$(cargo xtask env)"
#   bash crates/ipt-model/examples/restore_figures.sh [OUT_DIR] [SIZES...]
#
# OUT_DIR defaults to target/restore-figures; SIZES (WIDTHxHEIGHT) default to
# 1152x864 (1 MP), 2048x1536 (3.1 MP), 2304x1728 (4 MP) and 4000x3000 (12 MP).
# Prints one Markdown table row per run; needs GNU time (/usr/bin/time -v) for the peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${1:-target/restore-figures}
shift || true
sizes=("$@")
if [ ${#sizes[@]} -eq 0 ]; then
    sizes=(1152x864 2048x1536 2304x1728 4000x3000)
fi
mkdir -p "$out"
cargo build --release -q -p ipt-cli --bin ipt
cargo build --release -q -p ipt-model --example random_checkpoint --example synthetic_photo
ipt=target/release/ipt
examples=target/release/examples
ckpt="$out/tiny_x2.safetensors"
"$examples/random_checkpoint" tiny 2 "$ckpt" >/dev/null

echo "| input | MP | mode | windows | wall time | peak RSS | load (1-min) |"
echo "|---|---|---|---|---|---|---|"
for size in "${sizes[@]}"; do
    w=${size%x*}
    h=${size#*x}
    img="$out/photo_${size}.png"
    [ -f "$img" ] || "$examples/synthetic_photo" "$h" "$w" "$img" >/dev/null
    for mode in exact fast; do
        log="$out/time_${size}_${mode}.txt"
        load=$(cut -d' ' -f1 /proc/loadavg)
        /usr/bin/time -v "$ipt" restore --weights "$ckpt" --device cpu --chop "$mode" \
            "$img" --out "$out/$mode" >"$out/stdout_${size}_${mode}.txt" 2>"$log"
        windows=$(grep -o '[0-9]* windows of' "$log" | cut -d' ' -f1)
        wall=$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}')
        rss_kb=$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')
        mp=$(awk -v w="$w" -v h="$h" 'BEGIN { printf "%.1f", w * h / 1e6 }')
        rss=$(awk -v k="$rss_kb" 'BEGIN { printf "%.2f GB", k * 1024 / 1e9 }')
        echo "| ${w}×${h} | $mp | $mode | $windows | $wall | $rss | $load |"
    done
done
