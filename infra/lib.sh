# Sourced by infra/*.sh: what their daemons share.

# stop_pid NAME PIDFILE [SECONDS]: SIGTERM the daemon whose pid is in PIDFILE (a clean
# shutdown), wait up to SECONDS (5) for it to exit, then SIGKILL it; remove PIDFILE.
stop_pid() {
  local name="$1" pidfile="$2" seconds="${3:-5}" pid
  [ -f "$pidfile" ] || { echo "$name: not running"; return; }
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 "$((seconds * 10))"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "$name: stopped"
}
