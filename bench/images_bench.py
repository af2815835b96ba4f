#!/usr/bin/env python3
"""Cold starts from chunked images on a cold-cache worker, with a simulated remote chunk server.

For each simulated per-chunk-fetch latency (kindling-chunkd --simulated-latency-ms), and for a
python and a node function, it measures the first invoke on a worker whose chunk cache is empty:
  eager     every chunk of the runtime and code images fetched before the start (download first;
            the baseline of this report)
  lazy      chunks fetched on first read
  prefetch  lazy, plus the start recording fetched in recorded order, in parallel with the start
and the first invoke on a worker whose cache already holds the chunks but has not mounted the
images yet (warm cache). Each trial restarts kindlingd on the same data dir (the functions stay)
and empties its cache. Also reports bytes read at start as a share of each image, and the dedup
ratio between two versions of one function and between two runtimes.
Prints a markdown report. Usage (as root, from the repository):
  /usr/bin/python3 bench/images_bench.py [--latencies 1,10] [--trials 5] [--out FILE]
"""

import argparse
import datetime
import glob
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import kindling_harness as h  # noqa: E402

MODES = ("eager", "lazy", "prefetch")


def manifest(chunkd, name):
    status, _, body = h.raw(chunkd.url, "GET", "/v1/images/" + name, sign=False)
    assert status == 200, (name, status)
    return json.loads(body)


def images(chunkd):
    status, _, body = h.raw(chunkd.url, "GET", "/v1/images", sign=False)
    return {i["name"]: i for i in json.loads(body)["images"]}


def distinct(m):
    return {d: size for d, size in m["chunks"]}


def dedup(*sets):
    """(stored distinct bytes, total bytes) of images given as lists of manifests."""
    total = sum(m["size"] for group in sets for m in group)
    seen = {}
    for group in sets:
        for m in group:
            seen.update(distinct(m))
    return sum(seen.values()), total


def read_at_start(chunkd, name):
    """(bytes the image's start recording reads, image size)."""
    m = manifest(chunkd, name)
    _, headers, _ = h.raw(chunkd.url, "GET", "/v1/images/" + name, sign=False)
    status, _, rec = h.raw(chunkd.url, "GET", "/v1/recordings/start/" + headers["x-kindling-image-id"], sign=False)
    if status != 200:
        return 0, m["size"]
    return sum(m["chunks"][i][1] for i in json.loads(rec)["chunks"]), m["size"]


def laid_out(chunkd, name):
    """True once the image stored under name has a start layout (its first chunk's magic)."""
    first = manifest(chunkd, name)["chunks"][0][0]
    status, _, data = h.raw(chunkd.url, "GET", "/v1/chunks/" + first, sign=False)
    return status == 200 and data.startswith(b"KINDLING-LAYOUT1")


