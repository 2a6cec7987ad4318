#!/usr/bin/env bash
# A running Docker session committed three ways, in the same run: freezeframe
# commit NAME (the base read from Docker's own store) against the platform's
# pipeline today, docker commit then docker save | gzip, and against docker
# commit then docker save | pigz. The base is about 1 GB: the engine
# benchmark's tree (see bench/workload.sh) and busybox, imported as one layer;
# the session has made some changes (a random file, part of the tree copied, a
# deletion, a file in its home). Prints each one's wall time, frozen time, output
# size and peak RSS, and the ratios to the platform's pipeline.
#
# A private dockerd runs the session (its own data root, exec root and socket,
# no network); everything the run makes is kept under one temp dir, removed at
# the end with the dockerd.
#
#   bash bench/docker-commit.sh      # BENCH_DIR=/var/tmp/freezeframe-bench, BENCH_RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${BENCH_RUNS:-3}
bash scripts/deps.sh bench >/dev/null
cargo build --release --locked -p freezeframe >/dev/null 2>&1
ff=$root/target/release/freezeframe
source bench/workload.sh
name=ffbench-sess-$$

work=$(mktemp -d "$dir/docker-commit.XXXXXX")
d=$work/docker
out=$work/out
mkdir -p "$d" "$out" "$work/home"
# The client reads no configuration of the host's.
docker() {
  DOCKER_CONFIG=$d/client DOCKER_HOST= DOCKER_CONTEXT= /usr/bin/docker -H "unix://$d/sock" "$@"
}
dockerd_pid=
cleanup() {
  set +e
  if [[ -n $dockerd_pid ]]; then
    docker rm -f "$name" >/dev/null 2>&1
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 200); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$dockerd_pid" 2>/dev/null
  fi
  # dockerd's own containerd, if it outlived dockerd.
  [[ -f $d/exec/containerd/containerd.pid ]] && kill -KILL "$(cat "$d/exec/containerd/containerd.pid")" 2>/dev/null
  # Every mount under the temp dir, innermost first, before anything is removed.
  awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m"; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# A dockerd of our own; /etc/docker/daemon.json is not read.
echo '{}' > "$d/daemon.json"
/usr/sbin/dockerd --config-file "$d/daemon.json" --data-root "$d/data" --exec-root "$d/exec" \
  -H "unix://$d/sock" --pidfile "$d/pid" --bridge=none --iptables=false --ip-masq=false \
  --storage-driver overlay2 > "$d/log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 300); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker version >/dev/null || { cat "$d/log" >&2; exit 1; }

# The base: busybox and the engine's tree under /opt/tree (hard links, not a
# copy), as one layer.
base=$work/base
mkdir -p "$base"/{bin,etc,tmp,proc,sys,dev,root,run,var/log,home/work,opt,srv}
cp /bin/busybox "$base/bin/"
for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -s busybox "$base/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nwork:x:1000:1000:work:/home/work:/bin/sh\n' > "$base/etc/passwd"
printf 'root:x:0:\nwork:x:1000:\n' > "$base/etc/group"
cp -al "$upper" "$base/opt/tree"
tar --numeric-owner -C "$base" -cf - . |
  docker import -c 'CMD ["sleep", "1000000"]' -c 'ENV PATH=/bin' - ffbench/base:1 >/dev/null
rm -rf "$base"
base_bytes=$(docker image inspect --format '{{.Size}}' ffbench/base:1)

