#!/usr/bin/env bash
# Latency of the service's status call, GET /v1/commits/{id}, while 4 commits of
# 4 running containers run at once (max_concurrent = 4). Each container holds
# BENCH_MB MiB of base64 text (gzip works on it: the cores are busy). A client
# polls one task's status as fast as it can until every commit has ended, over
# one keep-alive connection and over a new connection per call, and prints
# p50/p99/max. Target: p99 <= 5 ms.
#
#   bash bench/api-latency.sh      # BENCH_DIR=/var/tmp/freezeframe-bench, BENCH_MB=256
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mb=${BENCH_MB:-256}
dir=${BENCH_DIR:-/var/tmp/freezeframe-bench}/api
bash scripts/deps.sh bench >/dev/null
cargo build --release --locked -p freezeframe >/dev/null 2>&1
ff=$root/target/release/freezeframe
ids=()
server=
cleanup() {
  [[ -n $server ]] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  for id in "${ids[@]}"; do
    runc --root "$dir/runc" kill "$id" KILL >/dev/null 2>&1 || true
    runc --root "$dir/runc" delete -f "$id" >/dev/null 2>&1 || true
  done
  for m in "$dir"/c*/rootfs; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$dir"
}
trap cleanup EXIT
rm -rf "$dir"; mkdir -p "$dir"/{lower/bin,save,state}
cp /bin/busybox "$dir/lower/bin/"
for t in sh sleep; do ln -s busybox "$dir/lower/bin/$t"; done
mkdir -p "$dir/lower"/{dev,proc,sys,tmp,etc}
head -c "$(((mb << 20) / 4 * 3))" /dev/urandom | base64 -w 100 > "$dir/payload"
for i in 1 2 3 4; do
  c=$dir/c$i id=ffbench-api-$$-$i
  mkdir -p "$c"/{upper/data,ovl,rootfs}
  cp "$dir/payload" "$c/upper/data/payload"
  mount -t overlay overlay -o "lowerdir=$dir/lower,upperdir=$c/upper,workdir=$c/ovl" "$c/rootfs"
  (cd "$c" && runc spec && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["args"] = ["sleep", "1000000"]
c["process"]["terminal"] = False
c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
c["root"]["readonly"] = False
json.dump(c, open("config.json", "w"))
PY
  )
  (cd "$c" && runc --root "$dir/runc" run -d "$id" >/dev/null)
  ids+=("$id")
done
rm -f "$dir/payload"
cat > "$dir/config.toml" <<EOF
[storage]
save_location = "$dir/save"
[server]
socket = "$dir/api.sock"
state_dir = "$dir/state"
max_concurrent = 4
queue_size = 4
[runtime]
roots = ["$dir/runc"]
EOF
"$ff" --config "$dir/config.toml" serve 2> "$dir/serve.log" & server=$!
until [[ -S $dir/api.sock ]]; do sleep 0.05; done
echo "4 commits of ${mb} MiB each (gzip, pause auto) on $(nproc) cores; polling one task's status"
python3 - "$dir/api.sock" "${ids[@]}" <<'PY'
import http.client, json, socket, sys, time

sock, sessions = sys.argv[1], sys.argv[2:]

class Conn(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=30)
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sock)

def call(conn, method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body else None,
                 headers={"Content-Type": "application/json"} if body else {})
    r = conn.getresponse()
    return r.status, json.loads(r.read())

c = Conn()
tasks = []
for s in sessions:
    status, t = call(c, "POST", "/v1/commits", {"session": s, "output": f"{s}.tar"})
    assert status == 202, t
    tasks.append(t["id"])
watched = tasks[0]

def running():
    _, ts = call(c, "GET", "/v1/commits")
    return sum(t["state"] not in ("done", "failed", "cancelled") for t in ts)

samples = {"keep-alive": [], "new connection": []}
states = set()
keep = Conn()
while True:
    for mode in samples:
        conn = keep if mode == "keep-alive" else Conn()
        t0 = time.perf_counter()
        status, t = call(conn, "GET", f"/v1/commits/{watched}")
        samples[mode].append((time.perf_counter() - t0) * 1000)
        assert status == 200, t
        states.add(t["state"])
        if conn is not keep:
            conn.close()
    if len(samples["keep-alive"]) % 200 == 0 and running() == 0:
        break

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]

_, ts = call(c, "GET", "/v1/commits")
print("commits: " + ", ".join(f"{t['state']} in {sum(t['phases_ms'].values())} ms (frozen {t['frozen_ms']} ms)" for t in ts))
print(f"states seen while polling: {sorted(states)}")
for mode, v in samples.items():
    print(f"GET /v1/commits/{{id}} ({mode}): n={len(v)} p50={pct(v, 50):.2f} ms p99={pct(v, 99):.2f} ms max={max(v):.2f} ms")
ok = all(pct(v, 99) <= 5.0 for v in samples.values())
print("target p99 <= 5 ms:", "met" if ok else "NOT met")
PY
