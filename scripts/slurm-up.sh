#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (for corral's tests and benchmarks).
#
# Idempotent: run it as often as you like. It
#   1. installs slurm-wlm + munge with apt if (and only if) they are missing,
#   2. creates the munge key if missing and starts munged as the munge user,
#   3. writes /etc/slurm/slurm.conf for this host (name, CPU count, memory),
#   4. starts slurmctld and slurmd (no systemd needed), restarting them if the
#      configuration changed or they are not healthy; before slurmctld starts, state an earlier
#      Slurm left (another cluster name, files of another user) is repaired
#      (scripts/slurm-repair-state.sh: a test cluster's state is disposable),
#   5. waits until the node is idle and `srun -N1 true` works (timeout: $CORRAL_SLURM_TIMEOUT, 60 s).
# It prints one line on success and exits non-zero with a message on failure.
#
# Environment:
#   CORRAL_SLURM_CPUS=N     advertise N CPUs instead of `nproc` (uses SlurmdParameters=
#                           config_overrides; lets a benchmark run more than nproc tiny jobs at once)
#   CORRAL_SLURM_CLEAN=1    start slurmctld with -c (forget all saved jobs; job ids restart)
#   CORRAL_SLURM_TIMEOUT=S  seconds to wait for the cluster to become usable (default 60)
#
# Logs: /var/log/slurm/slurmctld.log, /var/log/slurm/slurmd.log, /var/log/munge/munged.log
# Stop with scripts/slurm-down.sh.
set -euo pipefail

TIMEOUT="${CORRAL_SLURM_TIMEOUT:-60}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
START=$(date +%s)