# The session, with a scratch home, and its changes.
chown 1000:1000 "$work/home"
docker run -d --name "$name" -v "$work/home:/home/work" ffbench/base:1 >/dev/null
docker exec "$name" sh -c 'set -e
  head -c 67108864 /dev/urandom > /root/scratch.bin
  tar -C /opt/tree/usr/lib -cf - . | head -c 67108864 > /srv/stdlib-part.tar
  rm -rf /opt/tree/usr/lib/*/email
  echo changed > /etc/motd'
docker exec -u 1000 "$name" sh -c 'head -c 16777216 /dev/urandom > /home/work/notes.bin'
pid=$(docker inspect --format '{{.State.Pid}}' "$name")
freezer=$(awk -F: '$2=="freezer"{print "/sys/fs/cgroup/freezer"$3}' "/proc/$pid/cgroup")
cat > "$work/ff.toml" <<EOF
[runtime]
roots = ["$d/exec/runtime-runc/moby"]
[stores]
docker = "$d/data"
EOF
echo "base:    $((base_bytes >> 20)) MiB in one layer ($files entries of the engine's tree, and busybox)"
echo "changes: 128 MiB in the rootfs (64 MiB random, 64 MiB of the tree's files), one directory removed; 16 MiB in the home"
echo "machine: $(nproc) cores, $(uname -r); $runs runs each, median wall and frozen time, largest peak RSS"
tar -C "$d/data/overlay2" -cf - . > /dev/null   # warm the page cache for every contender alike

# Peak RSS of dockerd, where docker commit and docker save do their work: its
# high-water mark is reset before a contender runs and read after it.
dpid=$(cat "$d/pid")
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$dpid/status"; }
rss_now() { awk '/^VmRSS:/ {print $2}' "/proc/$dpid/status"; }

# measure KEY CMD: runs CMD under GNU time while sampling the session's
# freezer; appends wall, frozen ms and peak RSS (KiB) to the KEY's lists.
declare -A walls frozens rss own
measure() {
  local k=$1; shift
  python3 bench/freeze_watch.py v1 "$freezer" > "$work/watch" & local w=$!
  until grep -q ready "$work/watch" 2>/dev/null; do sleep 0.01; done
  echo 5 > "/proc/$dpid/clear_refs"
  local idle; idle=$(rss_now)
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" > "$work/last"
  local dock=$(( $(hwm) - idle ))
  kill -TERM $w; wait $w || true
  local e r f
  read -r e r < <(tail -1 "$work/time")
  read -r f _ < <(tail -1 "$work/watch")
  walls[$k]+="$e "; frozens[$k]+="$f "
  # freezeframe does its work in its own process; docker's pipelines in dockerd
  # (what its RSS rose by) and in the largest process of the pipeline.
  [[ $k == ff ]] && dock=0
  (( dock < 0 )) && dock=0
  local total=$(( r + dock ))
  (( total > ${rss[$k]:-0} )) && rss[$k]=$total
  return 0
}
docker_pipeline() { # TAG COMPRESSOR OUTPUT
  docker commit "$name" "ffbench/out:$1" >/dev/null
  docker save "ffbench/out:$1" | "$2" -6 > "$3"
}
export -f docker docker_pipeline
export d name

for round in $(seq "$runs"); do
  rm -f "$out"/*
  measure ff "$ff" --config "$work/ff.toml" commit "$name" --json -o "$out/ff.tar"
  cp "$work/last" "$work/ff.json"
  own[ff]+="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["frozen_ms"])' "$work/ff.json") "
  size_ff=$(stat -c %s "$out/ff.tar")
  if [[ $round == 1 ]] && ! python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["base"] is None)' "$work/ff.json"; then
    echo "freezeframe committed no base, so its archive is not the image docker saves:" >&2
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["session"]["base_source"])' "$work/ff.json" >&2
    exit 1
  fi
  measure gzip bash -c 'docker_pipeline gzip gzip "$0"' "$out/gzip.tar.gz"
  size_gzip=$(stat -c %s "$out/gzip.tar.gz")
  measure pigz bash -c 'docker_pipeline pigz pigz "$0"' "$out/pigz.tar.gz"
  size_pigz=$(stat -c %s "$out/pigz.tar.gz")
  docker rmi ffbench/out:gzip ffbench/out:pigz >/dev/null
  echo "round $round done"
done
"$ff" inspect "$out/ff.tar" >/dev/null && echo "freezeframe inspect: archive verified"
ff_base=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["session"]["base_source"])' "$work/ff.json")
echo "freezeframe's base: $ff_base"

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A wall frozen size=([ff]=$size_ff [gzip]=$size_gzip [pigz]=$size_pigz)
for k in ff gzip pigz; do
  wall[$k]=$(median <<<"${walls[$k]}")
  frozen[$k]=$(median <<<"${frozens[$k]}")
done
ff_own=$(median <<<"${own[ff]}")

printf '\n%-40s %8s %10s %10s %9s %10s %10s %10s\n' contender wall_s frozen_ms size_MiB rss_MiB wall/gzip size/gzip rss/gzip
for k in ff gzip pigz; do
  case $k in
    ff) label="freezeframe commit NAME" ;;
    gzip) label="docker commit; docker save | gzip -6" ;;
    pigz) label="docker commit; docker save | pigz -6" ;;
  esac
  awk -v l="$label" -v w="${wall[$k]}" -v f="${frozen[$k]}" -v s="${size[$k]}" -v r="${rss[$k]}" \
      -v gw="${wall[gzip]}" -v gs="${size[gzip]}" -v gr="${rss[gzip]}" \
      'BEGIN { printf "%-40s %8.2f %10d %10.1f %9.1f %10.2f %10.3f %10.2f\n", l, w, f, s/1048576, r/1024, w/gw, s/gs, r/gr }'
done
echo
echo "frozen_ms is sampled from the session's freezer every millisecond (freezeframe's own report: ${ff_own} ms)."
echo "docker's peak RSS is dockerd's rise during the run plus the pipeline's largest process."
