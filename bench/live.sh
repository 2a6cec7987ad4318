#!/usr/bin/env bash
# How long a commit keeps the session frozen, on the engine benchmark's ~1 GB
# workload (W1, ~54k entries) as the upper dir of a running runc container,
# with a scratch home bind-mounted at /home/work as a platform session has:
# freezeframe commit --pause auto vs --pause full vs podman commit --pause, on
# the same data in the same run. Frozen time is measured from outside by
# sampling the container's freezer every millisecond, for every contender alike
# (freezeframe's own frozen_ms, frozen.path and frozen.frozen_read are printed
# beside it).
#
# Sizes (LIVE_SIZES, default "54k"): `54k` (or `w1`) is W1 with an empty home;
# any other count (250k, 1m, 12000) is W1 plus a home of that many small files
# (100 to 1,100 bytes each), generated once and cached in $BENCH_DIR/homes/N.
# On ext4 every small file takes a 4 KiB block: a 1M-file home needs about
# 4.1 GiB of disk, 250k about 1 GiB.
#
# Loads (LIVE_LOADS, default "idle writer"):
#   idle    nothing runs in the session but `sleep`;
#   writer  one process appends 1 MiB of random bytes every 50 ms (~20 MB/s);
#   busy    the appender, plus one process writing a new 4 KiB file every
#           10 ms in one directory, plus one appending a line to a file in each
#           of 200 directories, round after round (50 ms between rounds).
# The writers start afresh for each run and what they wrote is removed after it.
#
# Contenders: LIVE_CONTENDERS (default "auto full podman") at 54k,
# LIVE_BIG_CONTENDERS (default "auto") at the other sizes; podman copies the
# tree (and the home) into its container with `podman cp`, which takes long at
# large sizes.
#
# freezeframe runs with the default config; LIVE_CONFIG=FILE gives it another
# (e.g. `[freeze] precopy_rounds = 0`, to see the pause without pre-copy).
#
#   bash bench/live.sh            # BENCH_DIR=/var/tmp/freezeframe-bench, BENCH_RUNS=3
#   LIVE_SIZES="54k 250k 1m" LIVE_LOADS="idle busy" bash bench/live.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${BENCH_RUNS:-3}
config=${LIVE_CONFIG:-/dev/null}
sizes=${LIVE_SIZES:-54k}
loads=${LIVE_LOADS:-}
[[ -n $loads ]] || loads="idle writer"
contenders=${LIVE_CONTENDERS:-}
[[ -n $contenders ]] || contenders="auto full podman"
big_contenders=${LIVE_BIG_CONTENDERS:-auto}
bash scripts/deps.sh bench >/dev/null
if [[ " $contenders $big_contenders " == *" podman "* ]]; then
  command -v podman >/dev/null || { echo "podman is needed: apt-get install podman" >&2; exit 1; }
fi
cargo build --release --locked -p freezeframe >/dev/null 2>&1
ff=$root/target/release/freezeframe
source bench/workload.sh
# This run's scratch: runs side by side never delete each other's.
work=$dir/live-$$
session() { WORK=$work bash bench/session.sh "$@"; }
echo "workload: $files entries, $((bytes >> 20)) MiB in the container's upper dir; sizes: $sizes; loads: $loads; $runs runs each (median), podman ${PODMAN_RUNS:-1}"

id=ffbench-$$
pid_pod=ffbench-pod-$$
homes=()
cleanup() {
  session stop "$id"
  podman rm -f "$pid_pod" >/dev/null 2>&1 || true
  podman rmi -f "localhost/$pid_pod-img" "localhost/ffbench-base" >/dev/null 2>&1 || true
  # Never through a mount still in place: that would delete the workload.
  rm -rf --one-file-system "$work"
  rm -f "$upper/var/log/app.log"
  for h in "${homes[@]}"; do rm -rf --one-file-system "$h/busy"; done
}
trap cleanup EXIT
umount "$work/rootfs" 2>/dev/null || true
rm -rf --one-file-system "$work"; mkdir -p "$work/out"
session lower
mkdir -p "$upper/var/log"
runs_tsv=$work/runs.tsv
: > "$runs_tsv"

# row SIZE ENTRIES LOAD CONTENDER EXT OWN PATH READ WALL
row() { local IFS=$'\t'; echo "$*" >> "$runs_tsv"; }

run_ff() { # SIZE ENTRIES MODE LOAD
  for _ in $(seq "$runs"); do
    session writers-on "$4" runc exec -d "$id"
    out=$(session watch "$freezer" "$ff" commit "$id" --config "$config" --pause "$3" --json --force -o "$work/out/ff.tar")
    read -r e _ w <<<"$out"
    out=$(session frozen "$work/last.json")
    IFS=$'\t' read -r own path fread <<<"$out"
    session writers-off "$4" runc exec "$id"
    rm -f "$work/out/ff.tar"
    row "$1" "$2" "$4" "freezeframe --pause $3" "$e" "$own" "$path" "$fread" "$w"
  done
}

