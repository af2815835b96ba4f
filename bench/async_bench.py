#!/usr/bin/env python3
"""Asynchronous invocation and throttling, beside synchronous invocation, in one run.

Measures, against one kindlingd on loopback:
  - sync warm invoke of a python no-op at c=1 and c=8 (the baseline of this report);
  - Event accepts at c=1 and c=8: 202s per second (each one committed to events.db with fsync
    before the 202) and accept latency;
  - end-to-end async delivery latency: request sent -> the OnSuccess destination record written,
    for events sent one at a time into an idle queue;
  - the latency of a 429 (a function with reserved concurrency 0) beside a warm invoke.
Prints a markdown report. Usage:
  /usr/bin/python3 bench/async_bench.py --kindlingd build/src/bin/kindlingd [--out FILE]
"""

import argparse
import datetime
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
import botocore.auth
import botocore.credentials
from botocore.awsrequest import AWSRequest
from botocore.config import Config

ROLE = "arn:aws:iam::000000000000:role/bench"
APP = "def handler(event, context):\n    return {}\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zip_bytes(files):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def loadgen(binary, url, concurrency, seconds, headers=()):
    cmd = [binary, "--url", url, "--method", "POST", "--body", "{}", "--concurrency", str(concurrency),
           "--duration", str(seconds), "--warmup", "20"]
    for h in headers:
        cmd += ["--header", h]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def read_keys(data_dir):
    """(access key id, secret) of user [default] in the credentials file kindlingd created."""
    import configparser
    ini = configparser.ConfigParser()
    ini.read(os.path.join(data_dir, "credentials"))
    return ini["default"]["aws_access_key_id"], ini["default"]["aws_secret_access_key"]


