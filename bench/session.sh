#!/usr/bin/env bash
# What bench/live.sh and bench/scale.sh share: a runc session the way the
# platform runs one (an overlay rootfs over a busybox lower, a scratch home
# bind-mounted at /home/work), homes of small files cached under $BENCH_DIR,
# the writers that keep a session busy, and the freezer watcher.
#
#   WORK=DIR bash bench/session.sh VERB ARGS...
#
#   count N                    N as a number (250k, 1m, 12000)
#   home N                     "PATH MADE": a home of N small files, generated
#                              once in $BENCH_DIR/homes/N; MADE is 1 if now
#   drop-home N                removes it
#   lower                      the busybox lower dir, in $WORK/lower
#   start ID UPPER HOME        runs the session; prints its v1 freezer cgroup
#   stop ID                    deletes it and unmounts its rootfs
#   writers-on LOAD EXEC...    starts LOAD's writers with EXEC (`runc exec -d ID`)
#   writers-off LOAD EXEC...   stops them and removes what they wrote
#   watch CGROUP CMD...        runs CMD sampling the freezer: prints
#                              "frozen_ms freezes wall_s", CMD's stdout in
#                              $WORK/last.json
#   frozen FILE                "frozen_ms<TAB>path<TAB>frozen_read" of a report
#
# WORK is a scratch dir of the caller's.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-/var/tmp/freezeframe-bench}
work=${WORK:?}

# Parses a count: 250k, 1m, 1M, 12000.
count_of() {
  case $1 in
    *[kK]) echo $(( ${1%[kK]} * 1000 )) ;;
    *[mM]) echo $(( ${1%[mM]} * 1000000 )) ;;
    *) echo $(( $1 )) ;;
  esac
}

# small_home N: prints "PATH MADE" for a directory of N small files (100 to
# 1,100 bytes of text each, 1,000 to a directory), generated once in
# $dir/homes/N; MADE is 1 when this call generated it. On ext4 each file takes
# a 4 KiB block: 1M files take about 4.1 GiB.
small_home() {
  local n=$1 home=$dir/homes/$1
  if [[ -f $dir/homes/$n.ready ]]; then
    echo "$home 0"
    return
  fi
  rm -rf --one-file-system "$home"
  mkdir -p "$home"
  python3 - "$home" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
line = b"%07d the quick brown fox jumps over the lazy dog 0123456789\n"
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.mkdir(d)
    fd = os.open(os.path.join(d, "f%07d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, (line % i) * (1 + i % 18))
    os.close(fd)
PY
  touch "$dir/homes/$n.ready"
  echo "$home 1"
}

# drop_home N: removes a cached home.
drop_home() {
  rm -f "$dir/homes/$1.ready"
  rm -rf --one-file-system "${dir:?}/homes/$1"
}

# session_lower: the busybox lower dir in $work/lower, with /home/work in it so
# that runc never has to make its mount point in an upper dir.
session_lower() {
  rm -rf --one-file-system "$work/lower"
  mkdir -p "$work/lower/bin"
  cp /bin/busybox "$work/lower/bin/"
  for t in sh sleep usleep head cat mkdir rm kill; do ln -s busybox "$work/lower/bin/$t"; done
  mkdir -p "$work/lower"/{dev,proc,sys,tmp,etc,var/log,home/work}
}

# session_start ID UPPER HOME: mounts an overlay of $work/lower and UPPER on
# $work/rootfs and runs `sleep` in a runc container on it, HOME bind-mounted at
# /home/work. Prints its v1 freezer cgroup.
session_start() {
  local id=$1 up=$2 hm=$3
  mkdir -p "$work"/{ovl,rootfs,bundle}
  mount -t overlay overlay -o "lowerdir=$work/lower,upperdir=$up,workdir=$work/ovl" "$work/rootfs"
  (cd "$work/bundle" && rm -f config.json && runc spec && python3 - "$work/rootfs" "$hm" <<'PY'
import json, sys
c = json.load(open("config.json"))
c["process"]["args"] = ["sleep", "1000000"]
c["process"]["terminal"] = False
c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
c["root"] = {"path": sys.argv[1], "readonly": False}
c["mounts"].append({"destination": "/home/work", "type": "bind", "source": sys.argv[2],
                    "options": ["rbind", "rw"]})
json.dump(c, open("config.json", "w"))
PY
  )
  (cd "$work/bundle" && runc run -d "$id" >/dev/null)
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['cgroup_paths']['freezer'])" "/run/runc/$id/state.json"
}

# session_stop ID: deletes the container and unmounts its rootfs.
session_stop() {
  runc kill "$1" KILL >/dev/null 2>&1 || true
  runc delete -f "$1" >/dev/null 2>&1 || true
  umount -l "$work/rootfs" 2>/dev/null || true
  rm -rf --one-file-system "$work/ovl"
}

# The writers, as container shell scripts (busybox sh), each writing its pid to
# /tmp/w-NAME.pid:
# - appender: 1 MiB every 50 ms (about 20 MB/s) to /var/log/app.log;
# - numbered: a new 4 KiB file every 10 ms in /home/work/busy/num;
# - spread:   a line appended to /home/work/busy/s/dN/log in each of 200
#   directories, round after round, 50 ms between rounds.
writer_appender='echo $$ > /tmp/w-appender.pid; while :; do head -c 1048576 /dev/urandom >> /var/log/app.log; sleep 0.05; done'
writer_numbered='echo $$ > /tmp/w-numbered.pid; mkdir -p /home/work/busy/num; i=0; while :; do i=$((i+1)); head -c 4096 /dev/urandom > /home/work/busy/num/$i; usleep 10000; done'
writer_spread='echo $$ > /tmp/w-spread.pid; d=1; while [ $d -le 200 ]; do mkdir -p /home/work/busy/s/d$d; d=$((d+1)); done; i=0; while :; do i=$((i+1)); d=1; while [ $d -le 200 ]; do echo $i >> /home/work/busy/s/d$d/log; d=$((d+1)); done; usleep 50000; done'
# Stops every writer and removes what they wrote.
writers_stop='for p in /tmp/w-*.pid; do [ -f $p ] && kill $(cat $p) 2>/dev/null; rm -f $p; done; sleep 0.1; rm -rf /home/work/busy; : > /var/log/app.log'

# writers_on LOAD EXEC...: starts the writers of LOAD (idle: none, writer: the
# appender, busy: all three) with EXEC (e.g. `runc exec -d ID`).
writers_on() {
  local load=$1; shift
  case $load in
    idle) return ;;
    writer) "$@" sh -c "$writer_appender" >/dev/null ;;
    busy) for w in "$writer_appender" "$writer_numbered" "$writer_spread"; do "$@" sh -c "$w" >/dev/null; done ;;
    *) echo "unknown load $load (idle, writer, busy)" >&2; return 1 ;;
  esac
  sleep 0.3
}

