#!/usr/bin/env bash
# Start munged, MariaDB (127.0.0.1 only), slurmdbd, slurmctld and slurmd for a one-node
# cluster named "hstest" with one fake GPU (gres.conf File=/dev/null), no systemd.
# Facts behind each step: /work/shared/notes/slurm-on-one-machine.md.
# Every daemon writes its PID to /run/<name>.pid; tests/slurm/stop.sh stops them.
set -euo pipefail
CLUSTER=hstest
HOST=$(hostname -s)
bash "$(dirname "$0")/stop.sh"  # daemons left over from an earlier start
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >>/etc/hosts
# profiles/slurm runs here as shipped: its placeholder account and partitions exist,
# and the node announces the CPUs and memory its largest requests ask for (4 CPUs,
# 64 GB per job; config_overrides lets slurmd start with more than the machine has:
# the tiny config's jobs use a fraction of it).
CPUS=$(( $(nproc) > 8 ? $(nproc) : 8 ))
MEM=$(( $(free -m | awk '/^Mem:/ {print $2}') * 9 / 10 ))
MEM=$(( MEM > 131072 ? MEM : 131072 ))

mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
# A DRAIN state would survive restarts.
rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*

cat >/etc/slurm/slurm.conf <<CONF
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
SlurmdParameters=config_overrides
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=CHANGE-ME-cpu-partition Nodes=ALL MaxTime=INFINITE State=UP
PartitionName=CHANGE-ME-gpu-partition Nodes=ALL MaxTime=INFINITE State=UP
CONF
echo "NodeName=$HOST Name=gpu File=/dev/null" >/etc/slurm/gres.conf
cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=hstest
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
CONF
chmod 600 /etc/slurm/slurmdbd.conf

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq "$limit"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    echo "timed out waiting for $what" >&2
    return 1
}

# munge (Debian's postinst wrote /etc/munge/munge.key)
mkdir -p /run/munge && chown munge:munge /run/munge
if ! pgrep -u munge -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
fi
cp /run/munge/munged.pid /run/hstest-munged.pid
wait_for 20 munge munge -n

# MariaDB, local only
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if ! mysqladmin ping >/dev/null 2>&1; then
    (mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid \
        >/var/log/slurm/mariadb.log 2>&1 &)
    wait_for 60 mariadb mysqladmin ping
fi
cp /run/mysqld/mysqld.pid /run/hstest-mariadb.pid
mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'hstest';
          GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

slurmdbd
wait_for 30 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add account CHANGE-ME-account cluster="$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i add user root account=CHANGE-ME-account cluster="$CLUSTER" >/dev/null 2>&1 || true

slurmctld
wait_for 30 slurmctld scontrol ping
slurmd
idle() { sinfo -h -o %T | grep -q idle; }
wait_for 60 "node idle" idle
sinfo
