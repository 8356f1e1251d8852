#!/usr/bin/env bash
# Stop the daemons started by tests/slurm/start.sh, by the PIDs they recorded.
set -uo pipefail
stop() {  # stop PIDFILE
    local pidfile=$1 pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}
stop /run/slurmd.pid
stop /run/slurmctld.pid
stop /run/slurmdbd.pid
stop /run/hstest-mariadb.pid
stop /run/hstest-munged.pid
exit 0
