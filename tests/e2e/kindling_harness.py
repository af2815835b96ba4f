"""Harness for Kindling's end-to-end tests: a real kindlingd, real sandboxes, real clients.

What lives here (conftest.py turns it into fixtures):
  Daemon          starts kindlingd on 127.0.0.1:<free port> with its own data dir, waits for the API,
                  and on stop() checks that it exited 0 and left no sandbox processes or cgroups.
                  kindlingd authenticates by default: once it answers, the harness reads the key
                  pair it generated (<data-dir>/credentials, user [default]) and remembers it for
                  the daemon's endpoint (credentials_for()).
  boto_client()   a boto3 Lambda client without retries and with generous timeouts, signing with
                  the endpoint's keys.
  aws()           the AWS CLI (/usr/bin/aws) against a daemon, bounded in time, JSON out, same keys.
  raw()           a plain HTTP request (bad bodies boto3 would refuse to send), SigV4-signed with
                  botocore's SigV4Auth and the endpoint's keys unless sign=False.

Binaries come from $KINDLING_BUILD_DIR (default <repo>/build), so another build (e.g. build-asan)
can be tested; $KINDLINGD overrides the daemon binary alone, and $KINDLINGD_ARGS adds arguments to
every daemon (scripts/sanitizers.sh passes the normal build's kindling-init with --init).
  make_zip()      zips built in memory; function sources for python, node and provided (C).

Every wait is bounded: pytest has no timeout plugin here.
"""

import atexit
import base64
import contextlib
import glob
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import textwrap
import time
import uuid
import zipfile

import boto3
import botocore.auth
import botocore.credentials
from botocore.awsrequest import AWSRequest
from botocore.config import Config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.path.abspath(os.environ.get("KINDLING_BUILD_DIR") or os.path.join(REPO, "build"))
BUILD_BIN = os.path.join(BUILD_DIR, "src", "bin")
KINDLINGD = os.environ.get("KINDLINGD", os.path.join(BUILD_BIN, "kindlingd"))
KINDLING_CHUNKD = os.path.join(BUILD_BIN, "kindling-chunkd")
KINDLING_IMAGES = os.path.join(BUILD_BIN, "kindling-images")
AWS_CLI = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else shutil.which("aws")
ROLE = "arn:aws:iam::000000000000:role/lambda"
REGION = "us-east-1"
CGROUP_ROOT = "/sys/fs/cgroup"
SANDBOX_UID = 993
CANARY = "canary-" + uuid.uuid4().hex  # in kindlingd's environment only

START_TIMEOUT = 20.0  # kindlingd up and answering
STOP_TIMEOUT = 30.0   # SIGTERM to exit, every sandbox destroyed

# Keys that sign nothing a daemon knows: what clients use for an endpoint without credentials (a
# daemon started with --auth off, or requests that must be refused).
DUMMY_KEYS = ("AKIDEXAMPLE", "secret")
_ENDPOINT_KEYS = {}  # endpoint -> (access key id, secret) of the daemon serving it


# ------------------------------------------------------------------------------------------------
# small utilities


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_private_tmpdir(prefix):
    """mkdtemp (under /var/tmp: on the dev fleet /tmp can be remounted under a running test), with
    the chain of parents searchable by others: sandboxes mount code packages as their own
    unprivileged host uid."""
    base = os.environ.get("KINDLING_E2E_TMP", "/var/tmp" if os.path.isdir("/var/tmp") else None)
    d = tempfile.mkdtemp(prefix=prefix, dir=base)
    p = d
    while p not in ("/", ""):
        mode = stat.S_IMODE(os.stat(p).st_mode)
        if mode & 0o011 != 0o011:
            os.chmod(p, mode | 0o011)
        p = os.path.dirname(p)
    return d


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def proc_starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: fields start after the last ')'.
    return int(data[data.rindex(")") + 2:].split()[19])


