#!/bin/sh
# entrypoint.sh - the foreground process of a GRETA CORE container
# (deploy/container/Dockerfile.cuda, Dockerfile.rocm; run them with --init).
#
# Starts one instance with `greta up` and stays in the foreground while it
# runs, doing what greta@.service does under systemd:
#   GRETA_MODEL     the GGUF model (required; mount it into the container)
#   GRETA_INSTANCE  instance name (default: default)
#   GRETA_UP_ARGS   more `greta up` flags, split at spaces
#                   (e.g. "--backend gpu --slots 8 --ctx 4096")
# Arguments given to the container are passed on to `greta up` as well.
# The runtime directory is $XDG_RUNTIME_DIR/greta/<instance> (XDG_RUNTIME_DIR
# defaults to /run, as in the unit); its logs are followed on stdout
# (`docker logs`).
#
# When the supervisor dies, `greta up` runs again after the supervisor's first
# backoff (restart_delay_ms, = backoff_min_ms of deploy/systemd/restart-policy.txt)
# and adopts the stages that kept running. SIGTERM/SIGINT (`docker stop`) take
# the instance down and exit 0; so does a `greta down` from outside.
# Exit status: 0 after a stop, 1 when `greta up` fails, 2 without GRETA_MODEL.
set -u

restart_delay_ms=100
poll_ms=500

instance=${GRETA_INSTANCE:-default}
model=${GRETA_MODEL:-}
if [ -z "$model" ]; then
  echo "entrypoint: GRETA_MODEL is not set (e.g. docker run -e GRETA_MODEL=/models/model.gguf -v /srv/models:/models:ro ...)" >&2
  exit 2
fi
: "${XDG_RUNTIME_DIR:=/run}"
export XDG_RUNTIME_DIR
rundir=$XDG_RUNTIME_DIR/greta/$instance
segment=/dev/shm/greta-$(id -u)-$instance

msleep() { # msleep MS: interruptible by the traps below
  sleep "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))" &
  wait $! 2>/dev/null || true
}

stop=0
trap 'stop=1' TERM INT

up() {
  # shellcheck disable=SC2086  # GRETA_UP_ARGS is split at spaces on purpose
  greta up --instance "$instance" -m "$model" ${GRETA_UP_ARGS:-} "$@"
}

if ! up "$@"; then
  echo "entrypoint: greta up failed (logs in $rundir)" >&2
  greta down --instance "$instance" >/dev/null 2>&1
  exit 1
fi
tail -q -n +1 -F "$rundir/supervisor.log" "$rundir/tokenizer.log" "$rundir/sampler.log" \
  "$rundir/gpu-worker.log" 2>/dev/null &
tail_pid=$!

rc=0
while [ "$stop" = 0 ]; do
  msleep "$poll_ms"
  [ "$stop" = 0 ] || break
  greta status --instance "$instance" >/dev/null 2>&1 && continue
  if [ ! -e "$segment" ]; then
    echo "entrypoint: instance $instance was taken down" >&2
    break
  fi
  echo "entrypoint: the supervisor of $instance died; greta up again in $restart_delay_ms ms" >&2
  msleep "$restart_delay_ms"
  [ "$stop" = 0 ] || break
  if ! up "$@"; then
    echo "entrypoint: greta up failed (logs in $rundir)" >&2
    rc=1
    break
  fi
done
greta down --instance "$instance" >/dev/null 2>&1
kill "$tail_pid" 2>/dev/null
wait "$tail_pid" 2>/dev/null
exit "$rc"