# writers_off LOAD EXEC...: stops them (EXEC without -d).
writers_off() {
  local load=$1; shift
  [[ $load == idle ]] || "$@" sh -c "$writers_stop" || true
}

# watch CGROUP CMD...: runs CMD while sampling the freezer; prints
# "external_frozen_ms freezes wall_s" and leaves CMD's stdout in $work/last.json
watch() {
  local cg=$1; shift
  python3 bench/freeze_watch.py v1 "$cg" > "$work/watch" & local w=$!
  until grep -q ready "$work/watch" 2>/dev/null; do sleep 0.01; done
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  "$@" > "$work/last.json" || rc=$?
  t1=$(date +%s.%N)
  kill -TERM $w; wait $w || true
  echo "$(tail -1 "$work/watch") $(echo "$t1 - $t0" | bc)"
  return $rc
}

# frozen_fields FILE: "frozen_ms<TAB>path<TAB>frozen_read" of a commit's JSON report.
frozen_fields() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f = r.get("frozen") or {}
print("\t".join([str(r.get("frozen_ms", "-")), f.get("path") or "-", f.get("frozen_read") or "-"]))
PY
}

verb=${1:?usage: bash bench/session.sh VERB ARGS...}
shift
case $verb in
  count) count_of "$@" ;;
  home) small_home "$@" ;;
  drop-home) drop_home "$@" ;;
  lower) session_lower ;;
  start) session_start "$@" ;;
  stop) session_stop "$@" ;;
  writers-on) writers_on "$@" ;;
  writers-off) writers_off "$@" ;;
  watch) watch "$@" ;;
  frozen) frozen_fields "$@" ;;
  *) echo "unknown verb $verb" >&2; exit 2 ;;
esac