die() { echo "slurm-up: error: $*" >&2; exit 1; }
note() { echo "slurm-up: $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it writes /etc/slurm and starts daemons)"

# ---------------------------------------------------------------- 1. packages
need_install=0
for bin in sbatch squeue sinfo srun scontrol slurmctld slurmd munged munge; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need_install=1
done
if [ "$need_install" -eq 1 ]; then
    if pgrep -x apt-get >/dev/null 2>&1 || pgrep -x dpkg >/dev/null 2>&1; then
        note "waiting for a running apt/dpkg to finish"
        for _ in $(seq 1 600); do
            pgrep -x apt-get >/dev/null 2>&1 || pgrep -x dpkg >/dev/null 2>&1 || break
            sleep 1
        done
    fi
    if ! command -v sbatch >/dev/null 2>&1 || ! [ -x /usr/sbin/slurmctld ] || ! [ -x /usr/sbin/munged ]; then
        note "installing slurm-wlm and munge with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null || die "apt-get update failed"
        apt-get install -y -qq slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge failed"
    fi
fi
export PATH="$PATH:/usr/sbin:/sbin"

# ---------------------------------------------------------------- hostname
HOST=$(hostname -s)
[ -n "$HOST" ] || die "hostname -s is empty"
if ! getent hosts "$HOST" >/dev/null 2>&1; then
    note "adding '$HOST' to /etc/hosts (it does not resolve)"
    # /etc/hosts may lack a final newline
    [ -z "$(tail -c1 /etc/hosts 2>/dev/null)" ] || echo >> /etc/hosts
    echo "127.0.0.1 $HOST" >> /etc/hosts
fi

# ---------------------------------------------------------------- 2. munge
mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge
chown munge:munge /etc/munge /var/log/munge /var/lib/munge /run/munge
chmod 0700 /etc/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    note "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --force --keyfile=/etc/munge/munge.key >/dev/null
    elif command -v create-munge-key >/dev/null 2>&1; then
        create-munge-key -f >/dev/null
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
if ! munge_ok; then
    if [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        sleep 1
    fi
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    if command -v runuser >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged --force || die "munged failed to start (see /var/log/munge/munged.log)"
    else
        su -s /bin/sh munge -c "/usr/sbin/munged --force" || die "munged failed to start"
    fi
    for _ in $(seq 1 50); do munge_ok && break; sleep 0.1; done
    munge_ok || die "munge does not work (munge -n | unmunge failed; see /var/log/munge/munged.log)"
fi

# ---------------------------------------------------------------- 3. slurm.conf
REAL_CPUS=$(nproc)
CPUS="${CORRAL_SLURM_CPUS:-$REAL_CPUS}"
case "$CPUS" in ''|*[!0-9]*) die "CORRAL_SLURM_CPUS must be a positive integer, got '$CPUS'";; esac
[ "$CPUS" -ge 1 ] || die "CORRAL_SLURM_CPUS must be >= 1"
MEM_KB=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
# a bit below the real amount (slurmd refuses a node advertising more than it has)
REAL_MEM_MB=$(( MEM_KB / 1024 * 95 / 100 ))
[ "$REAL_MEM_MB" -ge 64 ] || REAL_MEM_MB=64
DEF_MEM=$(( REAL_MEM_MB / CPUS ))
[ "$DEF_MEM" -le 1024 ] || DEF_MEM=1024
[ "$DEF_MEM" -ge 1 ] || DEF_MEM=1
SLURMD_PARAMS=""
if [ "$CPUS" -ne "$REAL_CPUS" ]; then
    SLURMD_PARAMS="SlurmdParameters=config_overrides"
fi
SLURM_USER=root
id slurm >/dev/null 2>&1 && SLURM_USER=slurm

mkdir -p "$CONF_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"
chown "$SLURM_USER": "$LOG_DIR" "$CTLD_SPOOL"
chmod 0755 "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"

NEW_CONF=$(mktemp)
trap 'rm -f "$NEW_CONF"' EXIT
cat > "$NEW_CONF" <<EOF
# Written by corral scripts/slurm-up.sh: a single-node test cluster. Edits are overwritten.
ClusterName=corral
SlurmctldHost=$HOST
SlurmUser=$SLURM_USER
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in this container: track processes through /proc, no task affinity
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
# consumable cores + memory; a job that asks for no memory gets DefMemPerCPU per CPU,
# so several single-CPU jobs share the node at once
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEF_MEM
# no accounting daemon (sacct will not work)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# fast turnaround for many tiny jobs
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,sched_min_interval=0,batch_sched_delay=0,default_queue_depth=10000,bf_interval=5,bf_continue,max_rpc_cnt=0
MinJobAge=300
MaxJobCount=200000
MaxArraySize=100001
ReturnToService=2
InactiveLimit=0
KillWait=5
OverTimeLimit=0
Waittime=0
SlurmctldTimeout=60
SlurmdTimeout=60
MessageTimeout=10
$SLURMD_PARAMS
NodeName=$HOST NodeAddr=$HOST CPUs=$CPUS RealMemory=$REAL_MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

conf_changed=1
if [ -f "$CONF" ] && cmp -s "$NEW_CONF" "$CONF"; then
    conf_changed=0
else
    install -m 0644 "$NEW_CONF" "$CONF"
fi

# ---------------------------------------------------------------- 4. daemons
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

stop_pidfile() {
    local f=$1 pid
    pid_alive "$f" || { rm -f "$f"; return 0; }
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
}

if [ "$conf_changed" -eq 1 ]; then
    stop_pidfile /run/slurmd.pid
    stop_pidfile /run/slurmctld.pid
fi

if ! pid_alive /run/slurmctld.pid; then
    # state left by an earlier Slurm (another cluster name, another user) is repaired first
    bash "$(dirname "$0")/slurm-repair-state.sh" "$CTLD_SPOOL" "$SLURM_USER" corral
    CTLD_ARGS=()
    [ "${CORRAL_SLURM_CLEAN:-0}" = "1" ] && CTLD_ARGS+=(-c)
    /usr/sbin/slurmctld "${CTLD_ARGS[@]}" \
        || die "slurmctld failed to start (see $LOG_DIR/slurmctld.log)"
fi
# slurmd needs slurmctld answering to register; start it right away anyway (it retries)
if ! pid_alive /run/slurmd.pid; then
    /usr/sbin/slurmd || die "slurmd failed to start (see $LOG_DIR/slurmd.log)"
fi

# ---------------------------------------------------------------- 5. wait until usable
deadline=$(( START + TIMEOUT ))
state=""
while :; do
    state=$(sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        down*|drain*|drained*|fail*|inval*)
            scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        pid_alive /run/slurmctld.pid || note "slurmctld is not running"
        pid_alive /run/slurmd.pid || note "slurmd is not running"
        tail -n 5 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 2>/dev/null || true
        die "node $HOST not usable after ${TIMEOUT}s (sinfo state: '${state:-no answer}')"
    fi
    sleep 0.3
done

left=$(( deadline - $(date +%s) ))
[ "$left" -ge 5 ] || left=5
if ! out=$(timeout "$left" srun -N1 -n1 --job-name=slurm-up-check true 2>&1); then
    tail -n 5 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 2>/dev/null || true
    die "'srun -N1 true' failed: $out"
fi

echo "slurm-up: cluster 'corral' ready on $HOST (${CPUS} CPUs, ${REAL_MEM_MB} MB, partition debug) in $(( $(date +%s) - START ))s"
