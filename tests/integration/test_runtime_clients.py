"""Integration tests for Kindling's language runtime clients (runtimes/python, runtimes/node).

Each test starts a fake Lambda Runtime API (the part of kindling-init the runtime talks to:
GET /next, POST /response, /error, /init/error, over HTTP/1.1 keep-alive) on a free 127.0.0.1 port,
runs a bootstrap as a subprocess with a handler written into a temporary task root, and checks what
the runtime sent. Run with: /usr/bin/python3 -m pytest tests/integration/test_runtime_clients.py
"""

import http.server
import json
import os
import queue
import shutil
import socket
import subprocess
import textwrap
import threading
import time
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY_BOOTSTRAP = os.path.join(REPO, "runtimes", "python", "bootstrap.py")
NODE_BOOTSTRAP = os.path.join(REPO, "runtimes", "node", "bootstrap.js")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
NODE = "/usr/bin/node" if os.path.exists("/usr/bin/node") else shutil.which("node")

WAIT = 15.0  # upper bound for any single wait in these tests (seconds)
PREFIX = "/2018-06-01/runtime"


# ------------------------------------------------------------------------------------------------
# Fake Runtime API


class Result:
    def __init__(self, kind, request_id, body, headers, stdout_snapshot):
        self.kind = kind  # "response" | "error" | "init_error"
        self.request_id = request_id
        self.raw = body
        self.headers = headers
        self.stdout_snapshot = stdout_snapshot

    @property
    def json(self):
        return json.loads(self.raw)

    def __repr__(self):
        return "Result(%s, %s, %r)" % (self.kind, self.request_id, self.raw[:300])


