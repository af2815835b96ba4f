#!/usr/bin/python3
"""Kindling benchmark: warm invoke, cold start and sandbox creation, beside same-run baselines.

Run with the Debian python (it has boto3):

    /usr/bin/python3 bench/run.py --kindlingd build/src/bin/kindlingd [--bin-dir build/bench] \
        [--out report.md] [--json-out raw.json] [--quick]

What it does, in one run, on loopback only:
  (a) bare HTTP round trip: kindling-loadgen against kindling-echo-server, concurrency 1 and 8;
  (b) warm invoke of no-op functions (provided bootstrap in C, python3.11, nodejs20.x) at
      concurrency 1 and 8 (each connection warms up first, so c=8 keeps 8 sandboxes busy);
  (c) cold start: first invoke after UpdateFunctionConfiguration (which must start new sandboxes),
      and first invoke of a brand-new function, beside fork+exec+wait of the same runtime doing
      nothing (python3 -c pass, node -e 0, the bootstrap with --exit, /bin/true);
  (d) sandbox creation: a burst of K simultaneous first invokes; sandboxes counted in /proc;
      and the memory of the non-runtime processes of each sandbox (kindling-init, ...).
It prints a markdown report (and writes it to --out). Every wait is bounded; the daemon it
started and its temp dir are removed at the end, also on error or Ctrl-C.
"""

import argparse
import base64
import datetime
import http.client
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ROLE = "arn:aws:iam::123456789012:role/kindling-bench"
REGION = "us-east-1"
PAYLOAD = b"{}"  # every no-op echoes its event; json of {} is {} in python and node alike

RUNTIMES = {
    # key: (Lambda runtime, handler, runtime binary names as seen in /proc/PID/comm)
    "provided": ("provided.al2023", "bootstrap", ("bootstrap",)),
    "python": ("python3.11", "noop.handler", ("python3", "python3.11", "python")),
    "node": ("nodejs20.x", "index.handler", ("node", "nodejs")),
}

# Targets from docs (DESIGN.md "How quality is judged"); None = no target stated.
WARM_TARGET_X = {"provided": 3.0, "python": 5.0, "node": None}


class BenchError(Exception):
    pass


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Helpers: processes, ports, machine facts


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# The environment of the fork+exec baselines: what a sandboxed runtime gets, not this shell's (here
# NODE_EXTRA_CA_CERTS alone makes `node -e 0` 2.5x slower: it loads every CA certificate).
SANDBOX_LIKE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin:/opt/bin", "LANG": "en_US.UTF-8",
                    "TZ": ":UTC", "HOME": "/tmp"}  # as src/worker/worker.cc sets them


def pin_to(cpu):
    """preexec_fn pinning the child to one CPU (None: no pinning)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def run_json(cmd, timeout, env=None, cpu=None):
    """Runs a bench tool that prints one JSON line; returns the parsed object."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                       preexec_fn=pin_to(cpu))
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    if not line:
        raise BenchError("%s printed nothing (rc %d): %s" % (cmd[0], p.returncode, p.stderr[-500:]))
    return json.loads(line)


