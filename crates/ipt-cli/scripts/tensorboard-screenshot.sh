#!/usr/bin/env bash
# Screenshot of TensorBoard showing a run directory (docs/training.md, "TensorBoard").
#
#   crates/ipt-cli/scripts/tensorboard-screenshot.sh RUN_DIR OUT.png [scalars|images]
#
# Needs the tensorboard package that `cargo xtask test` installs ($IPT_HOME/python/tensorboard-*,
# or TB_PYTHONPATH) and Debian's chromium (`apt-get install chromium`). Starts TensorBoard on a
# free loopback port, lets headless Chromium render the dashboard, writes OUT.png, stops both.
set -euo pipefail
run=${1:?usage: tensorboard-screenshot.sh RUN_DIR OUT.png [scalars|images]}
out=${2:?usage: tensorboard-screenshot.sh RUN_DIR OUT.png [scalars|images]}
tab=${3:-scalars}
home=${IPT_HOME:-$HOME/.cache/ipt}
tbpath=${TB_PYTHONPATH:-$(ls -d "$home"/python/tensorboard-* 2>/dev/null | tail -1)}
[ -d "$tbpath/tensorboard" ] || { echo "no tensorboard package under $home/python (run cargo xtask test, or set TB_PYTHONPATH)" >&2; exit 1; }
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "chromium not found (apt-get install chromium)" >&2; exit 1; }
[ -d "$run" ] || { echo "$run: not a folder" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PYTHONPATH="$tbpath" python3 -m tensorboard.main --logdir "$run" --host 127.0.0.1 --port "$port" \
  > /tmp/tensorboard-screenshot.log 2>&1 &
tb=$!
trap 'kill $tb 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/data/logdir')" 2>/dev/null && break
  sleep 0.5
done
profile=$(mktemp -d)
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --use-angle=swiftshader --enable-unsafe-swiftshader --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1400,1000 \
  --virtual-time-budget=15000 --screenshot="$out" "http://127.0.0.1:$port/#$tab" 2>/dev/null
rm -rf "$profile"
[ -s "$out" ] || { echo "no screenshot written" >&2; exit 1; }
echo "wrote $out"
