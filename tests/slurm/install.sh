#!/usr/bin/env bash
# Install a one-node SLURM cluster with accounting (Debian 12, as root).
# Idempotent: does nothing when the packages are already there.
set -euo pipefail
packages=(slurm-wlm munge slurmdbd mariadb-server)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v slurmctld slurmd slurmdbd munged sacctmgr mariadbd >/dev/null