def cold_start_ms(daemon, fn, mode, empty_cache):
    daemon.stop(check=True)
    if empty_cache:
        for path in glob.glob(os.path.join(daemon.data_dir, "cache", "*")):
            subprocess.run(["rm", "-rf", path], check=True)
    daemon.extra_args = [a for a in daemon.extra_args if not a.startswith("--image-loading=")]
    daemon.extra_args.append("--image-loading=" + mode)
    daemon.start()
    client = h.boto_client(daemon.endpoint)
    time.sleep(1.0)  # let the daemon finish resolving its runtime images
    t0 = time.perf_counter()
    resp, body = h.invoke(client, fn, {})
    ms = (time.perf_counter() - t0) * 1000
    assert "FunctionError" not in resp, body
    m = daemon.metrics()
    return ms, m.get("kindling_chunk_cache_bytes_fetched_total", 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latencies", default="1,10")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--out")
    ap.add_argument("--kindlingd-arg", action="append", default=[], help="extra kindlingd argument (repeatable)")
    args = ap.parse_args()
    latencies = [int(x) for x in args.latencies.split(",")]
    fns = {"python": ("python3.12", "app.handler", h.python_zip("py-v1"), h.python_zip("py-v2")),
           "node": ("nodejs20.x", "index.handler", h.node_zip("node-v1"), h.node_zip("node-v2"))}

    lines = ["# Image cold starts (%s)" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), ""]
    results = {}
    for latency in latencies:
        chunkd = h.ChunkServer(extra_args=["--simulated-latency-ms", str(latency)])
        daemon = h.Daemon(extra_args=["--chunk-server", chunkd.url, "--idle-timeout", "600"] + args.kindlingd_arg)
        try:
            daemon.start()
            client = h.boto_client(daemon.endpoint)
            names = {}
            for family, (runtime, handler, v1, v2) in fns.items():
                name = h.unique_name("bench-img-" + family)
                client.create_function(FunctionName=name, Role=h.ROLE, Runtime=runtime, Handler=handler,
                                       Code={"ZipFile": v1}, MemorySize=512, Timeout=30)
                names[family] = name
                h.invoke(client, name, {})  # the first start on this chunk server: recorded
            time.sleep(1.0)  # recordings are written once the first invoke is over
            # The first recorded start of each runtime image lays it out for starts.
            for family in names:
                runtime = [n for n in images(chunkd) if n.startswith("runtime/%s/" % family)][0]
                h.wait_for(lambda: laid_out(chunkd, runtime), 300, interval=0.5, what="start layout of " + runtime)
            for family, name in names.items():
                for mode in MODES:
                    for trial in range(args.trials):
                        ms, fetched = cold_start_ms(daemon, name, mode, empty_cache=True)
                        results.setdefault((latency, family, mode), []).append((ms, fetched))
                        print("latency %d ms %s %s: %.1f ms, %.1f MiB fetched" % (latency, family, mode, ms, fetched / 2**20),
                              file=sys.stderr, flush=True)
                for trial in range(args.trials):
                    ms, fetched = cold_start_ms(daemon, name, "prefetch", empty_cache=False)
                    results.setdefault((latency, family, "warm cache"), []).append((ms, fetched))
            if latency == latencies[-1]:
                # Bytes read at start and dedup, from the images this chunk server holds.
                all_images = images(chunkd)
                runtime_of = {f: [n for n in all_images if n.startswith("runtime/%s/" % f)][0] for f in ("python", "node")}
                lines += ["## Bytes read at start (the stored start recordings)", "",
                          "| image | size MiB | read at start MiB | share |", "|---|---|---|---|"]
                for family in ("python", "node"):
                    for label, img in (("runtime " + family, runtime_of[family]),):
                        read, size = read_at_start(chunkd, img)
                        lines.append("| %s | %.1f | %.1f | %.1f%% |" % (label, size / 2**20, read / 2**20, 100.0 * read / size))
                lines.append("")
                # Two versions of one function: the runtime image plus each version's code image.
                py_rt = manifest(chunkd, runtime_of["python"])
                v_images = []
                for tag, zipped in (("v1", fns["python"][2]), ("v2", fns["python"][3])):
                    client.update_function_code(FunctionName=names["python"], ZipFile=zipped)
                    sha = client.get_function(FunctionName=names["python"])["Configuration"]["CodeSha256"]
                    import base64
                    v_images.append(manifest(chunkd, "code/" + base64.b64decode(sha).hex()))
                stored, total = dedup([py_rt, v_images[0]], [py_rt, v_images[1]])
                node_rt = manifest(chunkd, runtime_of["node"])
                rstored, rtotal = dedup([py_rt], [node_rt])
                lines += ["## Dedup", "", "| pair | total MiB | stored MiB | dedup ratio (total/stored) |", "|---|---|---|---|",
                          "| python function v1 + v2 (runtime + code images) | %.1f | %.1f | %.2f |" % (total / 2**20, stored / 2**20, total / stored),
                          "| python runtime + node runtime | %.1f | %.1f | %.2f |" % (rtotal / 2**20, rstored / 2**20, rtotal / rstored), ""]
            daemon.stop(check=True)
        finally:
            daemon.kill()
            daemon.cleanup()
            chunkd.stop()

    lines += ["## Cold start on a cold-cache worker (first invoke, ms; median of %d)" % args.trials, "",
              "| latency per chunk | function | eager (download first) | lazy | lazy + prefetch | warm cache | prefetch speedup over eager | MiB fetched eager / lazy / prefetch |",
              "|---|---|---|---|---|---|---|---|"]
    for latency in latencies:
        for family in ("python", "node"):
            med = {mode: statistics.median(ms for ms, _ in results[(latency, family, mode)]) for mode in MODES + ("warm cache",)}
            fetched = {mode: statistics.median(f for _, f in results[(latency, family, mode)]) / 2**20 for mode in MODES}
            lines.append("| %d ms | %s | %.0f | %.0f | %.0f | %.0f | %.2fx | %.1f / %.1f / %.1f |" % (
                latency, family, med["eager"], med["lazy"], med["prefetch"], med["warm cache"],
                med["eager"] / med["prefetch"], fetched["eager"], fetched["lazy"], fetched["prefetch"]))
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