def machine_facts():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = "%.1f GiB" % (kb / 1024 / 1024)
    except (OSError, ValueError, IndexError):
        pass
    rev = "?"
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "memory": mem,
        "git": rev,
        "loadavg_start": loadavg(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def proc_table():
    """pid -> (ppid, comm) for every visible process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            comm = s[s.index("(") + 1:s.rindex(")")]
            ppid = int(s[s.rindex(")") + 2:].split()[1])
            out[int(d)] = (ppid, comm)
        except (OSError, ValueError):
            continue
    return out


def descendants(root):
    """Every process below `root` (not itself): pid -> comm."""
    table = proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = {}, [root]
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in out:
                out[c] = table[c][1]
                stack.append(c)
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """utime + stime of the given processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / CLK_TCK


def foreign_ticks():
    """pid -> CPU ticks (own + reaped children) of every user-space process that is not this
    benchmark or below it (kernel threads excluded: they also work on our behalf)."""
    table = proc_table()
    ours = set(descendants(os.getpid())) | {os.getpid()}
    out = {}
    for pid, (ppid, _) in table.items():
        if pid in ours or pid == 2 or ppid == 2:
            continue
        try:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            out[pid] = sum(int(x) for x in fields[11:15])
        except (OSError, ValueError, IndexError):
            continue
    return out


class ForeignLoad:
    """CPU that processes outside this benchmark used during a section, in % of all vCPUs: the
    fleet is shared, and on 2 vCPUs every foreign process shows in the numbers. Processes that
    both start and exit inside the section count through their parent's reaped-children time."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.snap = foreign_ticks()

    def percent(self):
        wall = time.monotonic() - self.t0
        # Totals, not per-pid deltas: when a foreign parent reaps a child, the child's ticks move
        # into the parent's cutime/cstime and the sum stays continuous.
        used = sum(foreign_ticks().values()) - sum(self.snap.values())
        if wall <= 0:
            return 0.0
        return max(0.0, 100.0 * used / (wall * CLK_TCK * (os.cpu_count() or 1)))


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


# ------------------------------------------------------------------------------------------------
# The daemon


class Daemon:
    def __init__(self, binary, tmp, extra_args):
        self.binary = binary
        self.port = free_port()
        self.data_dir = os.path.join(tmp, "data")
        os.makedirs(self.data_dir)
        self.log_path = os.path.join(tmp, "kindlingd.log")
        self.proc = None
        self.extra_args = extra_args

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, ready_timeout=30):
        cmd = [self.binary, "--listen", "127.0.0.1:%d" % self.port, "--data-dir", self.data_dir]
        cmd += self.extra_args
        log("starting " + " ".join(cmd))
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("kindlingd exited with %s during startup; log tail:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/2015-03-31/functions/")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status < 500:
                    return
                last = "HTTP %d" % r.status
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        raise BenchError("kindlingd not ready after %ds (%s); log tail:\n%s"
                         % (ready_timeout, last, self.log_tail()))

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        """Stops the daemon we started; returns a note if it or its sandboxes had to be killed."""
        notes = []
        if not self.proc:
            return notes
        if self.proc.poll() is None:
            left_before = descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                notes.append("kindlingd did not exit within 10 s of SIGTERM; sent SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=10)
            # Anything it started that is still alive was leaked: report it, then kill it by pid.
            time.sleep(0.2)
            table = proc_table()
            leaked = [p for p in left_before if p in table and table[p][1] == left_before[p]]
            if leaked:
                notes.append("%d processes started by kindlingd were still alive after it exited "
                             "(%s); killed them by pid" % (len(leaked), ", ".join(
                                 sorted(set(left_before[p] for p in leaked)))))
                for p in leaked:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
        else:
            notes.append("kindlingd had already exited with status %s; log tail:\n%s"
                         % (self.proc.returncode, self.log_tail()))
        self.logf.close()
        return notes


# ------------------------------------------------------------------------------------------------
# Lambda API access: boto3 for the control plane, SigV4-signed raw HTTP for timed invokes


def daemon_keys(data_dir):
    """(access key id, secret) of user [default] in <data-dir>/credentials, which kindlingd creates
    on first start (it authenticates by default); dummy keys when it runs with --auth off."""
    import configparser
    ini = configparser.ConfigParser()
    if ini.read(os.path.join(data_dir, "credentials")) and "default" in ini:
        return ini["default"]["aws_access_key_id"], ini["default"]["aws_secret_access_key"]
    return "AKIDBENCH", "benchsecret"


class Api:
    def __init__(self, endpoint, keys=("AKIDBENCH", "benchsecret")):
        import boto3
        import botocore.config
        from botocore.credentials import Credentials
        self.endpoint = endpoint
        self.client = boto3.client(
            "lambda", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=keys[0],
            aws_secret_access_key=keys[1],
            config=botocore.config.Config(retries={"max_attempts": 0}, connect_timeout=5,
                                          read_timeout=120))
        self.creds = Credentials(*keys)

    def signed_headers(self, method, path, body, extra=None):
        """SigV4 headers for one request (a signature may be replayed for a few minutes)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        headers = {"Content-Type": "application/json"}
        headers.update(extra or {})
        req = AWSRequest(method=method, url=self.endpoint + path, data=body, headers=headers)
        SigV4Auth(self.creds, "lambda", REGION).add_auth(req)
        return {k: v for k, v in req.headers.items()}

    def wait_ready(self, name, timeout=30):
        deadline = time.monotonic() + timeout
        cfg = None
        while time.monotonic() < deadline:
            cfg = self.client.get_function_configuration(FunctionName=name)
            state = cfg.get("State", "Active")
            upd = cfg.get("LastUpdateStatus", "Successful")
            if state == "Failed" or upd == "Failed":
                raise BenchError("function %s failed: %s / %s" % (
                    name, cfg.get("StateReason"), cfg.get("LastUpdateStatusReason")))
            if state == "Active" and upd != "InProgress":
                return cfg
            time.sleep(0.02)
        raise BenchError("function %s not Active after %ds: %s" % (name, timeout, cfg))

    memory_mb = 128

    def create(self, name, rt_key, zip_bytes, memory=None, timeout=10):
        memory = memory or self.memory_mb
        runtime, handler, _ = RUNTIMES[rt_key]
        self.client.create_function(FunctionName=name, Runtime=runtime, Handler=handler, Role=ROLE,
                                    Code={"ZipFile": zip_bytes}, MemorySize=memory, Timeout=timeout)
        return self.wait_ready(name)

    def invoke_path(self, name):
        return "/2015-03-31/functions/%s/invocations" % name


class TimedInvoker:
    """One keep-alive connection; times a single invoke from send to the last response byte.

    Python's client overhead is the same for the cold and the warm invoke it is compared with."""

    def __init__(self, api, port):
        self.api = api
        self.port = port
        self.conn = None

    def invoke(self, name, tail=False):
        path = self.api.invoke_path(name)
        extra = {"X-Amz-Log-Type": "Tail"} if tail else {}
        headers = self.api.signed_headers("POST", path, PAYLOAD, extra)
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                t0 = time.perf_counter_ns()
                self.conn.request("POST", path, body=PAYLOAD, headers=headers)
                r = self.conn.getresponse()
                body = r.read()
                t1 = time.perf_counter_ns()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return (t1 - t0) / 1000.0, r.status, dict(r.getheaders()), body
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt:
                    raise
        raise BenchError("unreachable")

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None


def init_duration_in_tail(headers):
    """From the X-Amz-Log-Result tail: None (no tail), False (no Init Duration: warm start) or
    the Init Duration in ms (float) of the REPORT line."""
    tail = headers.get("X-Amz-Log-Result") or headers.get("x-amz-log-result")
    if not tail:
        return None
    try:
        text = base64.b64decode(tail).decode("utf-8", "replace")
    except ValueError:
        return None
    m = re.search(r"Init Duration: ([0-9.]+) ms", text)
    if not m:
        return False
    return float(m.group(1))


# ------------------------------------------------------------------------------------------------
# The benchmark


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = args.bin_dir
        self.results = {"machine": machine_facts(), "baseline_http": {}, "baseline_http_pinned": {}, "warm": {}, "cold": {},
                        "exec": {}, "burst": {}, "memory": {}, "payload": {}}
        self.problems = []
        self.q = args.quick

    def tool(self, name):
        return os.path.join(self.bin, name)

    def problem(self, what):
        log("PROBLEM: " + what)
        self.problems.append(what)

    # --- zips

    def zips(self):
        def mk(files):
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                for arcname, path, mode in files:
                    info = zipfile.ZipInfo(arcname, date_time=(2026, 1, 1, 0, 0, 0))
                    info.external_attr = (0o100000 | mode) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with open(path, "rb") as f:
                        z.writestr(info, f.read())
            return buf.getvalue()
        fn = os.path.join(HERE, "functions")
        return {
            "provided": mk([("bootstrap", self.tool("kindling-noop-bootstrap"), 0o755)]),
            "python": mk([("noop.py", os.path.join(fn, "python", "noop.py"), 0o644)]),
            "node": mk([("index.js", os.path.join(fn, "node", "index.js"), 0o644)]),
        }

    # --- (a) bare HTTP baseline

    def loadgen(self, url, concurrency, label, duration=None, requests=None, warmup=0,
                headers=None, body=None, expect=None, max_time=None, cpu=None, body_file=None):
        cmd = [self.tool("kindling-loadgen"), "--url", url, "--concurrency", str(concurrency),
               "--warmup", str(warmup), "--label", label, "--timeout", "30"]
        if duration is not None:
            cmd += ["--duration", str(duration)]
        else:
            cmd += ["--requests", str(requests)]
        for k, v in (headers or {}).items():
            cmd += ["--header", "%s: %s" % (k, v)]
        if body is not None:
            cmd += ["--method", "POST", "--body", body.decode()]
        if body_file is not None:  # large payloads: the body and the expected echo
            cmd += ["--method", "POST", "--body-file", body_file, "--expect-body-file", body_file]
        if expect is not None:
            cmd += ["--expect-body", expect.decode()]
        mt = max_time or ((duration or 30) + 90)
        cmd += ["--max-time", str(mt)]
        return run_json(cmd, timeout=mt + 15, cpu=cpu)

    def echo_server(self, cpu=None):
        p = subprocess.Popen([self.tool("kindling-echo-server"), "--listen", "127.0.0.1:0",
                              "--max-seconds", "300"], stdout=subprocess.PIPE, text=True,
                             start_new_session=True, preexec_fn=pin_to(cpu))
        line = p.stdout.readline().strip()  # "listening 127.0.0.1:PORT"
        if not line.startswith("listening "):
            p.kill()
            p.wait(timeout=10)
            raise BenchError("echo server did not start: %r" % line)
        return p, "http://%s/echo" % line.split()[1]

    def bare_http(self, when):
        p, url = self.echo_server()
        try:
            for c in (1, 8):
                fl = ForeignLoad()
                r = self.loadgen(url, c, "echo-c%d" % c, duration=self.args.seconds,
                                 warmup=200 if c == 1 else 50, body=PAYLOAD)
                r["foreign_cpu_pct"] = fl.percent()
                self.results["baseline_http"]["%s-c%d" % (when, c)] = r
                log("bare HTTP (%s) c=%d: p50 %d us, %.0f req/s" % (when, c, r["p50_us"], r["rps"]))
        finally:
            p.kill()
            p.wait(timeout=10)

    def bare_http_pinned(self):
        """c=1 with client and server pinned to one vCPU, then to two: the two modes the unpinned
        baseline flips between (a cross-vCPU wakeup costs ~30 us here, a same-vCPU one ~7 us)."""
        if (os.cpu_count() or 1) < 2:
            return
        for mode, server_cpu, client_cpu in (("same vCPU", 0, 0), ("different vCPUs", 0, 1)):
            p, url = self.echo_server(server_cpu)
            try:
                fl = ForeignLoad()
                r = self.loadgen(url, 1, "echo-pinned", duration=min(self.args.seconds, 2.0),
                                 warmup=200, body=PAYLOAD, cpu=client_cpu)
                r["foreign_cpu_pct"] = fl.percent()
                self.results["baseline_http_pinned"][mode] = r
                log("bare HTTP pinned to %s c=1: p50 %d us" % (mode, r["p50_us"]))
            finally:
                p.kill()
                p.wait(timeout=10)

    # --- fork+exec baselines

    def exec_baselines(self):
        node = shutil.which("node") or "/usr/bin/node"
        cases = [
            ("bin_true", ["/bin/true"], 300),
            ("bootstrap_exit", [self.tool("kindling-noop-bootstrap"), "--exit"], 300),
            ("python", ["/usr/bin/python3", "-c", "pass"], 60 if not self.q else 20),
            ("node", [node, "-e", "0"], 30 if not self.q else 10),
        ]
        for key, argv, reps in cases:
            try:
                fl = ForeignLoad()
                r = run_json([self.tool("kindling-exec-bench"), "--reps", str(reps), "--warmup", "3",
                              "--max-time", "30", "--label", key, "--"] + argv, timeout=45,
                             env=SANDBOX_LIKE_ENV)
                r["foreign_cpu_pct"] = fl.percent()
                self.results["exec"][key] = r
                log("fork+exec %s: p50 %.0f us" % (key, r["p50_us"]))
            except (BenchError, subprocess.TimeoutExpired, ValueError) as e:
                self.problem("exec baseline %s failed: %s" % (key, e))

    # --- (b) warm invokes

    def warm(self, api, daemon, names):
        for c in (1, 8):
            for rt, name in names.items():
                path = api.invoke_path(name)
                hdrs = api.signed_headers("POST", path, PAYLOAD)
                # CPU used by the daemon and by every sandbox process during the row (includes
                # the warm-up requests: close enough at 30-100 warm-up vs thousands measured).
                before = descendants(daemon.proc.pid)
                cpu0 = (cpu_seconds([daemon.proc.pid]), cpu_seconds(before))
                fl = ForeignLoad()
                try:
                    r = self.loadgen(api.endpoint + path, c, "%s-c%d" % (rt, c),
                                     duration=self.args.seconds, warmup=100 if c == 1 else 30,
                                     headers=hdrs, body=PAYLOAD, expect=PAYLOAD)
                except (BenchError, subprocess.TimeoutExpired, ValueError) as e:
                    self.problem("warm %s c=%d: loadgen failed: %s" % (rt, c, e))
                    continue
                after = descendants(daemon.proc.pid)
                n = r["requests"] + c * (100 if c == 1 else 30)
                r["daemon_cpu_us_per_invoke"] = (cpu_seconds([daemon.proc.pid]) - cpu0[0]) / n * 1e6
                # Processes that exited during the row are lost from the sum; none should.
                r["sandbox_cpu_us_per_invoke"] = (cpu_seconds(after) - cpu0[1]) / n * 1e6
                r["runtime_processes"] = sum(1 for comm in after.values()
                                             if comm in RUNTIMES[rt][2])
                r["foreign_cpu_pct"] = fl.percent()
                self.results["warm"]["%s-c%d" % (rt, c)] = r
                log("warm %s c=%d: p50 %d us p99 %d us, %.0f req/s, non2xx %d, errors %d" % (
                    rt, c, r["p50_us"], r["p99_us"], r["rps"], r["non2xx"], r["errors"]))
                if r["non2xx"] or r["errors"] or r["warmup_errors"] or r["body_mismatch"] \
                        or r["function_errors"] or r["timed_out"]:
                    self.problem("warm %s c=%d: POST %s -> status %s, errors %d, warmup errors %d, "
                                 "function errors %d, body mismatches %d, timed out %s; first: %s"
                                 % (rt, c, path, r["status"], r["errors"], r["warmup_errors"],
                                    r["function_errors"], r["body_mismatch"], r["timed_out"],
                                    r["first_error"]))

    # --- payload sizes

    PAYLOAD_SIZES = (64 << 10, (1 << 20) + 1, 6 * 1000 * 1000)  # 6 MB: just under Lambda's limit

    def payloads(self, api, names, tmp):
        """Warm invokes with large events echoed back: the copies on the invoke path."""
        for size in self.PAYLOAD_SIZES:
            path_f = os.path.join(tmp, "payload-%d.json" % size)
            with open(path_f, "wb") as f:
                f.write(b'"' + b"a" * (size - 2) + b'"')  # a JSON string: every runtime echoes it
            for rt in ("provided", "python"):
                name = names.get(rt)
                if not name:
                    continue
                path = api.invoke_path(name)
                with open(path_f, "rb") as f:
                    hdrs = api.signed_headers("POST", path, f.read())
                try:
                    r = self.loadgen(api.endpoint + path, 1, "%s-%d" % (rt, size), requests=20,
                                     warmup=2, headers=hdrs, body_file=path_f, max_time=120)
                except (BenchError, subprocess.TimeoutExpired, ValueError) as e:
                    self.problem("payload %d B %s: loadgen failed: %s" % (size, rt, e))
                    continue
                self.results["payload"]["%s-%d" % (rt, size)] = r
                log("payload %d B %s: p50 %d us, status %s" % (size, rt, r["p50_us"], r["status"]))
                if r["non2xx"] or r["errors"] or r["warmup_errors"] or r["body_mismatch"]:
                    self.problem("payload %d B %s: POST %s -> status %s, errors %d, warmup errors "
                                 "%d, body mismatches %d; first: %s" % (
                                     size, rt, path, r["status"], r["errors"], r["warmup_errors"],
                                     r["body_mismatch"], r["first_error"][:300]))

    # --- (c) cold starts

    def cold(self, api, port, names, zips):
        reps = self.args.cold_reps
        for rt, name in names.items():
            inv = TimedInvoker(api, port)
            cold, warm, init_seen, bad = [], [], [], []
            fl = ForeignLoad()
            deadline = time.monotonic() + self.args.cold_budget
            for i in range(reps):
                if time.monotonic() > deadline:
                    self.problem("cold %s: stopped after %d of %d repetitions (time budget %ds)"
                                 % (rt, i, reps, self.args.cold_budget))
                    break
                try:
                    api.client.update_function_configuration(
                        FunctionName=name, Environment={"Variables": {"BENCH_GEN": str(i)}})
                    api.wait_ready(name)
                    us, status, hdrs, body = inv.invoke(name, tail=True)
                    if status != 200 or body != PAYLOAD or "X-Amz-Function-Error" in hdrs:
                        bad.append("HTTP %d %s %r" % (status, hdrs.get("X-Amz-Function-Error", ""),
                                                      body[:200]))
                        continue
                    cold.append(us)
                    init_seen.append(init_duration_in_tail(hdrs))
                    # The same client, the same connection, the now-warm sandbox.
                    w = [inv.invoke(name)[0] for _ in range(3)]
                    warm.append(min(w[1:]))
                except Exception as e:  # noqa: BLE001 - any failure is reported, not fatal
                    bad.append("%s: %s" % (type(e).__name__, e))
                    inv.close()
            # First invoke of brand-new functions (creation included in nothing: timed from send).
            new = []
            for i in range(self.args.new_reps):
                fname = "%s-new%d" % (name, i)
                try:
                    api.create(fname, rt, zips[rt])
                    us, status, hdrs, body = inv.invoke(fname)
                    if status == 200 and body == PAYLOAD:
                        new.append(us)
                    else:
                        bad.append("new function: HTTP %d %r" % (status, body[:200]))
                    api.client.delete_function(FunctionName=fname)
                except Exception as e:  # noqa: BLE001
                    bad.append("new function %s: %s: %s" % (fname, type(e).__name__, e))
            inv.close()
            self.results["cold"][rt] = {"cold_us": cold, "warm_us": warm, "init_seen": init_seen,
                                        "new_fn_us": new, "failures": bad,
                                        "foreign_cpu_pct": fl.percent()}
            if cold:
                log("cold %s: median %.1f ms over %d (warm %.2f ms), new fn median %s" % (
                    rt, statistics.median(cold) / 1000, len(cold),
                    statistics.median(warm) / 1000,
                    "%.1f ms" % (statistics.median(new) / 1000) if new else "-"))
            if bad:
                self.problem("cold %s: %d failures; first: %s" % (rt, len(bad), bad[0]))
            if init_seen and not any(x not in (None, False) for x in init_seen):
                self.problem("cold %s: no 'Init Duration' in the log tail of any first invoke after "
                             "UpdateFunctionConfiguration: was the sandbox really new?" % rt)

    # --- (d) sandbox creation burst and memory

    def burst(self, api, daemon, names):
        k = self.args.burst
        for rt in ("provided", "python"):
            name = names.get(rt)
            if not name:
                continue
            try:
                api.client.update_function_configuration(
                    FunctionName=name, Environment={"Variables": {"BENCH_GEN": "burst"}})
                api.wait_ready(name)
                time.sleep(0.3)  # let retired sandboxes go away before counting
                comms = RUNTIMES[rt][2]
                before = {p for p, c in descendants(daemon.proc.pid).items() if c in comms}
                path = api.invoke_path(name)
                hdrs = api.signed_headers("POST", path, PAYLOAD)
                fl = ForeignLoad()
                r = self.loadgen(api.endpoint + path, k, "%s-burst%d" % (rt, k), requests=k,
                                 warmup=0, headers=hdrs, body=PAYLOAD, expect=PAYLOAD, max_time=120)
                r["foreign_cpu_pct"] = fl.percent()
                desc = descendants(daemon.proc.pid)
                new = {p for p, c in desc.items() if c in comms} - before
                r["new_runtime_processes"] = len(new)
                r["rate_per_s"] = (len(new) / r["elapsed_s"]) if r["elapsed_s"] > 0 else 0
                self.results["burst"][rt] = r
                log("burst %s: %d invokes in %.1f ms, %d new sandboxes, %.0f sandboxes/s, status %s"
                    % (rt, k, r["elapsed_s"] * 1000, len(new), r["rate_per_s"], r["status"]))
                if r["non2xx"] or r["errors"] or r["body_mismatch"]:
                    self.problem("burst %s (%d simultaneous first invokes): status %s, errors %d, "
                                 "first: %s" % (rt, k, r["status"], r["errors"], r["first_error"]))
                self.memory(rt, daemon, desc, new)
            except Exception as e:  # noqa: BLE001
                self.problem("burst %s failed: %s: %s" % (rt, type(e).__name__, e))

    def memory(self, rt, daemon, desc, runtime_pids):
        """PSS of each sandbox's processes other than the runtime (kindling-init and helpers)."""
        if not runtime_pids:
            return
        table = proc_table()
        per_runtime, overhead, overhead_comms = [], [], set()
        for pid in runtime_pids:
            per_runtime.append(pss_kib(pid))
            # Walk up to the daemon: everything in between belongs to this sandbox.
            p = table.get(pid, (0, ""))[0]
            extra = 0
            while p and p != daemon.proc.pid and p in table:
                v = pss_kib(p)
                extra += v or 0
                overhead_comms.add(table[p][1])
                p = table[p][0]
            overhead.append(extra)
        vals = [v for v in per_runtime if v is not None]
        self.results["memory"][rt] = {
            "sandboxes": len(runtime_pids),
            "runtime_pss_kib_median": statistics.median(vals) if vals else None,
            "overhead_pss_kib_median": statistics.median(overhead) if overhead else None,
            "overhead_processes": sorted(overhead_comms),
            "daemon_pss_kib": pss_kib(daemon.proc.pid),
        }

    # --- orchestration

    def run(self):
        a = self.args
        # Sandboxes reach the data dir (code packages, jail roots) as their own unprivileged host
        # uid, so its parents must be searchable by others (mkdtemp makes 0700 dirs). /var/tmp as
        # in tests/e2e: /tmp may be remounted under a running test on the dev fleet.
        base = "/var/tmp" if os.path.isdir("/var/tmp") else None
        tmp = tempfile.mkdtemp(prefix="kindling-bench-", dir=base)
        os.chmod(tmp, 0o711)
        daemon = None
        try:
            self.exec_baselines()
            self.bare_http("before")
            self.bare_http_pinned()
            if a.kindlingd:
                daemon = Daemon(a.kindlingd, tmp, a.daemon_arg or [])
                daemon.start()
                api = Api(daemon.endpoint, daemon_keys(daemon.data_dir))
                api.memory_mb = a.memory_mb
                zips = self.zips()
                names = {}
                for rt in a.runtimes:
                    name = "bench-%s" % rt
                    try:
                        api.create(name, rt, zips[rt])
                        out = api.client.invoke(FunctionName=name, Payload=PAYLOAD)
                        body = out["Payload"].read()
                        if out.get("FunctionError") or body != PAYLOAD:
                            self.problem("boto3 invoke of %s returned FunctionError=%s, payload %r "
                                         "(expected %r)" % (name, out.get("FunctionError"),
                                                            body[:300], PAYLOAD))
                            continue
                        names[rt] = name
                    except Exception as e:  # noqa: BLE001
                        self.problem("setting up %s (%s): %s: %s" % (
                            name, RUNTIMES[rt][0], type(e).__name__, e))
                self.warm(api, daemon, names)
                self.payloads(api, names, tmp)
                self.bare_http("between")
                self.cold(api, daemon.port, names, zips)
                self.bare_http("after")
                if a.burst > 0:
                    self.burst(api, daemon, names)
        except Exception as e:  # noqa: BLE001
            self.problem("benchmark aborted: %s: %s\n%s" % (type(e).__name__, e,
                                                          traceback.format_exc(limit=3)))
        finally:
            if daemon:
                for n in daemon.stop():
                    self.problem(n)
                if a.keep_tmp:
                    log("kept %s (daemon log: %s)" % (tmp, daemon.log_path))
            if not a.keep_tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        try:
            return self.report()
        except Exception:  # noqa: BLE001 - never lose the measurements to a report bug
            traceback.print_exc()
            return json.dumps({"results": self.results, "problems": self.problems}, indent=1)

    # --- report

    def report(self):
        R = self.results

        def pct(v):
            return "" if v is None else "%.0f%%" % v
        m = R["machine"]
        m["loadavg_end"] = loadavg()
        out = []
        w = out.append
        w("# Kindling benchmark report")
        w("")
        w("Machine: %s vCPU (`nproc`), %s, kernel %s, %s RAM. Kindling %s, %s." % (
            m["nproc"], m["cpu"], m["kernel"], m["memory"], m["git"], m["date"]))
        w("Load average (1/5/15 min) at start: %s, at end: %s (other work on the 2 vCPUs moves "
          "loopback numbers: with the other vCPU busy, client and server share one vCPU and a "
          "round trip gets faster)." % (m["loadavg_start"], m["loadavg_end"]))
        w("Functions: MemorySize %d MB, Timeout 10 s." % self.args.memory_mb)
        w("All numbers from one run of `bench/run.py`; baselines measured in the same run. "
          "Latencies in µs unless marked ms; p50/p99/max over every measured request.")
        w("")
        base = R["baseline_http"]
        w("## Warm invoke vs. bare HTTP round trip (loopback)")
        w("")
        w("Closed loop, %s s per row, keep-alive, 2-byte payload `{}` echoed back. Ratio = p50 / "
          "median bare-HTTP p50 at the same concurrency (bare HTTP measured before, between and "
          "after the invoke rows); in parentheses at c=1, the ratio to the bare round trip with client and "
          "server pinned to different vCPUs, the slower of the two modes the unpinned baseline "
          "flips between on 2 vCPUs. Sandboxes = runtime processes of that runtime alive under "
          "kindlingd after the row. CPU = user+system time of kindlingd and of all sandbox "
          "processes during the row, per invoke (10 ms tick resolution). Other load = CPU used by "
          "processes outside this benchmark during the row, in %% of all vCPUs (the fleet is shared; "
          "rows with a high value are noisy)." % self.args.seconds)
        w("")
        w("| what | c | p50 | p99 | max | req/s | p50 ratio | target | non-2xx / errors | "
          "sandboxes | CPU µs/invoke kindlingd + sandbox | other load |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|")
        for c in (1, 8):
            rows = [(k.split("-")[0], r) for k, r in base.items() if k.endswith("-c%d" % c)]
            # The loopback baseline is bimodal on 2 vCPUs (client and server on the same vCPU or
            # not): it is measured several times in the run and the ratio uses the median p50.
            b50 = statistics.median(r["p50_us"] for _, r in rows) if rows else None
            lines = [("bare HTTP (echo server), %s" % when, r, None) for when, r in rows]
            if c == 1:
                lines += [("bare HTTP (echo server), pinned to %s (not in the median)" % mode, r,
                           None) for mode, r in R["baseline_http_pinned"].items()]
            lines += [("warm invoke, %s" % RUNTIMES[rt][0], R["warm"].get("%s-c%d" % (rt, c)), rt)
                      for rt in RUNTIMES]
            for label, r, key in lines:
                if not r:
                    continue
                ratio = "%.1fx" % (r["p50_us"] / b50) if (b50 and key) else ""
                cross = R["baseline_http_pinned"].get("different vCPUs")
                if ratio and c == 1 and cross and cross["p50_us"] > 0:
                    ratio += " (%.1fx)" % (r["p50_us"] / cross["p50_us"])
                tgt = WARM_TARGET_X.get(key) if c == 1 else None
                sb = cpu = ""
                if "runtime_processes" in r:
                    sb = str(r["runtime_processes"])
                    cpu = "%.0f + %.0f" % (r["daemon_cpu_us_per_invoke"],
                                           r["sandbox_cpu_us_per_invoke"])
                w("| %s | %d | %d | %d | %d | %.0f | %s | %s | %d / %d | %s | %s | %s |" % (
                    label, c, r["p50_us"], r["p99_us"], r["max_us"], r["rps"], ratio,
                    "≤ %gx" % tgt if tgt else "", r["non2xx"], r["errors"] + r["warmup_errors"],
                    sb, cpu, pct(r.get("foreign_cpu_pct"))))
            if b50:
                w("| **bare HTTP median p50 (ratio base)** | %d | %g | | | | 1x | | | | | |"
                  % (c, b50))
        w("")

        if R["payload"]:
            w("## Large payloads (warm, c=1)")
            w("")
            w("20 invokes per row after 2 warm-ups; the event is a JSON string of the given size and "
              "every function echoes it back, so each byte crosses the invoke path twice. MB/s = "
              "2 × size / p50.")
            w("")
            w("| runtime | payload (bytes) | p50 (ms) | max (ms) | MB/s at p50 | status | errors |")
            w("|---|---:|---:|---:|---:|---|---:|")
            for key, r in R["payload"].items():
                rt, size = key.rsplit("-", 1)
                size = int(size)
                w("| %s | %d | %.2f | %.2f | %.0f | %s | %d |" % (
                    RUNTIMES[rt][0], size, r["p50_us"] / 1000, r["max_us"] / 1000,
                    2 * size / r["p50_us"] if r["p50_us"] > 0 else 0, json.dumps(r["status"]),
                    r["errors"] + r["warmup_errors"] + r["body_mismatch"]))
            w("")
        w("## Cold start")
        w("")
        w("Cold = first invoke after UpdateFunctionConfiguration (new sandbox required), timed by one "
          "keep-alive python client from request send to last response byte; warm = the next "
          "invokes on the same client and sandbox. Median over the repetitions. New fn = first "
          "invoke of a just-created function. Baseline = fork+exec+wait of the same runtime doing "
          "nothing, no isolation, timed in-process (`kindling-exec-bench`), in a sandbox-like "
          "environment (only PATH, LANG, TZ, HOME).")
        w("")
        w("Init Duration = what Kindling itself reports in the REPORT log line (from "
          "`X-Amz-Log-Type: Tail`) for that cold invoke.")
        w("")
        w("| runtime | n | cold p50 (ms) | cold max (ms) | warm p50 (ms) | cold − warm (ms) | new fn "
          "p50 (ms) | baseline | baseline p50 (ms) | cold / baseline | target | Init Duration "
          "logged | Init Duration p50 (ms) | other load |")
        w("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|---:|---:|")
        ex = R["exec"]
        bl = {"provided": ("bootstrap --exit", ex.get("bootstrap_exit")),
              "python": ("python3 -c pass", ex.get("python")),
              "node": ("node -e 0", ex.get("node"))}
        tgt = {"provided": "cold − warm ≤ 5 ms", "python": "≤ 1.5x `python3 -c pass`",
               "node": ""}
        for rt, c in R["cold"].items():
            if not c["cold_us"]:
                w("| %s | 0 | failed: %s |||||||||||| |" % (RUNTIMES[rt][0],
                                                        (c["failures"] or ["?"])[0][:120]))
                continue
            cm = statistics.median(c["cold_us"]) / 1000
            wm = statistics.median(c["warm_us"]) / 1000
            nm = "%.2f" % (statistics.median(c["new_fn_us"]) / 1000) if c["new_fn_us"] else "-"
            bname, b = bl[rt]
            bm = b["p50_us"] / 1000 if b else None
            seen = [x for x in c["init_seen"] if x is not None]
            inits = [x for x in seen if x is not False]
            w("| %s | %d | %.2f | %.2f | %.3f | %.2f | %s | `%s` | %s | %s | %s | %s | %s | %s |" % (
                RUNTIMES[rt][0], len(c["cold_us"]), cm, max(c["cold_us"]) / 1000, wm, cm - wm, nm,
                bname, "%.2f" % bm if bm else "-", "%.2fx" % (cm / bm) if bm else "-", tgt[rt],
                "%d/%d" % (len(inits), len(seen)) if seen else "no log tail",
                "%.2f" % statistics.median(inits) if inits else "-", pct(c.get("foreign_cpu_pct"))))
        w("")
        w("fork+exec+wait baselines (no isolation, environment: %s):" % " ".join(
            "%s=%s" % kv for kv in SANDBOX_LIKE_ENV.items()))
        w("")
        w("| command | reps | p50 (ms) | p90 (ms) | max (ms) | other load |")
        w("|---|---:|---:|---:|---:|---:|")
        for key, r in ex.items():
            w("| `%s` | %d | %.3f | %.3f | %.3f | %s |" % (
                r["cmd"].replace(self.bin + "/", ""), r["reps"], r["p50_us"] / 1000,
                r["p90_us"] / 1000, r["max_us"] / 1000, pct(r.get("foreign_cpu_pct"))))
        w("")
        if R["burst"]:
            w("## Sandbox creation burst")
            w("")
            w("K simultaneous first invokes of one function right after UpdateFunctionConfiguration "
              "(one connection each, released together). New sandboxes = new runtime processes "
              "under kindlingd in /proc afterwards. Rate = new sandboxes / wall time of the burst "
              "(a lower bound on the creation rate: it includes the invokes). Target ≥ 400/s.")
            w("")
            w("| runtime | K | wall (ms) | new sandboxes | sandboxes/s | p50 (ms) | max (ms) | status "
              "| other load |")
            w("|---|---:|---:|---:|---:|---:|---:|---|---:|")
            for rt, r in R["burst"].items():
                w("| %s | %d | %.1f | %d | %.0f | %.1f | %.1f | %s | %s |" % (
                    RUNTIMES[rt][0], r["concurrency"], r["elapsed_s"] * 1000,
                    r["new_runtime_processes"], r["rate_per_s"], r["p50_us"] / 1000,
                    r["max_us"] / 1000, json.dumps(r["status"]), pct(r.get("foreign_cpu_pct"))))
            w("")
        if R["memory"]:
            w("## Idle memory per sandbox (PSS)")
            w("")
            w("Measured on the burst's sandboxes, idle. Overhead = PSS of the processes between "
              "kindlingd and the runtime (e.g. kindling-init); kernel memory (slab, page tables of "
              "the jail) not included. Target: overhead ≤ 0.5 MiB.")
            w("")
            w("| runtime | sandboxes | runtime PSS (KiB, median) | overhead PSS (KiB, median) | "
              "overhead processes | kindlingd PSS (KiB) |")
            w("|---|---:|---:|---:|---|---:|")
            for rt, mm in R["memory"].items():
                w("| %s | %d | %s | %s | %s | %s |" % (
                    RUNTIMES[rt][0], mm["sandboxes"], mm["runtime_pss_kib_median"],
                    mm["overhead_pss_kib_median"], ", ".join(mm["overhead_processes"]) or "-",
                    mm["daemon_pss_kib"]))
            w("")
        if self.problems:
            w("## Problems seen during this run")
            w("")
            for p in self.problems:
                w("- " + p.replace("\n", "\n  "))
            w("")
        text = "\n".join(out)
        if self.args.out:
            with open(self.args.out, "w") as f:
                f.write(text + "\n")
        if self.args.json_out:
            with open(self.args.json_out, "w") as f:
                json.dump({"results": R, "problems": self.problems}, f, indent=1)
        return text


def find_bin_dir(kindlingd):
    cands = []
    if kindlingd:
        # build/src/bin/kindlingd -> build/bench
        cands.append(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(kindlingd)))), "bench"))
    for d in sorted(os.listdir(REPO)):
        if d.startswith("build"):
            cands.append(os.path.join(REPO, d, "bench"))
    for c in cands:
        if os.path.exists(os.path.join(c, "kindling-loadgen")):
            return c
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kindlingd", help="path to the kindlingd binary (omit: baselines only)")
    ap.add_argument("--bin-dir", help="directory with kindling-loadgen, kindling-echo-server, "
                                      "kindling-exec-bench, kindling-noop-bootstrap")
    ap.add_argument("--out", help="also write the markdown report here")
    ap.add_argument("--json-out", help="write every raw measurement here")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per warm/bare row")
    ap.add_argument("--cold-reps", type=int, default=20)
    ap.add_argument("--new-reps", type=int, default=5, help="brand-new functions per runtime")
    ap.add_argument("--cold-budget", type=float, default=90, help="max seconds per runtime")
    ap.add_argument("--burst", type=int, default=64, help="simultaneous first invokes (0: skip)")
    ap.add_argument("--memory-mb", type=int, default=128, help="MemorySize of the functions "
                    "(Kindling gives CPU weight in proportion, 1769 MB = 1 vCPU)")
    ap.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    ap.add_argument("--daemon-arg", action="append", help="extra kindlingd argument (repeatable)")
    ap.add_argument("--quick", action="store_true", help="1 s rows, 5 cold reps, 2 new fns")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (daemon log)")
    args = ap.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 1.0)
        args.cold_reps = min(args.cold_reps, 5)
        args.new_reps = min(args.new_reps, 2)
    args.bin_dir = os.path.abspath(args.bin_dir) if args.bin_dir else find_bin_dir(args.kindlingd)
    if not args.bin_dir:
        sys.exit("cannot find the bench tools; build target kindling-bench and pass --bin-dir")
    if args.kindlingd:
        args.kindlingd = os.path.abspath(args.kindlingd)

    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_signal)
    text = Bench(args).run()
    print(text)


if __name__ == "__main__":
    main()
