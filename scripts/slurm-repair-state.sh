#!/usr/bin/env bash
# Make a test cluster's slurmctld state directory usable again (called by slurm-up.sh before it
# starts slurmctld; a test cluster's state is disposable).
#
#   slurm-repair-state.sh DIR USER CLUSTER
#
# - DIR holds the state of another cluster (an earlier Slurm with another ClusterName):
#   slurmctld would refuse to start ("CLUSTER NAME MISMATCH"). DIR is moved to DIR.stale
#   (replacing an earlier one) and made afresh.
# - Files in DIR owned by another user (an earlier Slurm ran as another SlurmUser): slurmctld,
#   running as USER, fails with "mkdir ... Permission denied". They are given to USER.
# Prints one line per repair on stderr; nothing when DIR is fine.
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 DIR USER CLUSTER" >&2; exit 2; }
dir=$1 user=$2 cluster=$3
note() { echo "slurm-up: $*" >&2; }

if [ -f "$dir/clustername" ]; then
    recorded=$(tr -d '[:space:]' < "$dir/clustername")
    if [ "$recorded" != "$cluster" ]; then
        rm -rf "$dir.stale"
        mv "$dir" "$dir.stale"
        note "$dir held the state of cluster '$recorded', not '$cluster': moved to $dir.stale"
    fi
fi
mkdir -p "$dir"
if [ -n "$(find "$dir" \! -user "$user" -print -quit)" ]; then
    chown -R "$user": "$dir"
    note "$dir had files of another user: given to $user"
fi
chmod 0755 "$dir"
