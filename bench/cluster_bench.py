#!/usr/bin/env python3
"""Cluster mode against embedded mode, side by side in one run, on this machine.

Rows (native `provided.al2023` no-op, SigV4-signed invokes from kindling-loadgen):
  - bare HTTP round trip to kindling-echo-server, client and server pinned to different vCPUs;
  - warm invoke p50/p99 at c=1 and c=8: embedded kindlingd, then a local cluster (scripts/cluster.sh:
    etcd x3, a frontend node, 1 worker), then the same cluster grown to 2 workers;
  - cold start (first invoke of a new function, median of N) in embedded and cluster mode;
  - failover: the leader of a warm function's partition is killed (-9) N times; each time, from the
    kill to the end of the first invoke that succeeds (routed by the new leader); the killed node is
    restarted with its own command line and the cluster settles before the next kill.
Every process shares the machine's 2 vCPUs; only ratios within one run mean anything.

  /usr/bin/python3 bench/cluster_bench.py --kindlingd build/src/bin/kindlingd [--out FILE] [--quick]
"""

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import signal
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import run as base  # noqa: E402  (bench/run.py: daemon, signing, loadgen, echo server)


def log(msg):
    base.log(msg)


class LocalCluster:
    """scripts/cluster.sh up/down around a temp dir."""

    def __init__(self, kindlingd, workers, chunk_server):
        self.dir = tempfile.mkdtemp(prefix="kindling-bench-cluster-", dir="/var/tmp")
        os.chmod(self.dir, 0o711)
        self.kindlingd = kindlingd
        self.workers = workers
        self.chunk_server = chunk_server

    def up(self):
        env = dict(os.environ, KINDLINGD=self.kindlingd, KINDLING_CHUNK_SERVER=self.chunk_server)
        p = subprocess.run(["bash", os.path.join(REPO, "scripts", "cluster.sh"), "up", self.dir,
                            "--workers", str(self.workers)], env=env, capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise base.BenchError("cluster.sh up failed: " + p.stdout + p.stderr)
        with open(os.path.join(self.dir, "cluster.json")) as f:
            self.info = json.load(f)
        frontend = next(n for n in self.info["nodes"] if "frontend" in n["roles"])
        self.endpoint = frontend["url"]
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.keys = base.daemon_keys(os.path.join(self.dir, "frontend-1"))

    def down(self):
        subprocess.run(["bash", os.path.join(REPO, "scripts", "cluster.sh"), "down", self.dir],
                       capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)


def partition_of(name, partitions=16):
    """FNV-1a 64 of the name, as kindlingd's PartitionOf."""
    h = 14695981039346656037
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h % partitions


def partition_members(etcd_url, partition):
    """Node ids campaigning in a partition, leader first (lowest create revision)."""
    prefix = ("/kindling/assignment/partitions/%02d/" % partition).encode()
    body = json.dumps({"key": base64.b64encode(prefix).decode(),
                       "range_end": base64.b64encode(prefix[:-1] + b"0").decode()}).encode()
    with urllib.request.urlopen(urllib.request.Request(etcd_url + "/v3/kv/range", data=body), timeout=5) as r:
        kvs = json.load(r).get("kvs", [])
    kvs.sort(key=lambda kv: int(kv["create_revision"]))
    return [base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1] for kv in kvs]


