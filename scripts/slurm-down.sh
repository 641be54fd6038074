#!/usr/bin/env bash
# Stop the single-node Slurm started by scripts/slurm-up.sh.
#
# Stops slurmd, then slurmctld (saved job state stays in /var/spool/slurmctld, so job ids keep
# increasing across restarts). munged is left running because other tools may use it and it is
# harmless; pass --munge to stop it too. Jobs still running are killed with slurmd's steps.
# Idempotent: exits 0 when nothing is running.
set -euo pipefail

STOP_MUNGE=0
for arg in "$@"; do
    case "$arg" in
        --munge) STOP_MUNGE=1 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "slurm-down: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" -eq 0 ] || { echo "slurm-down: error: must run as root" >&2; exit 1; }

stop_pidfile() {
    local name=$1 f=$2 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm-down: $name ($pid) did not stop in 10s; sending KILL" >&2
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}

stop_pidfile slurmd /run/slurmd.pid
stop_pidfile slurmctld /run/slurmctld.pid
if [ "$STOP_MUNGE" -eq 1 ]; then
    stop_pidfile munged /run/munge/munged.pid
fi
echo "slurm-down: stopped slurmd and slurmctld$([ "$STOP_MUNGE" -eq 1 ] && echo ' and munged')"
