#!/usr/bin/env bash
# gpu-machine-check.sh PREFIX MODEL [OUT_DIR] - runs the CUDA container's
# entrypoint natively on a GPU machine (docker cannot run there): the binaries
# of Dockerfile.cuda's build commands, installed under PREFIX/usr/local as its
# `DESTDIR=/out cmake --install` does, started by deploy/container/entrypoint.sh
# with `--backend gpu`. Checks: up with the GPU backend, a killed supervisor
# replaced with the stages adopted, SIGTERM -> exit 0 and nothing left.
# Also prints what the systemd drop-in gpu-cuda.conf relies on: the NVIDIA
# device groups of /proc/devices (DeviceAllow=char-nvidia*) and the nodes.
# Exit status 0 when every check passed.
set -u
prefix=$(cd "${1:?usage: gpu-machine-check.sh PREFIX MODEL [OUT_DIR]}" && pwd)
model=$(realpath "${2:?model}")
out=${3:-/tmp/greta-gpu-check}
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
fails=0
check() { # check NAME STATUS: STATUS is the exit status of the condition just tested
  if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi
}

echo "== device groups and nodes (gpu-cuda.conf: DeviceAllow=char-nvidia* rw)"
grep -i nvidia /proc/devices || echo "(no nvidia entries in /proc/devices)"
find /dev -maxdepth 2 -name "nvidia*" -exec ls -ld {} + 2>&1 | head -20
nvidia-smi -L 2>&1 | head -4

bin=$prefix/usr/local/bin
echo "== libraries of greta-gpu-worker"
ldd "$bin/greta-gpu-worker" | grep -E "cuda|zmq|not found"
readelf -d "$bin/greta-gpu-worker" | grep -E "RUNPATH|RPATH"

rt=$(mktemp -d /tmp/gdgXXXXXX)
mkdir -p "$rt/run"
instance=gpucheck$$
log=$out/entrypoint.log
: >"$log"
export PATH=$bin:/usr/bin:/bin XDG_RUNTIME_DIR=$rt/run GRETA_MODEL=$model GRETA_INSTANCE=$instance \
  GRETA_UP_ARGS="--backend gpu --slots 4"
sh "$repo/deploy/container/entrypoint.sh" >>"$log" 2>&1 &
ep=$!
for _ in $(seq 1 600); do grep -q "supervisor up" "$log" && break; kill -0 $ep 2>/dev/null || break; sleep 0.1; done
greta status --instance "$instance" >"$out/status1.txt" 2>&1
cat "$out/status1.txt"
grep -q "backend gpu" "$out/status1.txt" && [ "$(grep -c " running " "$out/status1.txt")" = 3 ]
check "up with the GPU backend" $?
rundir=$rt/run/greta/$instance
cp "$rundir/gpu-worker.log" "$out/gpu-worker.log" 2>/dev/null
echo "-- gpu-worker.log"; cat "$out/gpu-worker.log"
chat() { echo "Once upon a time" | timeout 120 greta chat --instance "$instance" -n 16 --temp 0 2>/dev/null; }
reply1=$(chat); rc1=$?
echo "-- reply: $reply1"
[ "$rc1" = 0 ] && [ "$(echo "$reply1" | wc -w)" -ge 5 ]
check "a request is served (greta chat, GPU backend)" $?
sup=$(sed -n 's/.*supervisor pid \([0-9]*\).*/\1/p' "$out/status1.txt")
stages1=$(awk '/^(tokenizer|sampler|gpu-worker) /{print $1, $2}' "$out/status1.txt")
if [ -n "$sup" ]; then
  kill -9 "$sup"
  for _ in $(seq 1 200); do
    greta status --instance "$instance" >"$out/status2.txt" 2>&1 && grep -q "generation 2" "$out/status2.txt" && break
    sleep 0.1
  done
  cat "$out/status2.txt"
  stages2=$(awk '/^(tokenizer|sampler|gpu-worker) /{print $1, $2}' "$out/status2.txt")
  [ -n "$stages1" ] && [ "$stages1" = "$stages2" ] && grep -q "generation 2" "$out/status2.txt"
  check "killed supervisor replaced, same stages" $?
  reply2=$(chat)
  [ "$reply1" = "$reply2" ]
  check "the adopted stages serve the same greedy reply" $?
fi
kill -TERM $ep
wait $ep
rc=$?
[ "$rc" = 0 ]
check "SIGTERM -> exit 0" $?
[ ! -e "/dev/shm/greta-$(id -u)-$instance" ] && ! pgrep -f -- "--instance $instance" >/dev/null
check "nothing left" $?
echo "-- entrypoint output"; cat "$log"
rm -rf "$rt"
echo "$fails check(s) failed"
[ "$fails" = 0 ]
