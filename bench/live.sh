#!/usr/bin/env bash
# How long a commit keeps the session frozen, on the engine benchmark's ~1 GB
# workload placed in a running container: freezeframe commit --pause auto vs
# --pause full vs podman commit --pause, on the same data in the same run, idle
# and with a process appending ~20 MB/s to a file. Frozen time is measured from
# outside by sampling the container's freezer every millisecond, for every
# contender alike (freezeframe's own frozen_ms is printed beside it).
#
#   bash bench/live.sh            # BENCH_DIR=/var/tmp/freezeframe-bench, BENCH_RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${BENCH_RUNS:-3}
bash scripts/deps.sh bench >/dev/null
command -v podman >/dev/null || { echo "podman is needed: apt-get install podman" >&2; exit 1; }
cargo build --release --locked -p freezeframe >/dev/null 2>&1
ff=$root/target/release/freezeframe
source bench/workload.sh
echo "workload: $files entries, $((bytes >> 20)) MiB in the container's upper dir; $runs runs each (median), podman ${PODMAN_RUNS:-1}"

work=$dir/live
id=ffbench-$$
pid_pod=ffbench-pod-$$
cleanup() {
  runc kill "$id" KILL >/dev/null 2>&1 || true
  runc delete -f "$id" >/dev/null 2>&1 || true
  umount -l "$work/rootfs" 2>/dev/null || true
  podman rm -f "$pid_pod" >/dev/null 2>&1 || true
  podman rmi -f "localhost/$pid_pod-img" "localhost/ffbench-base" >/dev/null 2>&1 || true
  # Never through a mount still in place: that would delete the workload.
  rm -rf --one-file-system "$work"
  rm -f "$upper/var/log/app.log"
}
trap cleanup EXIT
umount "$work/rootfs" 2>/dev/null || true
rm -rf --one-file-system "$work"; mkdir -p "$work"/{lower/bin,ovl,rootfs,out}
cp /bin/busybox "$work/lower/bin/"
for t in sh sleep head cat; do ln -s busybox "$work/lower/bin/$t"; done
mkdir -p "$work/lower"/{dev,proc,sys,tmp,etc} "$upper/var/log"
mount -t overlay overlay -o "lowerdir=$work/lower,upperdir=$upper,workdir=$work/ovl" "$work/rootfs"
(cd "$work" && runc spec && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["args"] = ["sleep", "1000000"]
c["process"]["terminal"] = False
c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
c["root"]["readonly"] = False
json.dump(c, open("config.json", "w"))
PY
)
(cd "$work" && runc run -d "$id" >/dev/null)
freezer=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['cgroup_paths']['freezer'])" "/run/runc/$id/state.json")

# The writer appends 1 MiB every 50 ms (about 20 MB/s); each run starts it
# afresh on an empty file, so every run sees the same growth.
writer='echo $$ > /tmp/writer.pid; while :; do head -c 1048576 /dev/urandom >> /var/log/app.log; sleep 0.05; done'
writer_on() { runc exec -d "$id" sh -c "$writer"; sleep 0.2; }
writer_off() { runc exec "$id" sh -c 'kill $(cat /tmp/writer.pid) 2>/dev/null; : > /var/log/app.log' || true; }

# watch CGROUP CMD...: runs CMD while sampling the freezer; prints
# "external_frozen_ms freezes wall_s" and leaves CMD's stdout in $work/last.json
watch() {
  local cg=$1; shift
  python3 bench/freeze_watch.py v1 "$cg" > "$work/watch" & local w=$!
  until grep -q ready "$work/watch" 2>/dev/null; do sleep 0.01; done
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$work/last.json"
  t1=$(date +%s.%N)
  kill -TERM $w; wait $w || true
  echo "$(tail -1 "$work/watch") $(echo "$t1 - $t0" | bc)"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run_ff() { # MODE LOAD
  local ext=() own=() wall=()
  for _ in $(seq "$runs"); do
    [[ $2 == writer ]] && writer_on
    read -r e _ w <<<"$(watch "$freezer" "$ff" commit "$id" --config /dev/null --pause "$1" --json --force -o "$work/out/ff.tar")"
    ext+=("$e"); wall+=("$w")
    own+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["frozen_ms"])' "$work/last.json")")
    [[ $2 == writer ]] && writer_off
  done
  echo "$(printf '%s\n' "${ext[@]}" | median) $(printf '%s\n' "${own[@]}" | median) $(printf '%s\n' "${wall[@]}" | median)"
}

