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
bash scripts/deps.sh test >/dev/null
command -v podman >/dev/null || { echo "podman is needed: apt-get install podman" >&2; exit 1; }
cargo build --release --locked -p freezeframe >/dev/null 2>&1
ff=$root/target/release/freezeframe
source bench/workload.sh
echo "workload: $files entries, $((bytes >> 20)) MiB in the container's upper dir; $runs runs each (median)"

work=$dir/live
id=ffbench-$$
pid_pod=ffbench-pod-$$
cleanup() {
  runc kill "$id" KILL >/dev/null 2>&1 || true
  runc delete -f "$id" >/dev/null 2>&1 || true
  umount -l "$work/rootfs" 2>/dev/null || true
  podman rm -f "$pid_pod" >/dev/null 2>&1 || true
  podman rmi -f "localhost/$pid_pod-img" "localhost/ffbench-base" >/dev/null 2>&1 || true
  rm -rf "$work"
  rm -f "$upper/var/log/app.log"
}
trap cleanup EXIT
rm -rf "$work"; mkdir -p "$work"/{lower/bin,ovl,rootfs,out}
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

writer_on() { runc exec -d "$id" sh -c 'while :; do head -c 1048576 /dev/urandom >> /var/log/app.log; sleep 0.05; done'; }
writer_off() { runc exec "$id" sh -c 'kill $(pidof sh | tr " " "\n" | grep -v "^1$" | grep -v "^$$\$") 2>/dev/null; : > /var/log/app.log' || true; }

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

run_ff() { # MODE
  local ext=() own=() wall=()
  for _ in $(seq "$runs"); do
    read -r e _ w <<<"$(watch "$freezer" "$ff" commit "$id" --config /dev/null --pause "$1" --json --force -o "$work/out/ff.tar")"
    ext+=("$e"); wall+=("$w")
    own+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["frozen_ms"])' "$work/last.json")")
  done
  echo "$(printf '%s\n' "${ext[@]}" | median) $(printf '%s\n' "${own[@]}" | median) $(printf '%s\n' "${wall[@]}" | median)"
}

declare -A R
for load in idle writer; do
  [[ $load == writer ]] && writer_on
  sleep 1
  R[auto_$load]=$(run_ff auto)
  R[full_$load]=$(run_ff full)
  [[ $load == writer ]] && writer_off
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
pod_run() {
  local ext=() wall=()
  for i in $(seq "$runs"); do
    read -r e _ w <<<"$(watch "$pfreezer" podman commit --pause=true "$pid_pod" "$pid_pod-img-$i")"
    ext+=("$e"); wall+=("$w")
    podman rmi -f "$pid_pod-img-$i" >/dev/null 2>&1 || true
  done
  echo "$(printf '%s\n' "${ext[@]}" | median) - $(printf '%s\n' "${wall[@]}" | median)"
}
R[podman_idle]=$(pod_run)
podman exec -d "$pid_pod" sh -c 'while :; do head -c 1048576 /dev/urandom >> /var/log/app.log; sleep 0.05; done'
sleep 1
R[podman_writer]=$(pod_run)

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
read -r ai _ aw <<<"${R[auto_idle]}"; read -r wi _ _ <<<"${R[auto_writer]}"; read -r _ _ fw <<<"${R[full_idle]}"
echo
awk -v ai="$ai" -v wi="$wi" -v aw="$aw" -v fw="$fw" 'BEGIN {
  printf "target idle frozen <= 300 ms:        %s ms %s\n", ai, (ai <= 300 ? "met" : "NOT met")
  printf "target writer frozen <= 1000 ms:     %s ms %s\n", wi, (wi <= 1000 ? "met" : "NOT met")
  printf "target auto wall <= 1.2 x full:      %.2f %s\n", aw/fw, (aw/fw <= 1.2 ? "met" : "NOT met")
}'