class FakeRuntimeAPI:
    """Implements the Runtime API as docs/LAMBDA-API.md describes, recording everything it receives."""

    def __init__(self):
        self.events = queue.Queue()
        self.lock = threading.Condition()
        self.results = {}  # request id -> Result
        self.init_errors = []
        self.pending = set()  # ids handed out by /next and not yet answered
        self.drop_generation = 0
        self.connections = 0
        self.next_calls = 0
        self.bad_calls = []
        self.stdout_source = None  # set by launch(): the runtime's stdout, snapshotted at each POST
        self.stopping = False
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with api.lock:
                    api.connections += 1

            def log_message(self, *args):
                pass

            def _reply(self, status, body=b"", headers=None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)
                self.wfile.flush()

            def do_GET(self):
                if self.path != PREFIX + "/invocation/next":
                    api.bad_calls.append(("GET", self.path))
                    return self._reply(404, b'{"errorType":"NotFound"}')
                with api.lock:
                    api.next_calls += 1
                    generation = api.drop_generation
                while True:
                    if api.stopping:
                        self.close_connection = True
                        return
                    with api.lock:
                        if api.drop_generation != generation:
                            # Drop the connection under the waiting runtime, without an answer.
                            self.close_connection = True
                            try:
                                self.connection.shutdown(socket.SHUT_RDWR)
                            except OSError:
                                pass
                            return
                    try:
                        ev = api.events.get(timeout=0.02)
                    except queue.Empty:
                        continue
                    break
                with api.lock:
                    api.pending.add(ev["id"])
                headers = {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": ev["id"],
                    "Lambda-Runtime-Deadline-Ms": str(ev["deadline_ms"]),
                    "Lambda-Runtime-Invoked-Function-Arn": ev["arn"],
                    "Lambda-Runtime-Trace-Id": ev["trace_id"],
                }
                headers.update(ev.get("extra_headers") or {})
                self._reply(200, ev["body"], headers)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path
                # Everything the runtime wrote to its stdout pipe before it posted this.
                snapshot = api.stdout_source.snapshot() if api.stdout_source else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                if path == PREFIX + "/init/error":
                    with api.lock:
                        api.init_errors.append(Result("init_error", None, body, headers, snapshot))
                        api.lock.notify_all()
                    return self._reply(202, b'{"status":"OK"}')
                parts = path[len(PREFIX):].split("/")
                # ['', 'invocation', id, 'response'|'error']
                if (not path.startswith(PREFIX + "/invocation/") or len(parts) != 4
                        or parts[3] not in ("response", "error")):
                    api.bad_calls.append(("POST", path))
                    return self._reply(404, b'{"errorType":"NotFound"}')
                rid, kind = parts[2], parts[3]
                with api.lock:
                    if rid not in api.pending:
                        api.bad_calls.append(("POST", path))
                        status = 400
                    else:
                        api.pending.discard(rid)
                        api.results[rid] = Result(kind, rid, body, headers, snapshot)
                        api.lock.notify_all()
                        status = 202
                if status != 202:
                    return self._reply(400, b'{"errorType":"InvalidRequestID"}')
                self._reply(202, b'{"status":"OK"}')

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server_class = Server
        self._handler_class = Handler
        self._start(0)
        self.port = self.server.server_address[1]
        self.address = "127.0.0.1:%d" % self.port

    def _start(self, port):
        self.server = self._server_class(("127.0.0.1", port), self._handler_class)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def restart(self, gap_seconds):
        """Takes the listener away for gap_seconds (connections refused), then serves again on the same port."""
        self.drop_connections()
        self.server.shutdown()
        self.server.server_close()
        time.sleep(gap_seconds)
        self._start(self.port)

    # -- test-side API ----------------------------------------------------------------------------
    def enqueue(self, event, deadline_in_ms=3000, request_id=None, extra_headers=None, raw=None):
        rid = request_id or str(uuid.uuid4())
        body = raw if raw is not None else json.dumps(event).encode()
        self.events.put({
            "id": rid,
            "body": body,
            "deadline_ms": int(time.time() * 1000) + deadline_in_ms,
            "arn": "arn:aws:lambda:us-east-1:123456789012:function:fn",
            "trace_id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "extra_headers": extra_headers,
        })
        return rid

    def wait_result(self, rid, timeout=WAIT, proc=None):
        deadline = time.monotonic() + timeout
        with self.lock:
            while rid not in self.results:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no result for %s within %.0fs (runtime exit code: %s)"
                                         % (rid, timeout, proc.poll() if proc else "?"))
                self.lock.wait(min(left, 0.1))
            return self.results[rid]

    def invoke(self, event, proc=None, **kw):
        return self.wait_result(self.enqueue(event, **kw), proc=proc)

    def wait_init_error(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not self.init_errors:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no init error within %.0fs" % timeout)
                self.lock.wait(min(left, 0.1))
            return self.init_errors[0]

    def wait_next_calls(self, n, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.next_calls >= n:
                    return
            time.sleep(0.005)
        raise AssertionError("runtime made %d /next calls, expected %d" % (self.next_calls, n))

    def drop_connections(self):
        with self.lock:
            self.drop_generation += 1

    def close(self):
        self.stopping = True
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    srv = FakeRuntimeAPI()
    yield srv
    srv.close()


class PipeCollector:
    """Reads a runtime's stdout/stderr pipe (as in a sandbox, where kindling-init holds the read end).

    snapshot() first drains whatever is in the pipe right now, so a snapshot taken when a POST arrives
    holds exactly what the runtime had written before sending it."""

    def __init__(self, fd):
        self.fd = fd
        os.set_blocking(fd, False)
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.eof = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _drain(self):
        with self.lock:
            while not self.eof:
                try:
                    data = os.read(self.fd, 65536)
                except BlockingIOError:
                    return
                except OSError:
                    self.eof = True
                    return
                if not data:
                    self.eof = True
                    return
                self.buf += data

    def _run(self):
        import select
        while not self.eof:
            try:
                select.select([self.fd], [], [], 0.05)
            except (OSError, ValueError):
                return
            self._drain()

    def snapshot(self):
        self._drain()
        with self.lock:
            return self.buf.decode("utf-8", "replace")

    def close(self):
        with self.lock:
            self.eof = True
        self.thread.join(timeout=2)
        try:
            os.close(self.fd)
        except OSError:
            pass


class Runtime:
    def __init__(self, proc, out, err, task_root):
        self.proc = proc
        self.out = out
        self.err = err
        self.task_root = task_root

    def stdout(self):
        return self.out.snapshot()

    def stderr(self):
        return self.err.snapshot()

    def wait_exit(self, timeout=WAIT):
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def launch(api, tmp_path):
    """launch(kind, handler, files) writes files into a task root and starts that runtime."""
    procs = []

    def _launch(kind, handler, files, env=None):
        task = tmp_path / "task"
        for name, text in files.items():
            p = task / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(textwrap.dedent(text))
        task.mkdir(exist_ok=True)
        e = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(task),
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "fn",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/01/[$LATEST]abcdef",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        e.update(env or {})
        cmd = [PYTHON, PY_BOOTSTRAP] if kind == "python" else [NODE, NODE_BOOTSTRAP]
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = subprocess.Popen(cmd, cwd=str(task), env=e, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w)
        finally:
            os.close(out_w)
            os.close(err_w)
        rt = Runtime(proc, PipeCollector(out_r), PipeCollector(err_r), str(task))
        api.stdout_source = rt.out
        runtimes.append(rt)
        return rt

    runtimes = []
    yield _launch
    for rt in runtimes:
        if rt.proc.poll() is None:
            rt.proc.kill()
        try:
            rt.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        rt.out.close()
        rt.err.close()


# ================================================================================================
# Python runtime

PY_ECHO = {"lambda_function.py": """
    import os
    count = 0
    def handler(event, context):
        global count
        count += 1
        return {"event": event, "count": count, "pid": os.getpid()}
"""}


def test_python_echo_round_trip(api, launch):
    rt = launch("python", "lambda_function.handler", PY_ECHO)
    r = api.invoke({"hello": "world", "n": [1, 2.5, None, True], "u": "h\u00e9llo \u2603"}, proc=rt.proc)
    assert r.kind == "response", r
    assert r.json["event"] == {"hello": "world", "n": [1, 2.5, None, True], "u": "h\u00e9llo \u2603"}
    assert r.headers.get("content-type", "").startswith("application/json")
    assert not api.bad_calls


def test_python_warm_reuse_one_connection(api, launch):
    rt = launch("python", "lambda_function.handler", PY_ECHO)
    results = [api.invoke({"i": i}, proc=rt.proc) for i in range(20)]
    assert [r.json["count"] for r in results] == list(range(1, 21))
    assert len({r.json["pid"] for r in results}) == 1
    assert api.connections == 1  # keep-alive: one connection for everything
    assert rt.proc.poll() is None


def test_python_scalar_events_and_none_result(api, launch):
    rt = launch("python", "m.h", {"m.py": """
        def h(event, context):
            if event == "none":
                return None
            return [event, type(event).__name__]
    """})
    assert api.invoke("none", proc=rt.proc).raw == b"null"
    assert api.invoke(42, proc=rt.proc).json == [42, "int"]
    assert api.invoke("s", proc=rt.proc).json == ["s", "str"]
    assert api.invoke(None, proc=rt.proc).json == [None, "NoneType"]


def test_python_context_fields(api, launch):
    rt = launch("python", "ctx.handler", {"ctx.py": """
        import os
        def handler(event, context):
            return {
                "function_name": context.function_name,
                "function_version": context.function_version,
                "invoked_function_arn": context.invoked_function_arn,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "aws_request_id": context.aws_request_id,
                "log_group_name": context.log_group_name,
                "log_stream_name": context.log_stream_name,
                "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
                "client_context": None if context.client_context is None else {
                    "installation_id": context.client_context.client.installation_id,
                    "app_title": context.client_context.client.app_title,
                    "custom": context.client_context.custom,
                    "env": context.client_context.env,
                },
                "remaining": context.get_remaining_time_in_millis(),
                "trace": os.environ.get("_X_AMZN_TRACE_ID"),
                "sys_path": __import__("sys").path[:2],
                "cwd": os.getcwd(),
            }
    """})
    cc = {"client": {"installation_id": "inst-1", "app_title": "App"}, "custom": {"k": "v"},
          "env": {"platform": "linux"}}
    ident = {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
    rid = api.enqueue({}, deadline_in_ms=5000, extra_headers={
        "Lambda-Runtime-Client-Context": json.dumps(cc),
        "Lambda-Runtime-Cognito-Identity": json.dumps(ident),
    })
    r = api.wait_result(rid, proc=rt.proc)
    assert r.kind == "response", r
    d = r.json
    assert d["function_name"] == "fn"
    assert d["function_version"] == "$LATEST"
    assert d["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:fn"
    assert d["memory_limit_in_mb"] == 256
    assert d["aws_request_id"] == rid
    assert d["log_group_name"] == "/aws/lambda/fn"
    assert d["log_stream_name"] == "2026/11/01/[$LATEST]abcdef"
    assert d["identity"] == ["id-1", "pool-1"]
    assert d["client_context"] == {"installation_id": "inst-1", "app_title": "App", "custom": {"k": "v"},
                                   "env": {"platform": "linux"}}
    assert 3000 < d["remaining"] <= 5000
    assert d["trace"].startswith("Root=1-5759e988")
    task_root = rt.task_root
    assert d["sys_path"] == [task_root, os.path.dirname(PY_BOOTSTRAP)]
    assert d["cwd"] == task_root

    # Without the optional headers: identity present but empty, no client context.
    r2 = api.invoke({}, proc=rt.proc)
    assert r2.json["identity"] == [None, None]
    assert r2.json["client_context"] is None


def test_python_remaining_time_counts_down(api, launch):
    rt = launch("python", "t.handler", {"t.py": """
        import time
        def handler(event, context):
            a = context.get_remaining_time_in_millis()
            time.sleep(0.2)
            return [a, context.get_remaining_time_in_millis()]
    """})
    a, b = api.invoke({}, deadline_in_ms=2000, proc=rt.proc).json
    assert 1500 < a <= 2000
    assert 150 <= a - b < 600
    # A deadline in the past reads as 0, never negative.
    a, b = api.invoke({}, deadline_in_ms=-1000, proc=rt.proc).json
    assert a == 0 and b == 0


def test_python_error_shape_and_stack_trace(api, launch):
    rt = launch("python", "bad.handler", {"bad.py": """
        def helper(x):
            raise ValueError("bad value: %s" % x)

        def handler(event, context):
            print("before the error")
            return helper(event["x"])
    """})
    r = api.invoke({"x": 7}, proc=rt.proc)
    assert r.kind == "error", r
    doc = r.json
    assert doc["errorType"] == "ValueError"
    assert doc["errorMessage"] == "bad value: 7"
    assert doc["requestId"] == r.request_id
    assert isinstance(doc["stackTrace"], list) and len(doc["stackTrace"]) == 2
    assert 'bad.py", line 7, in handler\n    return helper(event["x"])\n' in doc["stackTrace"][0]
    assert 'bad.py", line 3, in helper\n    raise ValueError("bad value: %s" % x)\n' in doc["stackTrace"][1]
    assert not any("bootstrap.py" in line for line in doc["stackTrace"])
    assert r.headers.get("lambda-runtime-function-error-type") == "Unhandled"
    assert "before the error" in r.stdout_snapshot
    # Logged like AWS: "[ERROR] Type: message" then the traceback.
    err = rt.stderr()
    assert "[ERROR] ValueError: bad value: 7\nTraceback (most recent call last):\n" in err
    # The runtime survives a handler error.
    assert api.invoke({"x": 1}, proc=rt.proc).kind == "error"
    assert rt.proc.poll() is None


def test_python_import_error(api, launch):
    rt = launch("python", "nosuchmodule.handler", {"other.py": "x = 1\n"})
    r = api.wait_init_error()
    doc = r.json
    assert doc["errorType"] == "Runtime.ImportModuleError"
    assert doc["errorMessage"] == "Unable to import module 'nosuchmodule': No module named 'nosuchmodule'"
    assert doc["stackTrace"] == []
    assert r.headers.get("lambda-runtime-function-error-type") == "Runtime.ImportModuleError"
    assert rt.wait_exit() != 0
    assert api.next_calls == 0


def test_python_import_error_from_user_dependency(api, launch):
    launch("python", "app.handler", {"app.py": "import notinstalled_pkg\ndef handler(e, c): pass\n"})
    doc = api.wait_init_error().json
    assert doc["errorType"] == "Runtime.ImportModuleError"
    assert doc["errorMessage"] == "Unable to import module 'app': No module named 'notinstalled_pkg'"


def test_python_module_raises_during_init(api, launch):
    rt = launch("python", "boom.handler", {"boom.py": """
        def fail():
            raise RuntimeError("config missing")
        fail()
        def handler(e, c):
            return 1
    """})
    doc = api.wait_init_error().json
    assert doc["errorType"] == "RuntimeError"
    assert doc["errorMessage"] == "config missing"
    assert any("boom.py" in line and "in fail" in line for line in doc["stackTrace"])
    assert rt.wait_exit() != 0


def test_python_syntax_error(api, launch):
    launch("python", "syn.handler", {"syn.py": "def handler(e, c)\n    return 1\n"})
    doc = api.wait_init_error().json
    assert doc["errorType"] == "Runtime.UserCodeSyntaxError"
    assert doc["errorMessage"].startswith("Syntax error in module 'syn': ")


def test_python_handler_not_found(api, launch):
    # As on AWS, a missing handler function is reported on each invoke, not at init.
    rt = launch("python", "mod.nothere", {"mod.py": "def handler(e, c):\n    return 1\n"})
    r = api.invoke({}, proc=rt.proc)
    assert r.kind == "error"
    assert r.json["errorType"] == "Runtime.HandlerNotFound"
    assert r.json["errorMessage"] == "Handler 'nothere' missing on module 'mod'"
    assert r.json["stackTrace"] == []
    assert rt.proc.poll() is None


def test_python_malformed_handler(api, launch):
    rt = launch("python", "nodot", {"nodot.py": "x = 1\n"})
    doc = api.wait_init_error().json
    assert doc["errorType"] == "Runtime.MalformedHandlerName"
    assert doc["errorMessage"].startswith("Bad handler 'nodot': ")
    assert rt.wait_exit() != 0


def test_python_marshal_error(api, launch):
    rt = launch("python", "m.handler", {"m.py": """
        import decimal
        def handler(event, context):
            if event == "set":
                return {1, 2}
            return {"d": decimal.Decimal("1.5"), "i": decimal.Decimal("3")}
    """})
    r = api.invoke("set", proc=rt.proc)
    assert r.kind == "error"
    assert r.json["errorType"] == "Runtime.MarshalError"
    assert r.json["errorMessage"] == "Unable to marshal response: Object of type set is not JSON serializable"
    r = api.invoke("dec", proc=rt.proc)
    assert r.json == {"d": 1.5, "i": 3}


def test_python_nested_module_paths(api, launch):
    files = {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "def fn(e, c):\n    return 'nested:' + __name__\n",
    }
    rt = launch("python", "pkg/sub.mod.fn", files)
    assert api.invoke({}, proc=rt.proc).json == "nested:pkg.sub.mod"


def test_python_dotted_module_path(api, launch):
    files = {"a/__init__.py": "", "a/b.py": "def fn(e, c):\n    return __name__\n"}
    rt = launch("python", "a.b.fn", files)
    assert api.invoke({}, proc=rt.proc).json == "a.b"


def test_python_print_flushed_before_response(api, launch):
    rt = launch("python", "p.handler", {"p.py": """
        import sys
        print("loaded at init")
        def handler(event, context):
            print("hello from handler", event["i"])
            sys.stdout.write("no newline here")
            print("to stderr", file=sys.stderr)
            return "ok"
    """})
    for i in range(3):
        r = api.invoke({"i": i}, proc=rt.proc)
        assert r.kind == "response"
        assert "hello from handler %d" % i in r.stdout_snapshot
        assert r.stdout_snapshot.endswith("no newline here")
    assert rt.stdout().startswith("loaded at init\n")
    assert "to stderr" in rt.stderr()


def test_python_logging_module_like_aws(api, launch):
    rt = launch("python", "lg.handler", {"lg.py": """
        import logging
        logging.basicConfig(level=logging.DEBUG)  # a no-op on AWS: the root logger already has a handler
        logger = logging.getLogger()
        def handler(event, context):
            logger.info("info hidden at the default WARNING level")
            logger.warning("warned %s", event["n"])
            logger.setLevel(logging.INFO)
            logging.getLogger("child").info("child info")
            logger.setLevel(logging.WARNING)
            return "ok"
    """})
    r = api.invoke({"n": 5}, proc=rt.proc)
    assert r.kind == "response"
    out = r.stdout_snapshot
    assert "info hidden" not in out
    lines = [l for l in out.splitlines() if l]
    assert len(lines) == 2, out
    level, stamp, rid, msg = lines[0].split("\t")
    assert (level, rid, msg) == ("[WARNING]", r.request_id, "warned 5")
    assert len(stamp) == len("2026-11-01T12:00:00.123Z") and stamp.endswith("Z") and "T" in stamp
    assert lines[1].startswith("[INFO]\t") and lines[1].endswith("\t%s\tchild info" % r.request_id)
    assert "warned" not in rt.stderr()  # no second handler from basicConfig


def test_python_logging_imported_inside_handler(api, launch):
    rt = launch("python", "lg.handler", {"lg.py": """
        def handler(event, context):
            import logging
            logging.getLogger("x").error("late import works")
            return "ok"
    """})
    r = api.invoke({}, proc=rt.proc)
    assert "[ERROR]\t" in r.stdout_snapshot and "\t%s\tlate import works" % r.request_id in r.stdout_snapshot


def test_python_reconnects_when_connection_drops(api, launch):
    rt = launch("python", "lambda_function.handler", PY_ECHO)
    assert api.invoke({"i": 1}, proc=rt.proc).json["count"] == 1
    api.wait_next_calls(2)  # the runtime is waiting for the next event
    api.drop_connections()
    api.wait_next_calls(3)  # it reconnected and asked again
    r = api.invoke({"i": 2}, proc=rt.proc)
    assert r.json["count"] == 2  # same process, state kept
    assert api.connections == 2
    assert rt.proc.poll() is None


def test_python_reconnects_when_server_restarts(api, launch):
    """The listener goes away entirely for a while (e.g. restore); the runtime keeps retrying."""
    rt = launch("python", "lambda_function.handler", PY_ECHO)
    assert api.invoke({}, proc=rt.proc).json["count"] == 1
    api.wait_next_calls(2)
    api.restart(0.3)
    api.wait_next_calls(3)
    assert api.invoke({}, proc=rt.proc).json["count"] == 2
    assert rt.proc.poll() is None


def test_node_reconnects_when_server_restarts(api, launch):
    rt = launch("node", "index.handler", NODE_ECHO)
    assert api.invoke({}, proc=rt.proc).json["count"] == 1
    api.wait_next_calls(2)
    api.restart(0.3)
    api.wait_next_calls(3)
    assert api.invoke({}, proc=rt.proc).json["count"] == 2
    assert rt.proc.poll() is None


def test_python_large_event_and_response(api, launch):
    rt = launch("python", "lambda_function.handler", PY_ECHO)
    big = "x" * (5 * 1024 * 1024)
    r = api.invoke({"big": big}, proc=rt.proc)
    assert r.json["event"]["big"] == big


def test_python_non_json_content_type_passes_bytes(api, launch):
    rt = launch("python", "b.handler", {"b.py": "def handler(e, c):\n    return [type(e).__name__, len(e)]\n"})
    rid = api.enqueue(None, raw=b"\x00\x01raw", extra_headers={"Content-Type": "application/octet-stream"})
    assert api.wait_result(rid, proc=rt.proc).json == ["bytes", 5]


def test_python_trace_id_is_per_invoke(api, launch):
    rt = launch("python", "t.handler", {"t.py": "import os\ndef handler(e, c):\n    return os.environ.get('_X_AMZN_TRACE_ID')\n"})
    r = api.invoke({}, proc=rt.proc, extra_headers={"Lambda-Runtime-Trace-Id": "Root=1-aaa"})
    assert r.json == "Root=1-aaa"
    r = api.invoke({}, proc=rt.proc, extra_headers={"Lambda-Runtime-Trace-Id": "Root=1-bbb"})
    assert r.json == "Root=1-bbb"


# ================================================================================================
# Node.js runtime

NODE_ECHO = {"index.js": """
    let count = 0;
    exports.handler = async (event, context) => {
      count += 1;
      return { event, count, pid: process.pid };
    };
"""}


def test_node_echo_round_trip_async(api, launch):
    rt = launch("node", "index.handler", NODE_ECHO)
    ev = {"hello": "world", "n": [1, 2.5, None, True], "u": "h\u00e9llo \u2603"}
    r = api.invoke(ev, proc=rt.proc)
    assert r.kind == "response", (r, rt.stderr())
    assert r.json["event"] == ev
    assert not api.bad_calls


def test_node_warm_reuse_one_connection(api, launch):
    rt = launch("node", "index.handler", NODE_ECHO)
    results = [api.invoke({"i": i}, proc=rt.proc) for i in range(20)]
    assert [r.json["count"] for r in results] == list(range(1, 21))
    assert len({r.json["pid"] for r in results}) == 1
    assert api.connections == 1
    assert rt.proc.poll() is None


def test_node_undefined_result_is_null(api, launch):
    rt = launch("node", "index.handler", {"index.js": "exports.handler = async () => {};\n"})
    assert api.invoke({}, proc=rt.proc).raw == b"null"


def test_node_context_fields(api, launch):
    rt = launch("node", "ctx.handler", {"ctx.js": """
        exports.handler = async (event, context) => ({
          functionName: context.functionName,
          functionVersion: context.functionVersion,
          invokedFunctionArn: context.invokedFunctionArn,
          memoryLimitInMB: context.memoryLimitInMB,
          awsRequestId: context.awsRequestId,
          logGroupName: context.logGroupName,
          logStreamName: context.logStreamName,
          identity: context.identity,
          clientContext: context.clientContext,
          remaining: context.getRemainingTimeInMillis(),
          waits: context.callbackWaitsForEmptyEventLoop,
          legacy: [typeof context.done, typeof context.succeed, typeof context.fail],
          trace: process.env._X_AMZN_TRACE_ID,
          taskRoot: process.env.LAMBDA_TASK_ROOT,
          cwd: process.cwd(),
        });
    """})
    cc = {"client": {"installation_id": "inst-1"}, "custom": {"k": "v"}, "env": {"platform": "linux"}}
    ident = {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
    rid = api.enqueue({}, deadline_in_ms=5000, extra_headers={
        "Lambda-Runtime-Client-Context": json.dumps(cc),
        "Lambda-Runtime-Cognito-Identity": json.dumps(ident),
    })
    r = api.wait_result(rid, proc=rt.proc)
    assert r.kind == "response", (r, rt.stderr())
    d = r.json
    assert d["functionName"] == "fn"
    assert d["functionVersion"] == "$LATEST"
    assert d["invokedFunctionArn"] == "arn:aws:lambda:us-east-1:123456789012:function:fn"
    assert d["memoryLimitInMB"] == "256"  # a string, as on AWS
    assert d["awsRequestId"] == rid
    assert d["logGroupName"] == "/aws/lambda/fn"
    assert d["logStreamName"] == "2026/11/01/[$LATEST]abcdef"
    assert d["identity"] == {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
    assert d["clientContext"] == cc
    assert 3000 < d["remaining"] <= 5000
    assert d["waits"] is True
    assert d["legacy"] == ["function", "function", "function"]
    assert d["trace"].startswith("Root=1-5759e988")
    assert d["cwd"] == d["taskRoot"]


def test_node_remaining_time_counts_down(api, launch):
    rt = launch("node", "t.handler", {"t.js": """
        exports.handler = async (e, context) => {
          const a = context.getRemainingTimeInMillis();
          await new Promise((r) => setTimeout(r, 200));
          return [a, context.getRemainingTimeInMillis()];
        };
    """})
    a, b = api.invoke({}, deadline_in_ms=2000, proc=rt.proc).json
    assert 1500 < a <= 2000
    assert 150 <= a - b < 600


def test_node_callback_handler(api, launch):
    rt = launch("node", "cb.handler", {"cb.js": """
        exports.handler = (event, context, callback) => {
          setTimeout(() => {
            if (event.fail) callback(new Error("callback failure"));
            else callback(null, { via: "callback", got: event.v });
          }, 10);
        };
    """})
    r = api.invoke({"v": 3}, proc=rt.proc)
    assert r.json == {"via": "callback", "got": 3}
    r = api.invoke({"fail": True}, proc=rt.proc)
    assert r.kind == "error"
    assert r.json["errorType"] == "Error"
    assert r.json["errorMessage"] == "callback failure"
    assert api.invoke({"v": 4}, proc=rt.proc).json["got"] == 4


def test_node_callback_waits_for_empty_event_loop(api, launch):
    rt = launch("node", "w.handler", {"w.js": """
        exports.handler = (event, context, callback) => {
          context.callbackWaitsForEmptyEventLoop = event.wait;
          setTimeout(() => console.log("timer fired " + event.n), 300);
          callback(null, "done " + event.n);
        };
    """})
    r = api.invoke({"wait": True, "n": 1}, proc=rt.proc)
    assert r.json == "done 1"
    assert "timer fired 1" in r.stdout_snapshot  # the response waited for the timer
    r = api.invoke({"wait": False, "n": 2}, proc=rt.proc)
    assert r.json == "done 2"
    assert "timer fired 2" not in r.stdout_snapshot  # answered at once; the timer runs later
    time.sleep(0.5)
    assert "timer fired 2" in rt.stdout()


def test_node_legacy_context_succeed_and_fail(api, launch):
    rt = launch("node", "l.handler", {"l.js": """
        exports.handler = function (event, context) {
          if (event.ok) context.succeed({ legacy: true });
          else context.fail(new Error("legacy failure"));
        };
    """})
    assert api.invoke({"ok": True}, proc=rt.proc).json == {"legacy": True}
    r = api.invoke({"ok": False}, proc=rt.proc)
    assert r.kind == "error" and r.json["errorMessage"] == "legacy failure"


def test_node_sync_throw_error_shape(api, launch):
    rt = launch("node", "bad.handler", {"bad.js": """
        function helper(x) {
          return x.missing.property;
        }
        exports.handler = (event, context, callback) => {
          console.log("before the error");
          helper(event);
        };
    """})
    r = api.invoke({}, proc=rt.proc)
    assert r.kind == "error", r
    doc = r.json
    assert doc["errorType"] == "TypeError"
    assert doc["errorMessage"] == "Cannot read properties of undefined (reading 'property')"
    assert doc["trace"][0] == "TypeError: Cannot read properties of undefined (reading 'property')"
    assert any("bad.js:3" in line and "helper" in line for line in doc["trace"])
    assert r.headers.get("lambda-runtime-function-error-type") == "TypeError"
    assert "before the error" in r.stdout_snapshot
    assert "\tERROR\tInvoke Error \t{" in r.stdout_snapshot
    assert rt.proc.poll() is None


def test_node_async_rejection_and_non_error_throw(api, launch):
    rt = launch("node", "rej.handler", {"rej.js": """
        class CustomError extends Error {
          constructor(m) { super(m); this.name = "CustomError"; }
        }
        exports.handler = async (event) => {
          if (event.kind === "custom") throw new CustomError("custom thing");
          if (event.kind === "string") throw "just a string";
          return "fine";
        };
    """})
    r = api.invoke({"kind": "custom"}, proc=rt.proc)
    assert r.json["errorType"] == "CustomError"
    assert r.json["errorMessage"] == "custom thing"
    assert r.json["trace"][0] == "CustomError: custom thing"
    r = api.invoke({"kind": "string"}, proc=rt.proc)
    assert r.json == {"errorType": "string", "errorMessage": "just a string", "trace": []}
    assert api.invoke({}, proc=rt.proc).json == "fine"


def test_node_esm_mjs_handler(api, launch):
    rt = launch("node", "app.handler", {"app.mjs": """
        import { readFileSync } from "node:fs";
        const config = await Promise.resolve({ loaded: "top-level await" });
        export const handler = async (event, context) => ({ ...config, esm: typeof require, got: event });
    """})
    r = api.invoke({"a": 1}, proc=rt.proc)
    assert r.kind == "response", (r, rt.stderr())
    assert r.json == {"loaded": "top-level await", "esm": "undefined", "got": {"a": 1}}


def test_node_esm_js_in_module_package(api, launch):
    rt = launch("node", "index.handler", {
        "package.json": '{"type": "module"}',
        "index.js": "export async function handler(e) { return 'esm-js ' + e; }\n",
    })
    assert api.invoke("x", proc=rt.proc).json == "esm-js x"


def test_node_cjs_in_subdirectory_and_nested_export(api, launch):
    rt = launch("node", "src/handlers/app.handlers.main", {
        "src/handlers/app.cjs": "exports.handlers = { main: async () => 'nested ' + __filename.split('/').slice(-3).join('/') };\n",
    })
    assert api.invoke({}, proc=rt.proc).json == "nested src/handlers/app.cjs"


def test_node_import_error(api, launch):
    rt = launch("node", "missing.handler", {"other.js": "\n"})
    r = api.wait_init_error()
    doc = r.json
    assert doc["errorType"] == "Runtime.ImportModuleError"
    assert doc["errorMessage"].startswith("Error: Cannot find module 'missing'")
    assert isinstance(doc["trace"], list) and doc["trace"][0].startswith("Runtime.ImportModuleError: Error: Cannot find module")
    assert r.headers.get("lambda-runtime-function-error-type") == "Runtime.ImportModuleError"
    assert rt.wait_exit() != 0
    assert api.next_calls == 0


def test_node_import_error_from_user_dependency(api, launch):
    launch("node", "index.handler", {"index.js": "require('not-installed-pkg');\nexports.handler = async () => 1;\n"})
    doc = api.wait_init_error().json
    assert doc["errorType"] == "Runtime.ImportModuleError"
    assert "Cannot find module 'not-installed-pkg'" in doc["errorMessage"]


def test_node_syntax_error(api, launch):
    launch("node", "index.handler", {"index.js": "exports.handler = async () => {\n"})
    doc = api.wait_init_error().json
    assert doc["errorType"] == "Runtime.UserCodeSyntaxError"
    assert doc["errorMessage"].startswith("SyntaxError: ")


def test_node_module_throws_during_init(api, launch):
    rt = launch("node", "index.handler", {"index.js": "throw new RangeError('bad config');\n"})
    doc = api.wait_init_error().json
    assert doc["errorType"] == "RangeError"
    assert doc["errorMessage"] == "bad config"
    assert rt.wait_exit() != 0


def test_node_handler_not_found(api, launch):
    rt = launch("node", "index.nothere", {"index.js": "exports.handler = async () => 1;\nexports.notfn = 5;\n"})
    doc = api.wait_init_error().json
    assert doc["errorType"] == "Runtime.HandlerNotFound"
    assert doc["errorMessage"] == "index.nothere is undefined or not exported"
    assert rt.wait_exit() != 0


def test_node_handler_not_a_function(api, launch):
    launch("node", "index.notfn", {"index.js": "exports.notfn = 5;\n"})
    doc = api.wait_init_error().json
    assert doc["errorType"] == "Runtime.HandlerNotFound"
    assert doc["errorMessage"] == "index.notfn is not a function"


def test_node_malformed_handler(api, launch):
    rt = launch("node", "nodot", {"nodot.js": "\n"})
    doc = api.wait_init_error().json
    assert doc["errorType"] == "Runtime.MalformedHandlerName"
    assert doc["errorMessage"] == "Bad handler"
    assert rt.wait_exit() != 0


def test_node_console_flushed_before_response(api, launch):
    rt = launch("node", "p.handler", {"p.js": """
        console.log("loaded at init");
        exports.handler = async (event) => {
          console.log("hello from handler", event.i, { nested: true });
          console.error("an error line");
          process.stdout.write("raw write\\n");
          return "ok";
        };
    """})
    for i in range(3):
        r = api.invoke({"i": i}, proc=rt.proc)
        assert r.kind == "response"
        assert "\t%s\tINFO\thello from handler %d { nested: true }\n" % (r.request_id, i) in r.stdout_snapshot
        assert "\t%s\tERROR\tan error line\n" % r.request_id in r.stdout_snapshot
        assert r.stdout_snapshot.endswith("raw write\n")
    assert "\tundefined\tINFO\tloaded at init\n" in rt.stdout()


def test_node_uncaught_exception_fails_invoke_and_exits(api, launch):
    rt = launch("node", "u.handler", {"u.js": """
        exports.handler = (event, context, callback) => {
          setTimeout(() => { throw new Error("thrown from a timer"); }, 5);
        };
    """})
    r = api.invoke({}, proc=rt.proc)
    assert r.kind == "error"
    assert r.json["errorType"] == "Error"
    assert r.json["errorMessage"] == "thrown from a timer"
    assert rt.wait_exit() == 129


def test_node_unhandled_rejection_fails_invoke_and_exits(api, launch):
    rt = launch("node", "u.handler", {"u.js": """
        exports.handler = async () => {
          Promise.reject(new Error("nobody catches me"));
          await new Promise((r) => setTimeout(r, 100));
          return "too late";
        };
    """})
    r = api.invoke({}, proc=rt.proc)
    assert r.kind == "error"
    assert r.json["errorType"] == "Runtime.UnhandledPromiseRejection"
    assert r.json["errorMessage"] == "Error: nobody catches me"
    assert rt.wait_exit() == 128


def test_node_unstringifiable_result(api, launch):
    rt = launch("node", "c.handler", {"c.js": "exports.handler = async () => { const o = {}; o.o = o; return o; };\n"})
    r = api.invoke({}, proc=rt.proc)
    assert r.kind == "error"
    assert r.json["errorMessage"] == "Unable to stringify response body"


def test_node_reconnects_when_connection_drops(api, launch):
    rt = launch("node", "index.handler", NODE_ECHO)
    assert api.invoke({"i": 1}, proc=rt.proc).json["count"] == 1
    api.wait_next_calls(2)
    api.drop_connections()
    api.wait_next_calls(3)
    r = api.invoke({"i": 2}, proc=rt.proc)
    assert r.json["count"] == 2
    assert api.connections == 2
    assert rt.proc.poll() is None


def test_node_large_event_and_response(api, launch):
    rt = launch("node", "index.handler", NODE_ECHO)
    big = "y" * (5 * 1024 * 1024)
    assert api.invoke({"big": big}, proc=rt.proc).json["event"]["big"] == big


@pytest.mark.parametrize("kind,handler,files", [
    ("python", "lambda_function.handler", PY_ECHO),
    ("node", "index.handler", NODE_ECHO),
])
def test_invalid_json_event_is_an_unmarshal_error(api, launch, kind, handler, files):
    rt = launch(kind, handler, files)
    rid = api.enqueue(None, raw=b"{not json")
    r = api.wait_result(rid, proc=rt.proc)
    assert r.kind == "error"
    assert r.json["errorType"] == "Runtime.UnmarshalError"
    assert r.json["errorMessage"].startswith("Unable to unmarshal input: ")
    assert api.invoke({"ok": 1}, proc=rt.proc).json["event"] == {"ok": 1}


def test_node_sync_return_value_is_ignored_like_aws(api, launch):
    # A non-async handler must use the callback; its return value is ignored and, once the event loop
    # is empty, the invocation ends with null.
    rt = launch("node", "s.handler", {"s.js": "exports.handler = (event, context) => 'ignored';\n"})
    assert api.invoke({}, proc=rt.proc).raw == b"null"
    assert rt.proc.poll() is None


# ================================================================================================
# Against the real kindling-init (skipped when it has not been built): the worker side of the control
# protocol (src/init/protocol.h) is spoken over a socketpair passed as fd 3.

def _find_kindling_init():
    candidates = [os.environ.get("KINDLING_INIT", "")]
    if os.environ.get("KINDLING_BUILD_DIR"):
        candidates.append(os.path.join(os.environ["KINDLING_BUILD_DIR"], "src", "bin", "kindling-init"))
    for build in ("build", "build-init", "build-release", "build-debug"):
        candidates.append(os.path.join(REPO, build, "src", "bin", "kindling-init"))
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return None


KINDLING_INIT = _find_kindling_init()
F_INVOKE, F_READY, F_RESPONSE, F_ERROR, F_INIT_ERROR, F_LOG, F_EXITED = 1, 10, 11, 12, 13, 14, 15


class InitControl:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.logs = []

    def send(self, ftype, fields):
        import struct
        body = bytes([ftype]) + b"".join(struct.pack("<I", len(f)) + f for f in fields)
        self.sock.sendall(struct.pack("<I", len(body)) + body)

    def frame(self):
        import struct
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack("<I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    fields, i = [], 1
                    while i < len(body):
                        m = struct.unpack("<I", body[i:i + 4])[0]
                        fields.append(body[i + 4:i + 4 + m])
                        i += 4 + m
                    return body[0], fields
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("kindling-init closed the control socket")
            self.buf += data

    def until(self, types):
        """Next frame of one of `types`; log frames on the way are collected in self.logs."""
        while True:
            t, f = self.frame()
            if t == F_LOG:
                self.logs.append(f[0].decode("utf-8", "replace"))
            if t in types:
                return t, f

    def invoke(self, rid, payload):
        deadline = str(int(time.time() * 1000) + 3000).encode()
        self.send(F_INVOKE, [rid.encode(), deadline, b"arn:aws:lambda:us-east-1:123456789012:function:fn",
                             b"Root=1-init", b"", b"", payload])
        return self.until((F_RESPONSE, F_ERROR, F_INIT_ERROR, F_EXITED))


@pytest.fixture
def with_init(tmp_path):
    if KINDLING_INIT is None:
        pytest.skip("kindling-init is not built")
    started = []

    def _start(kind, handler, files):
        task = tmp_path / "task"
        for name, text in files.items():
            p = task / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(textwrap.dedent(text))
        ours, theirs = socket.socketpair()
        ours.settimeout(WAIT)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "_HANDLER": handler,
               "LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_FUNCTION_NAME": "fn",
               "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}
        rt = [PYTHON, PY_BOOTSTRAP] if kind == "python" else [NODE, NODE_BOOTSTRAP]
        fd = theirs.fileno()
        proc = subprocess.Popen([KINDLING_INIT, "--listen", "127.0.0.1:0", "--"] + rt, env=env, cwd=str(task),
                                stdin=subprocess.DEVNULL, pass_fds=(fd, 3), preexec_fn=lambda: os.dup2(fd, 3))
        theirs.close()
        started.append((proc, ours))
        return InitControl(ours)

    yield _start
    for proc, sock in started:
        sock.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.parametrize("kind", ["python", "node"])
def test_with_kindling_init_round_trips_logs_and_errors(with_init, kind):
    if kind == "python":
        files = {"h.py": """
            def handler(event, context):
                print("log line", event.get("i"))
                if event.get("fail"):
                    raise KeyError("missing")
                return {"echo": event, "rid": context.aws_request_id}
        """}
        handler = "h.handler"
    else:
        files = {"h.js": """
            exports.handler = async (event, context) => {
              console.log("log line", event.i);
              if (event.fail) throw new TypeError("missing");
              return { echo: event, rid: context.awsRequestId };
            };
        """}
        handler = "h.handler"
    ctl = with_init(kind, handler, files)
    t, _ = ctl.until((F_READY, F_INIT_ERROR, F_EXITED))
    assert t == F_READY, ctl.logs
    for i in range(5):
        ctl.logs.clear()
        t, f = ctl.invoke("req-%d" % i, json.dumps({"i": i}).encode())
        assert t == F_RESPONSE, (t, f, ctl.logs)
        assert f[0] == b"req-%d" % i
        assert json.loads(f[1]) == {"echo": {"i": i}, "rid": "req-%d" % i}
        assert "log line %d" % i in "".join(ctl.logs)
    t, f = ctl.invoke("req-err", b'{"fail": true}')
    assert t == F_ERROR, (t, f, ctl.logs)
    doc = json.loads(f[2])
    assert doc["errorType"] == ("KeyError" if kind == "python" else "TypeError")
    assert "stackTrace" in doc if kind == "python" else "trace" in doc
    t, f = ctl.invoke("req-after", b'{"i": 9}')
    assert t == F_RESPONSE and json.loads(f[1])["echo"] == {"i": 9}


@pytest.mark.parametrize("kind,handler", [("python", "nosuch.handler"), ("node", "nosuch.handler")])
def test_with_kindling_init_import_error(with_init, kind, handler):
    ctl = with_init(kind, handler, {"other.txt": ""})
    t, f = ctl.until((F_READY, F_INIT_ERROR))
    assert t == F_INIT_ERROR, (t, f)
    assert f[0] == b"Runtime.ImportModuleError"
    assert json.loads(f[1])["errorType"] == "Runtime.ImportModuleError"