class ClusterBench:
    def __init__(self, args):
        self.args = args
        self.b = base.Bench(args)  # for its tools: loadgen, echo server, zips
        self.rows = {}
        self.cold = {}

    def warm_rows(self, label, api, name, concurrencies=(1, 8)):
        path = api.invoke_path(name)
        hdrs = api.signed_headers("POST", path, base.PAYLOAD)
        for c in concurrencies:
            r = self.b.loadgen(api.endpoint + path, c, "%s-c%d" % (label, c), duration=self.args.seconds,
                               warmup=100 if c == 1 else 30, headers=hdrs, body=base.PAYLOAD, expect=base.PAYLOAD)
            if r.get("errors") or r.get("non2xx"):
                raise base.BenchError("%s c=%d: %s" % (label, c, r))
            self.rows["%s c=%d" % (label, c)] = r
            log("%s c=%d: p50 %d us, p99 %d us, %.0f req/s" % (label, c, r["p50_us"], r["p99_us"], r["rps"]))

    def cold_starts(self, label, api, port, zip_bytes):
        invoker = base.TimedInvoker(api, port)
        times = []
        for i in range(self.args.cold_reps):
            slug = "".join(ch if ch.isalnum() else "-" for ch in label)
            name = "cold-%s-%d-%d" % (slug, i, int(time.time() * 1000) % 100000)
            api.create(name, "provided", zip_bytes)
            us, status, _, body = invoker.invoke(name)
            if status != 200:
                raise base.BenchError("cold %s: HTTP %d %r" % (label, status, body[:200]))
            times.append(us)
        invoker.close()
        self.cold[label] = times
        log("cold %s: median %.0f us over %d" % (label, statistics.median(times), len(times)))

    def failovers(self, cluster, api, zip_bytes):
        name = "failover-noop"
        api.create(name, "provided", zip_bytes)
        invoker = base.TimedInvoker(api, cluster.port)
        invoker.invoke(name)
        etcd = cluster.info["etcd"][0]["url"]
        p = partition_of(name)
        times = []
        for i in range(self.args.kills):
            leader = partition_members(etcd, p)[0]
            node = next(n for n in cluster.info["nodes"] if n["id"] == leader)
            with open("/proc/%d/cmdline" % node["pid"], "rb") as f:
                cmd = [a.decode() for a in f.read().split(b"\0") if a]
            os.kill(node["pid"], signal.SIGKILL)
            killed = time.monotonic()
            while True:
                _, status, _, _ = invoker.invoke(name)
                if status == 200:
                    break
            times.append((time.monotonic() - killed) * 1000)
            log("failover %d: %.0f ms (%s killed)" % (i + 1, times[-1], leader))
            # Restart it as it was, and tell cluster.sh's pid list.
            with open(os.path.join(cluster.dir, leader + ".log"), "ab") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            pids = os.path.join(cluster.dir, "pids")
            with open(pids) as f:
                lines = [l.replace(" %d " % node["pid"], " %d " % proc.pid) for l in f]
            with open(pids, "w") as f:
                f.writelines(lines)
            node["pid"] = proc.pid
            self.restarted.append(proc)  # reaped at the end (cluster.sh down stops it)
            deadline = time.monotonic() + 60  # settled: back in every partition, leadership spread
            while time.monotonic() < deadline:
                members = [partition_members(etcd, q) for q in range(16)]
                leads = {}
                for m in members:
                    if m:
                        leads[m[0]] = leads.get(m[0], 0) + 1
                if all(len(m) == 3 for m in members) and len(leads) == 3 and max(leads.values()) <= 6:
                    break
                time.sleep(0.5)
        invoker.close()
        self.failover_ms = times

    def run(self):
        self.failover_ms = []
        self.restarted = []
        zips = self.b.zips()
        # Baseline: bare HTTP, pinned to different vCPUs.
        p, url = self.b.echo_server(0)
        try:
            r = self.b.loadgen(url, 1, "echo", duration=self.args.seconds, warmup=200, body=base.PAYLOAD, cpu=1)
            self.rows["bare HTTP c=1 (different vCPUs)"] = r
            r = self.b.loadgen(url, 8, "echo-c8", duration=self.args.seconds, warmup=50, body=base.PAYLOAD)
            self.rows["bare HTTP c=8"] = r
        finally:
            p.kill()
            p.wait(timeout=10)

        chunkd_dir = tempfile.mkdtemp(prefix="kindling-bench-chunkd-", dir="/var/tmp")
        chunk_port = base.free_port()
        chunkd = subprocess.Popen([os.path.join(os.path.dirname(self.args.kindlingd), "kindling-chunkd"),
                                   "--listen", "127.0.0.1:%d" % chunk_port, "--data-dir", chunkd_dir],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        chunk_url = "http://127.0.0.1:%d" % chunk_port
        tmp = tempfile.mkdtemp(prefix="kindling-bench-embedded-", dir="/var/tmp")
        os.chmod(tmp, 0o711)
        daemon = base.Daemon(self.args.kindlingd, tmp, ["--chunk-server", chunk_url])
        cluster = None
        try:
            # Embedded.
            daemon.start(ready_timeout=120)
            api = base.Api(daemon.endpoint, base.daemon_keys(daemon.data_dir))
            api.create("noop", "provided", zips["provided"])
            self.warm_rows("embedded", api, "noop")
            self.cold_starts("embedded", api, daemon.port, zips["provided"])
            daemon.stop()
            daemon = None
            # Cluster, one worker, then two.
            for workers in (1, 2):
                cluster = LocalCluster(self.args.kindlingd, workers, chunk_url)
                cluster.up()
                api = base.Api(cluster.endpoint, cluster.keys)
                api.create("noop", "provided", zips["provided"])
                label = "cluster, %d worker%s" % (workers, "s" if workers > 1 else "")
                self.warm_rows(label, api, "noop")
                if workers == 1:
                    self.cold_starts(label, api, cluster.port, zips["provided"])
                    if self.args.kills:
                        self.failovers(cluster, api, zips["provided"])
                cluster.down()
                cluster = None
                for proc in self.restarted:
                    proc.wait(timeout=30)
                self.restarted = []
        finally:
            if daemon:
                daemon.stop()
            if cluster:
                cluster.down()
            chunkd.terminate()
            chunkd.wait(timeout=20)
            shutil.rmtree(chunkd_dir, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
        return self.report()

    def report(self):
        bare = self.rows["bare HTTP c=1 (different vCPUs)"]["p50_us"]
        emb = {c: self.rows["embedded c=%d" % c] for c in (1, 8)}
        lines = ["| row | p50 µs | p99 µs | req/s | p50 / bare c=1 | p50 / embedded |", "|---|---|---|---|---|---|"]
        for key, r in self.rows.items():
            c = 8 if key.endswith("c=8") else 1
            vs_emb = "%.2f" % (r["p50_us"] / emb[c]["p50_us"]) if not key.startswith("bare") else ""
            lines.append("| %s | %d | %d | %.0f | %.2f | %s |" % (key, r["p50_us"], r["p99_us"], r["rps"],
                                                                 r["p50_us"] / bare, vs_emb))
        lines += ["", "| cold start (first invoke of a new function) | median ms | over |", "|---|---|---|"]
        for label, times in self.cold.items():
            lines.append("| %s | %.2f | %d |" % (label, statistics.median(times) / 1000, len(times)))
        if self.failover_ms:
            t = sorted(self.failover_ms)
            pct = lambda q: t[min(len(t) - 1, int(round(q * (len(t) - 1))))]
            lines += ["", "| failover (kill -9 of a partition leader -> first invoke served) | p50 ms | p99 ms | max ms | kills |",
                      "|---|---|---|---|---|",
                      "| cluster, 1 worker | %.0f | %.0f | %.0f | %d |" % (pct(0.5), pct(0.99), t[-1], len(t))]
        text = "\n".join(lines)
        if self.args.out:
            with open(self.args.out, "w") as f:
                f.write(text + "\n")
        return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kindlingd", required=True)
    ap.add_argument("--out")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--cold-reps", type=int, default=10)
    ap.add_argument("--kills", type=int, default=20, help="partition leader kills (0: skip)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.cold_reps, args.kills = 1.0, 3, min(args.kills, 3)
    args.kindlingd = os.path.abspath(args.kindlingd)
    args.bin_dir = base.find_bin_dir(args.kindlingd)
    args.json_out = None
    if not args.bin_dir:
        sys.exit("cannot find the bench tools; build target kindling-bench")
    print(ClusterBench(args).run())


if __name__ == "__main__":
    main()
