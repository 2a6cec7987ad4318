#!/usr/bin/env bash
# Pushing a commit to a registry three ways, in the same run: freezeframe push
# ARCHIVE REF against skopeo copy oci-archive:ARCHIVE docker://REF, and against
# docker load, then docker push of the same image. The image is a commit of the
# engine benchmark's tree (see bench/workload.sh; about 430 MB of new layer)
# over a base of busybox and 256 MiB of random bytes that is already in the
# registry. Prints each one's wall time and the bytes it sent, and the ratios
# to skopeo.
#
# The registry is Debian's docker-registry on a loopback port, with TLS from a
# CA made here, htpasswd auth and deletes enabled. A private dockerd (its own
# config file, data root, exec root and socket, no network) lists it in its
# insecure-registries, which makes Docker accept the registry's certificate
# without a CA; freezeframe and skopeo verify it with the CA (--cert-dir).
# skopeo runs in a mount namespace of its own with a blob info cache of the
# run's own over /var/lib/containers/cache. Everything the run makes is kept
# under one temp dir, removed at the end with the registry and the dockerd.
#
# Bytes sent are read on the registry's side: how far its rchar in
# /proc/PID/io (every byte it read, from its sockets and its files) rose while
# a contender ran. That counts what travelled the same way for the three,
# whichever process sends it (Docker uploads from dockerd, skopeo from its
# own), including the TLS records and the HTTP requests.
#
# The base is pushed first, with skopeo (which records where its blobs are in
# skopeo's cache), and pulled into the dockerd (which records the same in its
# distribution metadata); freezeframe is given --from with the base's
# repository. So each of the three knows where the base is, and mounts it.
# Each push goes to a fresh repository, and after each round the pushed
# images' own blobs are unlinked from their repositories, so no later push can
# mount what an earlier one uploaded.
#
#   bash bench/push.sh      # BENCH_DIR=/var/tmp/freezeframe-bench, BENCH_RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${BENCH_RUNS:-3}
bash scripts/deps.sh bench >/dev/null
cargo build --release --locked -p freezeframe >/dev/null 2>&1
ff=$root/target/release/freezeframe
source bench/workload.sh

work=$(mktemp -d "$dir/push.XXXXXX")
d=$work/docker
r=$work/registry
out=$work/out
mkdir -p "$d" "$r/certs.d" "$out" "$work/tmp" "$work/skopeo-cache"
user=ffbench
password=ffbench-$$-$RANDOM
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port

# The client reads no configuration of the host's.
docker() {
  DOCKER_CONFIG=$d/client DOCKER_HOST= DOCKER_CONTEXT= /usr/bin/docker -H "unix://$d/sock" "$@"
}
# skopeo with the run's own blob info cache and temp dir, and no auth file of
# the host's.
skopeo_() {
  TMPDIR=$work/tmp REGISTRY_AUTH_FILE=$work/auth.json unshare -m --propagation private \
    sh -c 'mount --bind "$0" /var/lib/containers/cache && exec skopeo "$@"' "$work/skopeo-cache" "$@"
}
registry_pid=
dockerd_pid=
cleanup() {
  set +e
  if [[ -n $dockerd_pid ]]; then
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 200); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$dockerd_pid" 2>/dev/null
  fi
  [[ -f $d/exec/containerd/containerd.pid ]] && kill -KILL "$(cat "$d/exec/containerd/containerd.pid")" 2>/dev/null
  if [[ -n $registry_pid ]]; then
    kill -TERM "$registry_pid" 2>/dev/null
    wait "$registry_pid" 2>/dev/null
  fi
  awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m"; done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# The registry: a CA, a certificate for 127.0.0.1 signed by it, htpasswd.
(
  cd "$r"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
    -subj "/CN=freezeframe bench CA"
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1
  echo subjectAltName=IP:127.0.0.1 > ext.cnf
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
    -days 2 -extfile ext.cnf
) >/dev/null 2>&1
mkdir -p "$r/certs.d/$reg"
cp "$r/ca.crt" "$r/certs.d/$reg/ca.crt"
htpasswd -Bbn "$user" "$password" > "$r/htpasswd"
cat > "$r/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $r/data
  delete:
    enabled: true
