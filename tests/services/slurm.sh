#!/usr/bin/env bash
# A real single-node SLURM cluster for the test suite (Debian 12, root, no systemd).
#
#   tests/services/slurm.sh start    # (re)start from a clean slate; prints `export SLURM_CONF=...`
#   tests/services/slurm.sh stop     # cancel jobs, stop the daemons started here
#   tests/services/slurm.sh status   # daemons, sinfo; exit 0 only if the cluster answers
#
# Daemons: munged, MariaDB + slurmdbd (accounting: `sacct`, honest job states for submitit),
# slurmctld, slurmd. Everything lives under $CORRGD_SLURM_DIR (default /tmp/corrgd-slurm);
# `$CORRGD_SLURM_DIR/env` holds the `export SLURM_CONF=...` line that tests read.
# `start` is idempotent: it stops whatever it started before, wipes the Slurm state and the
# accounting database (job ids restart at 1, so old sacct records would collide), then starts.
set -euo pipefail

DIR=${CORRGD_SLURM_DIR:-/tmp/corrgd-slurm}
CPUS=${CORRGD_SLURM_CPUS:-8}        # advertised CPUs: more than the machine has (oversubscribed)
CRED_EXPIRE=${CORRGD_SLURM_CRED_EXPIRE:-10}   # seconds a requeued job waits before restarting
export SLURM_CONF="$DIR/slurm.conf"
export DEBIAN_FRONTEND=noninteractive
PACKAGES="slurmctld slurmd slurm-client slurmdbd munge mariadb-server"

log() { echo "slurm.sh: $*" >&2; }

alive() {  # alive PIDFILE -> 0 if the process named in it runs
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_pidfile() {  # stop_pidfile PIDFILE: SIGTERM, wait up to 15 s, then SIGKILL
  local f=$1 p
  alive "$f" || { rm -f "$f"; return 0; }
  p=$(cat "$f")
  kill "$p" 2>/dev/null || true
  for _ in $(seq 75); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$p" 2>/dev/null && { log "pid $p ignored SIGTERM, killing"; kill -9 "$p" || true; }
  rm -f "$f"
}

install_packages() {
  # shellcheck disable=SC2086
  dpkg -s $PACKAGES >/dev/null 2>&1 && return 0
  log "installing $PACKAGES"
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
}

start_munge() {
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  if ! munge -n >/dev/null 2>&1; then
    su -s /bin/sh munge -c /usr/sbin/munged   # daemonizes; pid in /run/munge/munged.pid
    touch "$DIR/munged.ours"
  fi
  for _ in $(seq 50); do munge -n | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "munge does not answer"; return 1
}

write_slurm_conf() {
  local host mem
  host=$(hostname -s)
  mem=$(slurmd -C | head -1 | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  cat >"$SLURM_CONF" <<EOF
# written by tests/services/slurm.sh
ClusterName=corrgd
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may not start again before its credential expires (default 120 s)
AuthInfo=cred_expire=${CRED_EXPIRE}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
# trust the CPUs= below rather than the hardware: oversubscribe a small machine
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MailProg=/bin/true
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool
SlurmctldPidFile=${DIR}/slurmctld.pid
SlurmdPidFile=${DIR}/slurmd.pid
SlurmctldLogFile=${DIR}/log/slurmctld.log
SlurmdLogFile=${DIR}/log/slurmd.log
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${CPUS} Boards=1 SocketsPerBoard=1 CoresPerSocket=${CPUS} ThreadsPerCore=1 RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_accounting() {
  if ! mariadb-admin ping >/dev/null 2>&1; then
    setsid /etc/init.d/mariadb start >/dev/null   # own session: outlives the caller's job
    touch "$DIR/mariadb.ours"
  fi
  mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db;
              CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=${DIR}/log/slurmdbd.log
PidFile=${DIR}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/slurmdbd.conf"   # slurmdbd refuses a group/world-readable conf
  slurmdbd                         # reads slurmdbd.conf next to $SLURM_CONF; daemonizes
  for _ in $(seq 150); do sacctmgr -n list cluster >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "slurmdbd does not answer (see $DIR/log/slurmdbd.log)"; return 1
}

do_start() {
  local t0=$SECONDS
  do_stop
  # someone else's Slurm daemons would hold the ports; never kill what we did not start
  local others
  others=$(for d in slurmctld slurmd slurmdbd; do pgrep -x "$d" || true; done | xargs)
  if [ -n "$others" ]; then
    log "Slurm daemons not started by this script are running (pids: $others);"
    log "stop them first (e.g. /work/shared/notes/teardown-slurm.sh)"; exit 1
  fi
  install_packages
  rm -rf "$DIR/state" "$DIR/spool" "$DIR/log"
  mkdir -p "$DIR"/{state,spool,log}
  start_munge
  write_slurm_conf
  start_accounting
  slurmctld
  slurmd
  for _ in $(seq 150); do
    [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break; sleep 0.2
  done
  if [ "$(sinfo -h -o %T 2>/dev/null)" != idle ]; then
    log "node not idle (see $DIR/log/)"; sinfo >&2 || true; exit 1
  fi
  echo "export SLURM_CONF=$SLURM_CONF" >"$DIR/env"
  log "cluster up in $((SECONDS - t0)) s"
  cat "$DIR/env"
}

do_stop() {
  # cancel jobs first: their slurmstepd/python processes outlive slurmd otherwise
  if alive "$DIR/slurmctld.pid" && [ -n "$(squeue -h -o %A 2>/dev/null)" ]; then
    squeue -h -o %A | sort -u | xargs -r scancel 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for d in slurmd slurmctld slurmdbd; do stop_pidfile "$DIR/$d.pid"; done
  if [ -e "$DIR/munged.ours" ]; then
    stop_pidfile /run/munge/munged.pid
    rm -f "$DIR/munged.ours"
  fi
  if [ -e "$DIR/mariadb.ours" ]; then
    /etc/init.d/mariadb stop >/dev/null 2>&1 || true
    rm -f "$DIR/mariadb.ours"
  fi
  rm -f "$DIR/env"
}

do_status() {
  local ok=0
  for d in slurmdbd slurmctld slurmd; do
    if alive "$DIR/$d.pid"; then echo "$d: running (pid $(cat "$DIR/$d.pid"))"
    else echo "$d: stopped"; ok=1; fi
  done
  if [ "$ok" = 0 ] && sinfo >/dev/null 2>&1; then
    sinfo
    [ -s "$DIR/env" ] && cat "$DIR/env"
    return 0
  fi
  return 1
}

case "${1:-}" in
  start) mkdir -p "$DIR"; do_start ;;
  stop) mkdir -p "$DIR"; do_stop ;;
  status) do_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