def alive(pid, starttime):
    """True if pid is still the process that started at starttime and is not a zombie (a zombie
    has released everything; reaping orphans is the host init's job, not kindlingd's)."""
    if proc_starttime(pid) != starttime:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
        return data[data.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return False


def descendants(pid):
    """(pid, starttime) of every descendant of pid, via /proc/<pid>/task/*/children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for children in glob.glob("/proc/%d/task/*/children" % p):
            try:
                with open(children) as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            for k in kids:
                st = proc_starttime(k)
                if st is not None:
                    out.append((k, st))
                    todo.append(k)
    return out


def processes_in_cgroups_named(name):
    """Pids whose cgroup path (as the host sees it) contains /<name>/ or ends with /<name>."""
    found = []
    for path in glob.glob("/proc/[0-9]*/cgroup"):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines():
            cg = line.split(":", 2)[-1]
            if ("/" + name + "/") in cg + "/":
                found.append(int(path.split("/")[2]))
                break
    return found


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------------------------------
# the daemon


def detach_mounts_below(path):
    """Lazily unmounts every mount at or below path (what a SIGKILLed kindlingd leaves: its
    image file system and the erofs mounts on it), deepest first."""
    path = os.path.realpath(path)
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == path or point.startswith(path + "/"):
                points.append(point)
    for point in reversed(points):
        subprocess.run(["umount", "-l", point], capture_output=True)
    return points


class ChunkServer:
    """A kindling-chunkd on 127.0.0.1:<free port> with its own data dir."""

    def __init__(self, extra_args=()):
        self.base = make_private_tmpdir("kindling-chunkd-")
        self.port = free_port()
        self.log_path = os.path.join(self.base, "chunkd.log")
        args = [KINDLING_CHUNKD, "--listen", "127.0.0.1:%d" % self.port,
                "--data-dir", os.path.join(self.base, "data")] + list(extra_args)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)
        log.close()
        wait_for(self._answers, START_TIMEOUT, what="kindling-chunkd to answer")

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _answers(self):
        assert self.proc.poll() is None, "kindling-chunkd exited:\n" + open(self.log_path).read()
        try:
            return raw(self.url, "GET", "/metrics", timeout=2, sign=False)[0] == 200
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)


_SHARED_CHUNKD = []


def shared_chunk_server():
    """One chunk server for every daemon of this test run: runtime images are built from the
    host's packages once, not once per daemon (a cluster's workers share one the same way)."""
    if not _SHARED_CHUNKD:
        _SHARED_CHUNKD.append(ChunkServer())
        atexit.register(_SHARED_CHUNKD[0].stop)
    return _SHARED_CHUNKD[0]


class Daemon:
    """One kindlingd process. start() / stop() may be repeated on the same data dir."""

    def __init__(self, data_dir=None, idle_timeout=None, extra_args=(), port=None):
        self.own_data_dir = data_dir is None
        self.base = make_private_tmpdir("kindling-e2e-")
        self.data_dir = data_dir or os.path.join(self.base, "data")
        self.idle_timeout = idle_timeout
        self.extra_args = list(extra_args)
        self.port = port
        self.proc = None
        self.log_path = os.path.join(self.base, "kindlingd.log")
        self.cgroups_before = None
        self.seen_children = {}  # pid -> starttime, every sandbox process observed
        self.keys = None  # (access key id, secret) read from <data-dir>/credentials after start

    # names ---------------------------------------------------------------------------------
    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def instance(self):
        """What the daemon names its cgroups after: kindling-<10 hex of sha256(realpath(data dir))>."""
        real = os.path.realpath(self.data_dir)
        return "kindling-" + hashlib.sha256(real.encode()).hexdigest()[:10]

    def instance_cgroup_dirs(self):
        return sorted(glob.glob(os.path.join(CGROUP_ROOT, "*", self.instance)))

    def sandbox_cgroup_dirs(self):
        """The per-sandbox cgroup directories (children of the instance dirs)."""
        out = []
        for d in self.instance_cgroup_dirs():
            for entry in os.scandir(d):
                if entry.is_dir(follow_symlinks=False):
                    out.append(entry.path)
        return sorted(out)

    def sandbox_ids(self):
        return sorted({os.path.basename(p) for p in self.sandbox_cgroup_dirs()})

    # lifecycle -----------------------------------------------------------------------------
    def start(self):
        assert self.proc is None
        if self.port is None:
            self.port = free_port()
        if self.cgroups_before is None:
            self.cgroups_before = set(glob.glob(os.path.join(CGROUP_ROOT, "*", "kindling-*")))
        args = [KINDLINGD, "--listen", "127.0.0.1:%d" % self.port, "--data-dir", self.data_dir]
        if self.idle_timeout is not None:
            args += ["--idle-timeout", str(self.idle_timeout)]
        args += self.extra_args
        args += os.environ.get("KINDLINGD_ARGS", "").split()  # e.g. the sanitizer run's --init
        if not any(a in ("--chunk-server", "--chunk-listen", "--images") for a in self.extra_args):
            args += ["--chunk-server", shared_chunk_server().url]
        log = open(self.log_path, "ab")
        env = dict(os.environ, KINDLING_E2E_CANARY=CANARY)  # must never reach a sandbox
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True, env=env)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("kindlingd exited with %s at start:\n%s" % (self.proc.returncode, self.log()))
            try:
                status, _, _ = raw(self.endpoint, "GET", "/metrics", timeout=2, sign=False)
                if status == 200:
                    self._remember_keys()
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("kindlingd did not answer within %.0fs:\n%s" % (START_TIMEOUT, self.log()))
            time.sleep(0.05)

    @property
    def auth(self):
        """False when started with --auth off; kindlingd's default is on."""
        args = self.extra_args
        return not any(a == "--auth" and args[i + 1:i + 2] == ["off"] for i, a in enumerate(args))

    @property
    def credentials_path(self):
        return os.path.join(self.data_dir, "credentials")

    def _remember_keys(self):
        if self.auth:
            self.keys = read_credentials_file(self.credentials_path)
            _ENDPOINT_KEYS[self.endpoint] = self.keys
        else:
            self.keys = None
            _ENDPOINT_KEYS.pop(self.endpoint, None)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def remember_children(self):
        """Records the daemon's current descendants (sandbox processes) for the leftover check."""
        if self.alive():
            for pid, st in descendants(self.proc.pid):
                self.seen_children[pid] = st

    def log(self, tail=8000):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return data[-tail:].decode("utf-8", "replace")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
        detach_mounts_below(self.data_dir)  # a killed daemon cannot unmount its images

    def stop(self, check=True):
        """SIGTERM, bounded wait, then (check=True) assert exit 0 and that no sandbox process or
        sandbox cgroup of this daemon is left. Returns the exit status."""
        if self.proc is None:
            return None
        self.remember_children()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.remember_children()
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None
            raise AssertionError("kindlingd did not exit within %.0fs of SIGTERM:\n%s" % (STOP_TIMEOUT, self.log()))
        self.proc = None
        if check:
            problems = self.leftovers()
            assert rc == 0, "kindlingd exited with %s:\n%s" % (rc, self.log())
            assert not problems, "kindlingd left behind: %s\n%s" % (problems, self.log())
        return rc

    def leftovers(self):
        problems = []
        # Sandbox processes: anything we saw under the daemon that still runs (same start time).
        for pid, st in sorted(self.seen_children.items()):
            if alive(pid, st):
                problems.append("process %d still running: %r" % (pid, _cmdline(pid)))
        # Any process still in one of the daemon's cgroups.
        stray = [p for p in processes_in_cgroups_named(self.instance) if alive(p, proc_starttime(p))]
        if stray:
            problems.append("processes in %s cgroups: %s" % (self.instance, [(p, _cmdline(p)) for p in stray]))
        # Sandbox cgroups (allow a moment: rmdir of a just-emptied cgroup can be EBUSY briefly).
        try:
            wait_for(lambda: not self.sandbox_cgroup_dirs(), 5, what="sandbox cgroups to go")
        except AssertionError:
            problems.append("sandbox cgroups left: %s" % self.sandbox_cgroup_dirs())
        # The instance's own cgroup dirs go too, so that runs do not accumulate them on the host.
        if self.new_instance_cgroup_dirs():
            problems.append("instance cgroup dirs left: %s" % self.new_instance_cgroup_dirs())
        # Image mounts (the FUSE file system and the erofs mounts on it) go with the daemon.
        mounts = detach_mounts_below(self.data_dir)
        if mounts:
            problems.append("mounts left: %s" % mounts)
        return problems

    def new_instance_cgroup_dirs(self):
        """Instance cgroup dirs that did not exist before this harness first started the daemon."""
        return sorted(set(self.instance_cgroup_dirs()) - (self.cgroups_before or set()))

    def tidy_cgroups(self):
        """Removes the (empty) instance cgroup dirs this daemon created, so test runs do not
        accumulate them on the host."""
        for d in self.new_instance_cgroup_dirs():
            with contextlib.suppress(OSError):
                os.rmdir(d)

    def cleanup(self):
        self.kill()
        self.tidy_cgroups()
        shutil.rmtree(self.base, ignore_errors=True)

    # health --------------------------------------------------------------------------------
    def metrics(self):
        status, _, body = raw(self.endpoint, "GET", "/metrics", sign=False)
        assert status == 200
        return parse_metrics(body.decode())


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def parse_metrics(text):
    """Prometheus text -> {'name{labels}': float}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


# ------------------------------------------------------------------------------------------------
# clients


def read_credentials_file(path, user="default"):
    """(access key id, secret) of `user` in a kindlingd credentials file (AWS credentials INI)."""
    import configparser
    ini = configparser.ConfigParser()
    with open(path) as f:
        ini.read_file(f)
    return ini[user]["aws_access_key_id"], ini[user]["aws_secret_access_key"]


def credentials_for(endpoint):
    """The keys of the daemon serving `endpoint` (DUMMY_KEYS when it does not authenticate)."""
    return _ENDPOINT_KEYS.get(endpoint.rstrip("/"), DUMMY_KEYS)


def boto_client(endpoint, read_timeout=120, keys=None):
    key, secret = keys or credentials_for(endpoint)
    return boto3.client(
        "lambda", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=key, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 0}, read_timeout=read_timeout, connect_timeout=10,
                      parameter_validation=True))


class CliError(Exception):
    def __init__(self, rc, stdout, stderr):
        super().__init__("aws exited %d: %s" % (rc, stderr.strip()[-2000:]))
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


def aws(endpoint, *args, timeout=90, check=True, cwd=None, keys=None):
    """Runs `aws --endpoint-url <endpoint> --output json lambda <args>` with the endpoint's keys (or
    `keys`); returns parsed JSON (or None for an empty stdout). check=False returns (rc, stdout,
    stderr) instead."""
    home = cwd or tempfile.gettempdir()
    key, secret = keys or credentials_for(endpoint)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/nonexistent/kindling-e2e-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/kindling-e2e-credentials",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
        "AWS_PAGER": "",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    cmd = [AWS_CLI, "--endpoint-url", endpoint, "--output", "json", "--cli-read-timeout", "120",
           "--cli-connect-timeout", "10", "lambda"] + [str(a) for a in args]
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, timeout=timeout, text=True)
    if not check:
        return p.returncode, p.stdout, p.stderr
    if p.returncode != 0:
        raise CliError(p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout) if p.stdout.strip() else None


def sign_headers(endpoint, method, path, body=b"", headers=None, keys=None):
    """`headers` plus the SigV4 headers (X-Amz-Date, Authorization) botocore's SigV4Auth adds for
    this request, signed with the endpoint's keys (or `keys`); unchanged for an endpoint without
    credentials."""
    headers = dict(headers or {})
    keys = keys or _ENDPOINT_KEYS.get(endpoint.rstrip("/"))
    if not keys:
        return headers
    req = AWSRequest(method=method, url=endpoint + path, data=body, headers=headers)
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(*keys), "lambda", REGION).add_auth(req)
    return dict(req.headers.items())


def request_bytes(endpoint, method, path, body=b"", headers=None, keys=None):
    """A whole HTTP/1.1 request (head + body) for a raw socket, signed like raw(): Host is the
    endpoint's host:port (it is signed), Content-Length is set when there is a body."""
    hostport = endpoint.split("//", 1)[1]
    headers = dict(headers or {})
    if body:
        headers.setdefault("Content-Length", str(len(body)))
    signed = sign_headers(endpoint, method, path, body, headers, keys)
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: " + hostport]
    lines += ["%s: %s" % (k, v) for k, v in signed.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def raw(endpoint, method, path, body=b"", headers=None, timeout=60, sign=True, keys=None):
    """One HTTP request, SigV4-signed for the endpoint's daemon unless sign=False; returns (status,
    {lowercased header: value}, body bytes)."""
    host, port = endpoint.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode()
        if sign:
            headers = sign_headers(endpoint, method, path, body, headers, keys)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def error_type(headers, body):
    """The Lambda error code of a raw error response: x-amzn-ErrorType (before ':'), or __type."""
    t = headers.get("x-amzn-errortype", "")
    if t:
        return t.split(":", 1)[0]
    try:
        return json.loads(body).get("__type", "").rsplit("#", 1)[-1]
    except ValueError:
        return ""


# ------------------------------------------------------------------------------------------------
# code packages


def make_zip(files, compression=zipfile.ZIP_DEFLATED):
    """files: {name: str|bytes} or [(ZipInfo|name, data)]. Regular files get mode 0755."""
    buf = io.BytesIO()
    items = files.items() if isinstance(files, dict) else files
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in items:
            if isinstance(name, zipfile.ZipInfo):
                info = name
            else:
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (stat.S_IFREG | 0o755) << 16
                info.create_system = 3
                info.compress_type = compression
            z.writestr(info, data)
    return buf.getvalue()


def symlink_entry(name, target):
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.create_system = 3  # unix: external_attr carries st_mode
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def zip_bomb(unzipped_bytes, name="zeros.bin"):
    """A zip with one entry of `unzipped_bytes` zeros, deflated while streaming (~1000:1)."""
    buf = io.BytesIO()
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("app.py", PYTHON_APP)
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            left = unzipped_bytes
            while left > 0:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
    return buf.getvalue()


# Python: one "kitchen sink" module; the event's "action" picks the behaviour. MARKER is made at
# import, so it names the sandbox (the runtime process) that served an invocation.
PYTHON_APP = textwrap.dedent('''
    import errno, json, os, signal, socket, sys, time, uuid

    MARKER = uuid.uuid4().hex
    TAG = "py-v1"
    COUNT = 0


    def _err(e):
        return "errno:" + errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) and e.errno else "error:" + type(e).__name__ + ":" + str(e)


    def _try(fn):
        try:
            v = fn()
            return {"ok": True, "value": v}
        except BaseException as e:  # noqa: B902 - report everything
            return {"ok": False, "error": _err(e)}


    def _write(path):
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
        return "written"


    def _status():
        out = {}
        with open("/proc/self/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
        return out


    def _connect(host, port, timeout=2.0):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            return "connected"
        finally:
            s.close()


    def _libc():
        import ctypes
        return ctypes.CDLL(None, use_errno=True)


    def _syscall_errno(fn):
        import ctypes
        rc = fn()
        if rc == 0:
            return "succeeded"
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


    def handler(event, context):
        global COUNT
        COUNT += 1
        action = event.get("action", "echo") if isinstance(event, dict) else "echo"
        if isinstance(event, dict) and "say" in event:
            print("handler says:", event["say"])
        if action == "echo":
            return {"runtime": "python", "tag": TAG, "marker": MARKER, "count": COUNT,
                    "event": event, "memory": context.memory_limit_in_mb,
                    "memory_env": os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
                    "foo": os.environ.get("FOO"), "request_id": context.aws_request_id,
                    "function_name": context.function_name, "version": context.function_version}
        if action == "sleep":
            time.sleep(event.get("seconds", 0.5))
            return {"marker": MARKER, "count": COUNT}
        if action == "raise":
            raise ValueError("boom: " + str(event.get("message", "")))
        if action == "exit":
            sys.stdout.flush()
            os._exit(event.get("code", 3))
        if action == "hang":
            time.sleep(3600)
        if action == "alloc":
            hold = []
            while True:
                hold.append(b"x" * (8 << 20))
        if action == "forkbomb":
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        if action == "filltmp":
            chunk = b"\\0" * (1 << 20)
            written = 0
            try:
                with open("/tmp/fill", "wb") as f:
                    while written < (4 << 30):
                        f.write(chunk)
                        f.flush()
                        written += len(chunk)
                return {"errno": None, "written": written}
            except OSError as e:
                return {"errno": e.errno, "name": errno.errorcode.get(e.errno), "written": written}
            finally:
                try:
                    os.unlink("/tmp/fill")
                except OSError:
                    pass
        if action == "flood":
            line = b"y" * 65535 + b"\\n"
            block = line * 16
            out = sys.stdout.buffer
            for _ in range(event.get("mib", 1024)):
                out.write(block)
            out.flush()
            print("flood done")
            return {"flooded_mib": event.get("mib", 1024)}
        if action == "bigresponse":
            return "z" * event.get("bytes", 7 << 20)
        if action == "tmpwrite":
            with open("/tmp/" + event["name"], "w") as f:
                f.write(MARKER)
            return {"marker": MARKER, "tmp": sorted(os.listdir("/tmp"))}
        if action == "tmplist":
            return {"marker": MARKER, "tmp": sorted(os.listdir("/tmp"))}
        if action == "connect":
            return {"results": {"%s:%d" % (h, p): _try(lambda h=h, p=p: _connect(h, p)) for h, p in event["targets"]}}
        if action == "kill":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            res = {"kill_minus1": _try(lambda: os.kill(-1, signal.SIGKILL)),
                   "kill_daemon": _try(lambda: os.kill(event["daemon_pid"], signal.SIGKILL)),
                   "kill_init": _try(lambda: os.kill(1, signal.SIGKILL))}
            return res
        if action == "security":
            return security(event)
        if action == "plant":
            return plant(event)
        if action == "hunt":
            return hunt(event)
        return {"error": "unknown action " + action}


    _HELD = []  # objects a planted secret lives in while the sandbox is warm


    def plant(event):
        """Leaves event["secret"] everywhere a function could leave data for another one to find."""
        import ctypes
        secret = event["secret"]
        print("planted", secret)
        for d in ("/tmp", "/dev/shm"):
            with open(os.path.join(d, "planted-" + secret), "w") as f:
                f.write(secret)
        libc = _libc()
        libc.shmat.restype = ctypes.c_void_p
        shm = libc.shmget(ctypes.c_int(event["shm_key"]), ctypes.c_size_t(4096), ctypes.c_int(0o1000 | 0o666))
        if shm >= 0:
            addr = libc.shmat(ctypes.c_int(shm), None, ctypes.c_int(0))
            ctypes.memmove(addr, secret.encode(), len(secret))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(chr(0) + "kindling-" + secret)
        s.listen(4)
        _HELD.append(s)
        return {"marker": MARKER, "shm": shm, "pid": os.getpid(), "secret_in_env": secret in json.dumps(dict(os.environ))}


    def hunt(event):
        """Looks for event["secret"] (or any of event["secrets"]) everywhere plant() puts one, in /proc,
        in /var/task, and at the host paths given; returns where it was found and what was reachable."""
        import ctypes
        secrets = event.get("secrets") or [event["secret"]]
        found = []

        def look(where, data):
            if isinstance(data, bytes):
                data = data.decode("utf-8", "replace")
            for sec in secrets:
                if sec in data:
                    found.append(where)

        for d in ("/tmp", "/dev/shm", "/var/task"):
            for root, _, files in os.walk(d):
                for name in files:
                    path = os.path.join(root, name)
                    look(path + " (name)", path)
                    try:
                        with open(path, "rb") as f:
                            look(path, f.read(1 << 20))
                    except OSError:
                        pass
        look("environment", json.dumps(dict(os.environ)))
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            for what in ("environ", "cmdline", "root/tmp", "cwd"):
                path = "/proc/%s/%s" % (pid, what)
                try:
                    if what in ("root/tmp", "cwd"):
                        for name in os.listdir(path):
                            look(path + "/" + name, name)
                    else:
                        with open(path, "rb") as f:
                            look(path, f.read())
                except OSError:
                    pass
        libc = _libc()
        for key in event.get("shm_keys", []):
            shm = libc.shmget(ctypes.c_int(key), ctypes.c_size_t(0), ctypes.c_int(0))
            if shm >= 0:
                found.append("sysv shm key %d" % key)
        for sec in secrets:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(chr(0) + "kindling-" + sec)
                found.append("abstract socket kindling-" + sec)
            except OSError:
                pass
            finally:
                s.close()
        paths = {}
        for path in event.get("paths", []):
            paths[path] = _try(lambda path=path: sorted(os.listdir(path)) if os.path.isdir(path) else open(path, "rb").read(64).hex())
        return {"marker": MARKER, "found": found, "paths": paths,
                "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}


    def security(event):
        r = {}
        r["uid"] = [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), list(os.getgroups())]
        st = _status()
        r["status"] = {k: st.get(k) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")}
        r["read_shadow"] = _try(lambda: open("/etc/shadow").read()[:20])
        r["list_root"] = _try(lambda: os.listdir("/root"))
        r["read_data_db"] = _try(lambda: open(os.path.join(event["data_dir"], "metadata.db"), "rb").read(16).hex())
        r["list_data_dir"] = _try(lambda: os.listdir(event["data_dir"]))
        r["list_code_root"] = _try(lambda: os.listdir(os.path.join(event["data_dir"], "code")))
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        r["proc_pids"] = pids
        cmdlines = {}
        for p in pids:
            try:
                with open("/proc/%d/cmdline" % p, "rb") as f:
                    cmdlines[p] = f.read().replace(b"\\0", b" ").decode("utf-8", "replace")
            except OSError as e:
                cmdlines[p] = _err(e)
        r["proc_cmdlines"] = cmdlines
        r["proc1_environ"] = _try(lambda: open("/proc/1/environ", "rb").read().decode("utf-8", "replace"))
        r["host_pid_visible"] = os.path.exists("/proc/%d" % event["daemon_pid"])
        for d in ("/", "/var/task", "/usr", "/etc", "/var/runtime", "/var/rapid", "/proc/sys/kernel"):
            r["write " + d] = _try(lambda d=d: _write(os.path.join(d, "kindling-e2e-probe")))
        r["write /tmp"] = _try(lambda: _write("/tmp/kindling-e2e-probe"))
        r["write /proc/sys/kernel/hostname"] = _try(lambda: open("/proc/sys/kernel/hostname", "w").write("x"))
        libc = _libc()
        import ctypes
        r["mount"] = _try(lambda: _syscall_errno(lambda: libc.mount(b"none", b"/tmp", b"tmpfs", ctypes.c_ulong(0), None)))
        r["umount /var/task"] = _try(lambda: _syscall_errno(lambda: libc.umount2(b"/var/task", 2)))
        for name, flag in (("CLONE_NEWUSER", 0x10000000), ("CLONE_NEWNS", 0x00020000), ("CLONE_NEWNET", 0x40000000)):
            r["unshare " + name] = _try(lambda flag=flag: _syscall_errno(lambda: libc.unshare(flag)))
        r["setuid0"] = _try(lambda: os.setuid(0))
        r["chroot"] = _try(lambda: os.chroot("/tmp"))
        r["dev"] = sorted(os.listdir("/dev"))
        for path in ("/dev/kmsg", "/proc/kcore", "/dev/mem", "/dev/kvm", "/dev/fuse", "/dev/userfaultfd", "/dev/vda", "/sys/fs/cgroup"):
            r["open " + path] = _try(lambda path=path: os.listdir(path) if path.startswith("/sys") else open(path, "rb").read(1).hex())
        r["sysrq"] = _try(lambda: open("/proc/sysrq-trigger", "w").write("h"))
        libc.syscall.restype = ctypes.c_long

        def sys_(n, *a):
            return _syscall_errno(lambda: 0 if libc.syscall(ctypes.c_long(n), *[ctypes.c_long(x) for x in a]) >= 0 else -1)

        r["ptrace attach 1"] = _try(lambda: sys_(101, 16, 1, 0, 0))
        pidfd = libc.syscall(ctypes.c_long(434), ctypes.c_long(1), ctypes.c_long(0))  # pidfd_open(1)
        r["pidfd_getfd init control socket"] = _try(lambda: sys_(438, pidfd, 3, 0)) if pidfd >= 0 else {"ok": False, "error": "no pidfd"}
        r["process_vm_readv 1"] = _try(lambda: sys_(310, 1, 0, 0, 0, 0, 0))
        r["bpf"] = _try(lambda: sys_(321, 0, 0, 0))
        r["perf_event_open"] = _try(lambda: sys_(298, 0, 0, -1, -1, 0))
        r["kexec_load"] = _try(lambda: sys_(246, 0, 0, 0, 0))
        r["environ"] = dict(os.environ)
        r["hostname"] = socket.gethostname()
        r["interfaces"] = sorted(n for _, n in socket.if_nameindex())
        return r
''').lstrip()

PYTHON_BROKEN = "import kindling_module_that_does_not_exist\n\ndef handler(event, context):\n    return 1\n"

# Node.js: index.handler (async), plus a promise-returning and a callback variant, and a thrower.
NODE_INDEX = textwrap.dedent('''
    const crypto = require("crypto");
    const MARKER = crypto.randomUUID();
    const TAG = "node-v1";
    let count = 0;

    function body(event, context, variant) {
      count += 1;
      if (event && event.say) console.log("handler says:", event.say);
      return {runtime: "node", tag: TAG, variant, marker: MARKER, count, event,
              memory: context.memoryLimitInMB, memory_env: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
              foo: process.env.FOO === undefined ? null : process.env.FOO,
              request_id: context.awsRequestId, function_name: context.functionName};
    }

    exports.handler = async (event, context) => {
      if (event && event.action === "throw") throw new TypeError("node boom " + (event.message || ""));
      return body(event, context, "async");
    };

    exports.promiseHandler = (event, context) =>
      new Promise((resolve) => setTimeout(() => resolve(body(event, context, "promise")), 10));

    exports.callbackHandler = (event, context, callback) => {
      if (event && event.action === "throw") return callback(new RangeError("callback boom"));
      setTimeout(() => callback(null, body(event, context, "callback")), 10);
    };
''').lstrip()

# provided.al2023: a bootstrap in C, compiled once per session. Event text picks the behaviour:
# "crash" -> exit(3); "fail" -> POST .../error; anything else -> echoed inside a JSON document.
C_BOOTSTRAP = textwrap.dedent(r'''
    #include <arpa/inet.h>
    #include <errno.h>
    #include <netinet/in.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include <strings.h>
    #include <sys/socket.h>
    #include <unistd.h>

    #ifndef TAG
    #define TAG "c-v1"
    #endif

    static char host[256];
    static int port;

    static void die(const char *what) { fprintf(stderr, "bootstrap: %s: %s\n", what, strerror(errno)); exit(2); }

    static int dial(void) {
      int s = socket(AF_INET, SOCK_STREAM, 0);
      if (s < 0) die("socket");
      struct sockaddr_in a;
      memset(&a, 0, sizeof a);
      a.sin_family = AF_INET;
      a.sin_port = htons((unsigned short)port);
      if (inet_pton(AF_INET, host, &a.sin_addr) != 1) die("inet_pton");
      if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
      return s;
    }

    static void send_all(int s, const char *p, size_t n) {
      while (n) {
        ssize_t w = write(s, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) die("write");
        p += w;
        n -= (size_t)w;
      }
    }

    /* One HTTP/1.1 exchange on a fresh connection. Returns the body (NUL-terminated, malloc'd). */
    static char *exchange(const char *method, const char *path, const char *extra, const char *body,
                          size_t blen, int *status, char *reqid, size_t reqid_cap) {
      int s = dial();
      char head[1024];
      int h = snprintf(head, sizeof head,
                       "%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                       method, path, host, port, blen, extra ? extra : "");
      send_all(s, head, (size_t)h);
      if (blen) send_all(s, body, blen);
      size_t cap = 1 << 16, len = 0, hlen = 0;
      char *buf = malloc(cap);
      for (;;) {
        if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
        ssize_t r = read(s, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("read headers");
        len += (size_t)r;
        buf[len] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end) { hlen = (size_t)(end - buf) + 4; break; }
      }
      *status = atoi(buf + 9);
      long clen = -1;
      buf[hlen - 2] = 0;
      for (char *line = strstr(buf, "\r\n") + 2; line && *line;) {
        char *eol = strstr(line, "\r\n");
        if (eol) *eol = 0;
        if (!strncasecmp(line, "content-length:", 15)) clen = atol(line + 15);
        if (reqid && !strncasecmp(line, "lambda-runtime-aws-request-id:", 30)) {
          const char *v = line + 30;
          while (*v == ' ') v++;
          snprintf(reqid, reqid_cap, "%s", v);
        }
        line = eol ? eol + 2 : NULL;
      }
      size_t have = len - hlen;
      size_t want = clen >= 0 ? (size_t)clen : 0;
      char *out = malloc(want + 1);
      memcpy(out, buf + hlen, have < want ? have : want);
      while (have < want) {
        ssize_t r = read(s, out + have, want - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("read body");
        have += (size_t)r;
      }
      out[want] = 0;
      free(buf);
      close(s);
      return out;
    }

    #ifdef KINDLING_PROBE
    /* Extra code compiled in (compile_bootstrap(extra_c=...)): answers events holding "probe". */
    char *kindling_probe(const char *event);
    int kindling_probe_main(int argc, char **argv);  /* non-zero argc handled: the process exits */
    #endif

    int main(int argc, char **argv) {
    #ifdef KINDLING_PROBE
      if (argc > 1) return kindling_probe_main(argc, argv);
    #else
      (void)argc; (void)argv;
    #endif
      const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
      if (!api) { fprintf(stderr, "no AWS_LAMBDA_RUNTIME_API\n"); return 1; }
      const char *colon = strrchr(api, ':');
      snprintf(host, sizeof host, "%.*s", (int)(colon - api), api);
      port = atoi(colon + 1);
      setvbuf(stdout, NULL, _IOLBF, 0);
      unsigned long count = 0;
      printf("bootstrap %s init\n", TAG);
      for (;;) {
        int st;
        char id[256] = {0};
        char *ev = exchange("GET", "/2018-06-01/runtime/invocation/next", NULL, NULL, 0, &st, id, sizeof id);
        if (st != 200) { fprintf(stderr, "next: HTTP %d\n", st); return 1; }
        count++;
        const char *say = strstr(ev, "\"say\"");
        if (say && (say = strchr(say + 5, '"'))) {
          const char *end = strchr(say + 1, '"');
          printf("handler says: %.*s\n", end ? (int)(end - say - 1) : 0, say + 1);
        }
        printf("bootstrap %s handling %s\n", TAG, id);
        char path[512];
    #ifdef KINDLING_PROBE
        if (strstr(ev, "\"probe\"")) {
          char *doc = kindling_probe(ev);
          snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/response", id);
          free(exchange("POST", path, "Content-Type: application/json\r\n", doc, strlen(doc), &st, NULL, 0));
          free(doc);
          free(ev);
          if (st != 202) { fprintf(stderr, "post: HTTP %d\n", st); return 1; }
          continue;
        }
    #endif
        if (strstr(ev, "\"crash\"")) { fflush(stdout); _exit(3); }
        if (strstr(ev, "\"fail\"")) {
          snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/error", id);
          const char *doc = "{\"errorMessage\":\"requested failure\",\"errorType\":\"ProvidedError\",\"stackTrace\":[]}";
          free(exchange("POST", path, "Lambda-Runtime-Function-Error-Type: ProvidedError\r\n", doc, strlen(doc), &st, NULL, 0));
        } else {
          const char *mem = getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
          const char *foo = getenv("FOO");
          size_t cap = strlen(ev) + 1024;
          char *doc = malloc(cap);
          int n = snprintf(doc, cap,
                           "{\"runtime\":\"provided\",\"tag\":\"%s\",\"marker\":\"%d\",\"count\":%lu,"
                           "\"memory_env\":\"%s\",\"foo\":%s%s%s,\"request_id\":\"%s\",\"event\":%s}",
                           TAG, (int)getpid(), count, mem ? mem : "", foo ? "\"" : "", foo ? foo : "null",
                           foo ? "\"" : "", id, ev);
          snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/response", id);
          free(exchange("POST", path, "Content-Type: application/json\r\n", doc, (size_t)n, &st, NULL, 0));
          free(doc);
        }
        if (st != 202) { fprintf(stderr, "post: HTTP %d\n", st); return 1; }
        free(ev);
      }
    }
''').lstrip()


def compile_bootstrap(out_dir, tag, extra_c=None):
    """The C bootstrap; extra_c (C source defining kindling_probe() and kindling_probe_main(), see
    C_BOOTSTRAP) is compiled in with -DKINDLING_PROBE and -pthread."""
    src = os.path.join(out_dir, "bootstrap-%s.c" % tag)
    with open(src, "w") as f:
        f.write(C_BOOTSTRAP)
    srcs, flags = [src], []
    if extra_c:
        extra = os.path.join(out_dir, "probe-%s.c" % tag)
        with open(extra, "w") as f:
            f.write(extra_c)
        srcs.append(extra)
        flags = ["-DKINDLING_PROBE", "-pthread"]
    out = os.path.join(out_dir, "bootstrap-" + tag)
    p = subprocess.run(["cc", "-O2", "-Wall", "-o", out] + srcs + ['-DTAG="%s"' % tag] + flags,
                       capture_output=True, timeout=120, text=True)
    if p.returncode != 0:
        raise AssertionError("compiling the bootstrap failed:\n" + p.stderr)
    with open(out, "rb") as f:
        return f.read()


def python_zip(tag="py-v1", extra=None):
    files = {"app.py": PYTHON_APP.replace('TAG = "py-v1"', 'TAG = "%s"' % tag),
             "broken.py": PYTHON_BROKEN}
    files.update(extra or {})
    return make_zip(files)


def node_zip(tag="node-v1"):
    return make_zip({"index.js": NODE_INDEX.replace('TAG = "node-v1"', 'TAG = "%s"' % tag)})


def unique_name(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def decode_log(b64):
    return base64.b64decode(b64).decode("utf-8", "replace") if b64 else ""


def create_fn(client, name, pkg=None, runtime=None, handler=None, zip_bytes=None, **kw):
    """CreateFunction with the e2e defaults (128 MB, 5 s); pkg is a conftest Package."""
    args = dict(FunctionName=name, Role=ROLE, Runtime=runtime or pkg.runtime,
                Handler=handler or pkg.handler,
                Code={"ZipFile": zip_bytes if zip_bytes is not None else pkg.v1},
                MemorySize=128, Timeout=5)
    args.update(kw)
    return client.create_function(**args)


def invoke(client, name, event, **kw):
    """Invoke with `event` as JSON; returns (response, decoded payload or raw bytes)."""
    payload = json.dumps(event).encode()
    resp = client.invoke(FunctionName=name, Payload=payload, **kw)
    data = resp["Payload"].read() if "Payload" in resp else b""
    try:
        body = json.loads(data) if data else None
    except ValueError:
        body = data
    return resp, body