def signed(keys, port, method, path, body=b"", headers=None):
    """headers + SigV4 (kindlingd authenticates by default); valid for about 5 minutes."""
    req = AWSRequest(method=method, url="http://127.0.0.1:%d%s" % (port, path), data=body, headers=dict(headers or {}))
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(*keys), "lambda", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def metric(endpoint_port, name):
    conn = http.client.HTTPConnection("127.0.0.1", endpoint_port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_drained(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(port, "kindling_async_queue_depth") == 0 and metric(port, "kindling_async_deliveries_in_flight") == 0:
            return True
        time.sleep(0.25)
    return False


def iso_ms(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kindlingd", required=True)
    ap.add_argument("--out")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--delivery-samples", type=int, default=40)
    args = ap.parse_args()
    bin_dir = os.path.dirname(os.path.abspath(args.kindlingd))
    lg = os.path.join(os.path.dirname(bin_dir), "..", "bench", "kindling-loadgen")
    lg = os.path.abspath(lg)

    base = tempfile.mkdtemp(prefix="kindling-async-bench-", dir="/var/tmp")
    os.chmod(base, 0o711)
    port = free_port()
    daemon = subprocess.Popen([args.kindlingd, "--listen", "127.0.0.1:%d" % port, "--data-dir", base + "/data"],
                              stdout=open(base + "/kindlingd.log", "wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    rows = []
    try:
        endpoint = "http://127.0.0.1:%d" % port
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        keys = read_keys(base + "/data")
        c = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=keys[0],
                         aws_secret_access_key=keys[1], config=Config(retries={"max_attempts": 0}))
        code = {"ZipFile": zip_bytes({"app.py": APP})}
        c.create_function(FunctionName="noop", Role=ROLE, Runtime="python3.11", Handler="app.handler", Code=code)
        c.put_function_event_invoke_config(
            FunctionName="noop", MaximumRetryAttempts=0,
            DestinationConfig={"OnSuccess": {"Destination": "arn:aws:sqs:us-east-1:000000000000:bench-done"}})
        c.create_function(FunctionName="off", Role=ROLE, Runtime="python3.11", Handler="app.handler", Code=code)
        c.put_function_concurrency(FunctionName="off", ReservedConcurrentExecutions=0)
        path = "/2015-03-31/functions/%s/invocations"
        url = endpoint + path

        def invoke_headers(fn, extra=None):  # signed per row: a signature may be replayed for minutes
            return ["%s: %s" % kv for kv in signed(keys, port, "POST", path % fn, b"{}", extra).items()]

        for conc in (1, 8):
            r = loadgen(lg, url % "noop", conc, args.seconds, invoke_headers("noop"))
            rows.append(("sync invoke (warm), baseline", conc, r, "200"))
            r = loadgen(lg, url % "noop", conc, args.seconds,
                        invoke_headers("noop", {"X-Amz-Invocation-Type": "Event"}))
            rows.append(("Event accept (durable, 202)", conc, r, "202"))
            drained = wait_drained(port, 300)
            if not drained:
                print("warning: async queue not drained within 300 s", file=sys.stderr)
        r = loadgen(lg, url % "off", 1, args.seconds, invoke_headers("off"))
        rows.append(("throttled invoke (429, reserved 0)", 1, r, "429"))

        # Delivery latency: one event at a time into an idle queue.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("DELETE", "/kindling/queues/bench-done",
                     headers=signed(keys, port, "DELETE", "/kindling/queues/bench-done"))
        conn.getresponse().read()
        sent = {}
        for _ in range(args.delivery_samples):
            t = time.time() * 1000
            conn.request("POST", "/2015-03-31/functions/noop/invocations", body=b"{}",
                         headers=signed(keys, port, "POST", "/2015-03-31/functions/noop/invocations", b"{}",
                                        {"X-Amz-Invocation-Type": "Event"}))
            resp = conn.getresponse()
            resp.read()
            sent[resp.getheader("x-amzn-RequestId")] = t
            wait_drained(port, 30)
        latencies = []
        deadline = time.monotonic() + 60
        while len(latencies) < len(sent) and time.monotonic() < deadline:
            q = "/kindling/queues/bench-done?MaxNumberOfMessages=100&VisibilityTimeout=60"
            conn.request("GET", q, headers=signed(keys, port, "GET", q))
            msgs = json.loads(conn.getresponse().read()).get("Messages", [])
            if not msgs:
                time.sleep(0.1)
                continue
            for m in msgs:
                record = json.loads(m["Body"])
                rid = record["requestContext"]["requestId"]
                if rid in sent:
                    latencies.append(iso_ms(record["timestamp"]) - sent.pop(rid))
                dp = "/kindling/queues/bench-done/messages/" + m["ReceiptHandle"]
                conn.request("DELETE", dp, headers=signed(keys, port, "DELETE", dp))
                conn.getresponse().read()
        conn.close()
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)

    out = ["# Asynchronous invocation and throttling (bench/async_bench.py)", "",
           "Machine: %d vCPU, kernel %s, %s UTC. python3.11 no-op function, 128 MB; all rows in one run." % (
               os.cpu_count(), os.uname().release, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")),
           "Load average at end: %s." % " ".join("%.2f" % x for x in os.getloadavg()), "",
           "| what | c | p50 (µs) | p99 (µs) | req/s | statuses |", "|---|---:|---:|---:|---:|---|"]
    for what, conc, r, _ in rows:
        out.append("| %s | %d | %d | %d | %.0f | %s |" % (what, conc, r["p50_us"], r["p99_us"], r["rps"],
                                                      json.dumps(r["status"])))
    if latencies:
        latencies.sort()
        out += ["", "End-to-end async delivery (202 sent → OnSuccess record written, idle queue, %d events): "
                "p50 %.1f ms, p90 %.1f ms, max %.1f ms." % (
                    len(latencies), statistics.median(latencies), latencies[int(len(latencies) * 0.9) - 1],
                    latencies[-1])]
    else:
        out += ["", "End-to-end async delivery: no records collected."]
    report = "\n".join(out) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