http:
  addr: $reg
  secret: freezeframe-bench-upload-state
  tls:
    certificate: $r/server.crt
    key: $r/server.key
auth:
  htpasswd:
    realm: freezeframe-bench
    path: $r/htpasswd
EOF
docker-registry serve "$r/config.yml" > "$r/log" 2>&1 &
registry_pid=$!
for _ in $(seq 300); do (: < "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
(: < "/dev/tcp/127.0.0.1/$port") 2>/dev/null || { cat "$r/log" >&2; exit 1; }
rchar() { awk '/^rchar:/ {print $2}' "/proc/$registry_pid/io"; }

# A dockerd of our own; /etc/docker/daemon.json is not read.
echo "{\"insecure-registries\": [\"$reg\"]}" > "$d/daemon.json"
/usr/sbin/dockerd --config-file "$d/daemon.json" --data-root "$d/data" --exec-root "$d/exec" \
  -H "unix://$d/sock" --pidfile "$d/pid" --bridge=none --iptables=false --ip-masq=false \
  --storage-driver overlay2 > "$d/log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 300); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker version >/dev/null || { cat "$d/log" >&2; exit 1; }
docker login -u "$user" --password-stdin "$reg" <<<"$password" >/dev/null 2>&1

# The base: busybox and 256 MiB of random bytes, one layer, pushed with skopeo
# and pulled into the dockerd.
base=$work/base
mkdir -p "$base"/{bin,etc,tmp,root,opt}
cp /bin/busybox "$base/bin/"
for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -s busybox "$base/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$base/etc/passwd"
head -c 268435456 /dev/urandom > "$base/opt/base.bin"
"$ff" commit --upper "$base" -o "$out/base.tar" --force --change 'CMD ["sh"]' >/dev/null
rm -rf "$base"
ffreg=(--creds "$user:$password" --cert-dir "$r/certs.d")
skreg=(--dest-creds "$user:$password" --dest-cert-dir "$r/certs.d/$reg")
skopeo_ copy -q "${skreg[@]}" "oci-archive:$out/base.tar" "docker://$reg/ffbench/base:1" >/dev/null
docker pull -q "$reg/ffbench/base:1" >/dev/null

# The image: the engine's tree committed over the base, loaded into the dockerd.
"$ff" commit --upper "$upper" --base "oci-archive:$out/base.tar" -o "$out/image.tar" --force >/dev/null
image_id=$(docker load -q -i "$out/image.tar" | awk '{print $NF}')
image_bytes=$(stat -c %s "$out/image.tar")
# The blobs of the base: the only ones a pushed repository keeps across rounds.
python3 - "$out/base.tar" > "$work/base-blobs" <<'PY'
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
index = json.load(t.extractfile("index.json"))
manifest = json.load(t.extractfile("blobs/" + index["manifests"][0]["digest"].replace(":", "/")))
for d in [manifest["config"]] + manifest["layers"]:
    print(d["digest"])
PY
new_layer=$(python3 - "$out/image.tar" <<'PY'
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
index = json.load(t.extractfile("index.json"))
manifest = json.load(t.extractfile("blobs/" + index["manifests"][0]["digest"].replace(":", "/")))
print(manifest["layers"][-1]["size"])
PY
)

# unlink REPO...: removes from each repository every blob that is not the
# base's, so that no later push mounts it from there.
unlink_blobs() {
  python3 - "$reg" "$user:$password" "$r/ca.crt" "$work/base-blobs" "$@" <<'PY'
import base64, json, ssl, sys, urllib.request
reg, creds, ca, base_file, *repos = sys.argv[1:]
base = set(open(base_file).read().split())
ctx = ssl.create_default_context(cafile=ca)
auth = "Basic " + base64.b64encode(creds.encode()).decode()
accept = ", ".join(["application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])
def call(method, path, headers={}):
    req = urllib.request.Request(f"https://{reg}/v2/{path}", method=method,
                                 headers={"Authorization": auth, **headers})
    return urllib.request.urlopen(req, context=ctx)
for repo in repos:
    m = json.load(call("GET", f"{repo}/manifests/1", {"Accept": accept}))
    for d in [m["config"]] + m["layers"]:
        if d["digest"] not in base:
            call("DELETE", f"{repo}/blobs/{d['digest']}")
PY
}

echo "base:    $(( $(stat -c %s "$out/base.tar") >> 20 )) MiB archive (busybox and 256 MiB random), in $reg/ffbench/base"
echo "image:   $((image_bytes >> 20)) MiB archive; new layer $((new_layer >> 20)) MiB ($files entries of the engine's tree)"
echo "machine: $(nproc) cores, $(uname -r); $runs runs each, median wall time and bytes; load $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$out/image.tar" > /dev/null   # warm the page cache for every contender alike

# measure KEY CMD...: appends CMD's wall time and the bytes the registry read
# while it ran to the KEY's lists.
declare -A walls sent
measure() {
  local k=$1; shift
  local before; before=$(rchar)
  /usr/bin/time -f '%e' -o "$work/time" bash -c '"$0" "$@"' "$@" > "$work/last" 2> "$work/err" ||
    { cat "$work/err" >&2; exit 1; }
  local after; after=$(rchar)
  walls[$k]+="$(tail -1 "$work/time") "
  sent[$k]+="$((after - before)) "
}
docker_push() { # REF
  docker tag "$image_id" "$1"
  docker push -q "$1" >/dev/null
}
export -f docker skopeo_ docker_push
export d work image_id

for round in $(seq "$runs"); do
  measure ff "$ff" push "$out/image.tar" "$reg/ffbench/ff-$round:1" --from ffbench/base "${ffreg[@]}" --json
  cp "$work/last" "$work/ff.json"
  measure skopeo skopeo_ copy -q "${skreg[@]}" "oci-archive:$out/image.tar" "docker://$reg/ffbench/skopeo-$round:1"
  measure docker docker_push "$reg/ffbench/docker-$round:1"
  unlink_blobs "ffbench/ff-$round" "ffbench/skopeo-$round" "ffbench/docker-$round"
  echo "round $round done (load $(cut -d' ' -f1-3 /proc/loadavg))"
done
python3 - "$work/ff.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
seen = {}
for b in r["blobs"]:
    seen[b["outcome"]] = seen.get(b["outcome"], 0) + 1
print("freezeframe's last push:", ", ".join(f"{n} {o}" for o, n in sorted(seen.items())),
      f"({r['uploaded_bytes']} bytes uploaded), mounted from {r['mount_source']}")
PY
if grep -E '"(PUT|PATCH) /v2/ffbench/(ff|skopeo|docker)-[0-9]+/blobs/uploads/[^ ]*digest=' "$r/log" |
   grep -F -f <(sed 's/:/%3A/' "$work/base-blobs"; cat "$work/base-blobs") >/dev/null; then
  echo "some push uploaded a base blob (see the registry's access log)" >&2
  exit 1
fi
echo "registry access log: no base blob uploaded by any push"

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A wall bytes
for k in ff skopeo docker; do
  wall[$k]=$(median <<<"${walls[$k]}")
  bytes[$k]=$(median <<<"${sent[$k]}")
done
printf '\n%-44s %8s %10s %12s %12s\n' contender wall_s sent_MiB wall/skopeo sent/skopeo
for k in ff skopeo docker; do
  case $k in
    ff) label="freezeframe push ARCHIVE REF --from BASE" ;;
    skopeo) label="skopeo copy oci-archive:ARCHIVE docker://REF" ;;
    docker) label="docker push (after docker load)" ;;
  esac
  awk -v l="$label" -v w="${wall[$k]}" -v b="${bytes[$k]}" -v sw="${wall[skopeo]}" -v sb="${bytes[skopeo]}" \
    'BEGIN { printf "%-44s %8.2f %10.1f %12.2f %12.3f\n", l, w, b/1048576, w/sw, b/sb }'
done
echo
echo "sent: what the registry read (its rchar in /proc/PID/io) while each ran; the new layer is $((new_layer >> 20)) MiB."
for k in ff skopeo docker; do echo "$k: walls ${walls[$k]}, bytes ${sent[$k]}"; done