declare -A R
for load in idle writer; do
  R[auto_$load]=$(run_ff auto $load)
  R[full_$load]=$(run_ff full $load)
done

# podman: the same workload in a podman container started with runc.
"$ff" commit --config /dev/null --upper "$work/lower" --tag ffbench-base -o "$work/base.tar" --force --json >/dev/null
podman load -q -i "$work/base.tar" >/dev/null
podman run -d --name "$pid_pod" --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 \
  localhost/ffbench-base:latest sleep 1000000 >/dev/null 2>&1 || \
podman run -d --name "$pid_pod" --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 \
  ffbench-base sleep 1000000 >/dev/null
podman cp "$upper/." "$pid_pod:/" >/dev/null
ppid=$(podman inspect --format '{{.State.Pid}}' "$pid_pod")
pfreezer=$(awk -F: '$2=="freezer"{print "/sys/fs/cgroup/freezer"$3}' "/proc/$ppid/cgroup")
pod_runs=${PODMAN_RUNS:-1}
pod_run() { # LOAD
  local ext=() wall=()
  for i in $(seq "$pod_runs"); do
    [[ $1 == writer ]] && podman exec -d "$pid_pod" sh -c "$writer" >/dev/null && sleep 0.2
    read -r e _ w <<<"$(watch "$pfreezer" podman commit --pause=true "$pid_pod" "$pid_pod-img-$i")"
    ext+=("$e"); wall+=("$w")
    podman rmi -f "$pid_pod-img-$i" >/dev/null 2>&1 || true
    [[ $1 == writer ]] && { podman exec "$pid_pod" sh -c 'kill $(cat /tmp/writer.pid); : > /var/log/app.log' || true; }
  done
  echo "$(printf '%s\n' "${ext[@]}" | median) - $(printf '%s\n' "${wall[@]}" | median)"
}
R[podman_idle]=$(pod_run idle)
R[podman_writer]=$(pod_run writer)

printf '\n%-36s %16s %14s %10s\n' contender frozen_ms frozen_ms_own wall_s
for load in idle writer; do
  for k in auto full podman; do
    read -r e o w <<<"${R[${k}_$load]}"
    case $k in
      auto) label="freezeframe --pause auto" ;;
      full) label="freezeframe --pause full" ;;
      podman) label="podman commit --pause" ;;
    esac
    printf '%-36s %16s %14s %10.2f\n' "$label ($load)" "$e" "$o" "$w"
  done
done
read -r ai _ aw <<<"${R[auto_idle]}"; read -r wi _ ww <<<"${R[auto_writer]}"
read -r _ _ fw <<<"${R[full_idle]}"; read -r _ _ fww <<<"${R[full_writer]}"
echo
awk -v ai="$ai" -v wi="$wi" -v aw="$aw" -v fw="$fw" -v ww="$ww" -v fww="$fww" 'BEGIN {
  printf "target idle frozen <= 300 ms:               %s ms %s\n", ai, (ai <= 300 ? "met" : "NOT met")
  printf "target writer frozen <= 1000 ms:            %s ms %s\n", wi, (wi <= 1000 ? "met" : "NOT met")
  printf "target auto wall <= 1.2 x full (idle):      %.2f %s\n", aw/fw, (aw/fw <= 1.2 ? "met" : "NOT met")
  printf "target auto wall <= 1.2 x full (writer):    %.2f %s\n", ww/fww, (ww/fww <= 1.2 ? "met" : "NOT met")
}'
