# tests/lib.sh — sourced by the daemon script tests (federation.sh, flood.sh, disk_faults.sh)
# after `build=$1`: the data dir, a temp dir removed on exit (kept with KEEP=1), the processes
# to kill on exit (append PIDs to pids), and wait_for. Each test defines fail() itself (what
# it prints differs) and may define cleanup_extra() for more to undo on exit.
data=/usr/share/doc/libfann-dev/examples/datasets
py=/usr/bin/python3
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ -n "${KEEP:-}" ]; then trap - EXIT; fi

# Waits (up to $2 seconds) until the shell condition $1 holds, else fail().
wait_for() {
  local cond=$1 limit=$2 t=0
  until eval "$cond"; do
    sleep 0.1; t=$((t + 1))
    [ "$t" -le $((limit * 10)) ] || fail "timed out waiting for: $cond"
  done
}