pod_runs=${PODMAN_RUNS:-1}
pod_base=0
run_podman() { # SIZE ENTRIES HOME
  # podman: the same tree in a podman container started with runc.
  if ((!pod_base)); then
    "$ff" commit --config /dev/null --upper "$work/lower" --tag ffbench-base -o "$work/base.tar" --force --json >/dev/null
    podman load -q -i "$work/base.tar" >/dev/null
    rm -f "$work/base.tar"
    pod_base=1
  fi
  podman run -d --name "$pid_pod" --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 \
    localhost/ffbench-base:latest sleep 1000000 >/dev/null 2>&1 || \
  podman run -d --name "$pid_pod" --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 \
    ffbench-base sleep 1000000 >/dev/null
  podman cp "$upper/." "$pid_pod:/" >/dev/null
  [[ -z $(ls -A "$3") ]] || podman cp "$3/." "$pid_pod:/home/work/" >/dev/null
  local ppid pfreezer
  ppid=$(podman inspect --format '{{.State.Pid}}' "$pid_pod")
  pfreezer=$(awk -F: '$2=="freezer"{print "/sys/fs/cgroup/freezer"$3}' "/proc/$ppid/cgroup")
  for load in $loads; do
    for i in $(seq "$pod_runs"); do
      session writers-on "$load" podman exec -d "$pid_pod"
      out=$(session watch "$pfreezer" podman commit -q --pause=true "$pid_pod" "$pid_pod-img-$i")
      read -r e _ w <<<"$out"
      podman rmi -f "$pid_pod-img-$i" >/dev/null 2>&1 || true
      session writers-off "$load" podman exec "$pid_pod"
      row "$1" "$2" "$load" "podman commit --pause" "$e" - - - "$w"
    done
  done
  podman rm -f "$pid_pod" >/dev/null 2>&1
}

for size in $sizes; do
  case $size in
    54k|w1) n=0; label="54k (W1)" ;;
    *) n=$(session count "$size"); label=$size ;;
  esac
  out=$(session home "$n")
  read -r home _ <<<"$out"
  homes+=("$home")
  entries=$((files + $(find "$home" -mindepth 1 | wc -l)))
  echo "size $label: $entries entries"
  set_contenders=$contenders
  [[ $n -eq 0 ]] || set_contenders=$big_contenders
  freezer=$(session start "$id" "$upper" "$home")
  for load in $loads; do
    for c in $set_contenders; do
      [[ $c == podman ]] || run_ff "$label" "$entries" "$c" "$load"
    done
  done
  session stop "$id"
  [[ " $set_contenders " != *" podman "* ]] || run_podman "$label" "$entries" "$home"
done

echo
python3 - "$runs_tsv" <<'PY'
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
groups = collections.OrderedDict()
for size, entries, load, who, ext, own, path, read, wall in rows:
    groups.setdefault((size, entries, load, who), []).append((ext, own, path, read, wall))

def med(xs):
    xs = [float(x) for x in xs if x not in ("-", "")]
    return statistics.median_low(xs) if xs else None

def distinct(xs):
    c = collections.Counter(xs)
    if len(c) == 1:
        return next(iter(c))
    return "; ".join(f"{v} ({k}x)" for v, k in c.most_common())

loads = {"idle": "idle", "writer": "20 MB/s writer", "busy": "busy (3 writers)"}
print(f"{'size':<10} {'entries':>9} {'load':<17} {'contender':<26} {'frozen_ms':>9} {'own_ms':>7} "
      f"{'wall_s':>8}  {'path':<20} frozen_read")
res = {}
for (size, entries, load, who), runs in groups.items():
    ext, own, wall = med(r[0] for r in runs), med(r[1] for r in runs), med(r[4] for r in runs)
    res[(size, load, who)] = (ext, wall)
    own_s = "-" if own is None else f"{own:.0f}"
    print(f"{size:<10} {entries:>9} {loads.get(load, load):<17} {who:<26} {ext:>9.0f} {own_s:>7} "
          f"{wall:>8.2f}  {distinct(r[2] for r in runs):<20} {distinct(r[3] for r in runs)}")
print()
auto, full = "freezeframe --pause auto", "freezeframe --pause full"
def target(what, value, met):
    print(f"target {what + ':':<48} {value} {'met' if met else 'NOT met'}")
for (size, load, who), (ext, wall) in res.items():
    if who != auto:
        continue
    if load == "idle":
        target(f"idle frozen <= 50 ms ({size})", f"{ext:.0f} ms", ext <= 50)
    elif load == "busy":
        target(f"busy frozen <= 300 ms ({size})", f"{ext:.0f} ms", ext <= 300)
    elif load == "writer":
        target(f"writer frozen <= 1000 ms ({size})", f"{ext:.0f} ms", ext <= 1000)
    f = res.get((size, load, full))
    if f:
        target(f"auto wall <= 1.2 x full ({size}, {load})", f"{wall / f[1]:.2f}", wall / f[1] <= 1.2)
PY
