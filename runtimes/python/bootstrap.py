"""Kindling Python runtime client.

Runs inside a Kindling sandbox as `python3 /var/runtime/bootstrap.py`, talks the Lambda Runtime API
(http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/...) served by kindling-init, and calls the user's
handler once per invocation, with the semantics of the AWS Lambda Python runtime.

Design notes (runtimes/README.md lists the differences from AWS):
- Standard library only, and as little of it as possible: http.client alone costs ~19 ms to import
  here (email, ssl, ...), more than a bare `python3 -c pass`. The Runtime API is a tiny HTTP/1.1
  subset (keep-alive, Content-Length bodies), so this file speaks it over one `_socket` socket.
  Imports on the cold path: os, sys (already loaded by site), time, _socket (built in), json. `traceback` is loaded
  on the first error only.
- Single-threaded. While waiting for the next event the process is blocked in recv() on the Runtime
  API socket and nothing else runs, so it can be frozen / snapshotted there.
- If the connection drops (e.g. after a restore, or kindling-init restarted the listener) the client
  opens a new one and asks for /next again; a response that could not be delivered is re-sent once
  on the new connection.
- Warm path per invoke: one sendall for GET /next, usually one recv, handler call, json.dumps, one
  sendall (headers + body) for the response, one recv for the 202.
"""

import os
import sys
import time
import _socket
import json

# ----------------------------------------------------------------------------------------------
# Minimal HTTP/1.1 client for the Runtime API.

_API_PREFIX = "/2018-06-01/runtime"
_RECV = 65536


class RuntimeAPIError(Exception):
    """The Runtime API answered a status this client cannot continue from."""


class _ConnectionLost(Exception):
    pass


class RuntimeClient:
    """One persistent keep-alive connection to kindling-init. Not thread safe (there are no threads)."""

    __slots__ = ("host", "port", "hosthdr", "sock", "buf")

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        if not host:
            host, port = address, "80"
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        self.host = host
        self.port = int(port)
        self.hosthdr = address.encode("latin-1")
        self.sock = None
        self.buf = b""

    # -- connection management ------------------------------------------------------------------
    def _connect(self):
        host, port = self.host, self.port
        try:
            _socket.inet_pton(_socket.AF_INET, host)
            targets = [(_socket.AF_INET, (host, port))]
        except OSError:
            try:
                _socket.inet_pton(_socket.AF_INET6, host)
                targets = [(_socket.AF_INET6, (host, port))]
            except OSError:  # a name (kindling uses 127.0.0.1:9001, so this is rare)
                targets = [(fam, sa) for fam, _t, _p, _c, sa in
                           _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)]
        last = None
        for family, sockaddr in targets:
            s = _socket.socket(family, _socket.SOCK_STREAM)
            try:
                s.connect(sockaddr)
            except OSError as e:
                s.close()
                last = e
                continue
            s.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            self.sock = s
            self.buf = b""
            return
        raise last or OSError("cannot connect to the Runtime API at %s:%d" % (host, port))

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = b""

    # -- one request/response exchange ------------------------------------------------------------
    def _exchange(self, head, body):
        """Sends one request (head already encoded) and returns (status, headers, body).

        Raises _ConnectionLost if the connection broke before a complete response arrived."""
        if self.sock is None:
            try:
                self._connect()
            except OSError as e:
                raise _ConnectionLost(str(e))
        sock = self.sock
        try:
            if body:
                if len(body) <= 65536:
                    sock.sendall(head + body)
                else:
                    sock.sendall(head)
                    sock.sendall(body)
            else:
                sock.sendall(head)
            return self._read_response()
        except OSError as e:
            self.close()
            raise _ConnectionLost(str(e))

    def _read_response(self):
        sock = self.sock
        buf = self.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = sock.recv(_RECV)
            if not chunk:
                self.close()
                raise _ConnectionLost("connection closed by the Runtime API")
            buf = buf + chunk if buf else chunk
        lines = buf[:end].decode("latin-1").split("\r\n")
        rest = buf[end + 4:]
        status_line = lines[0]
        try:
            status = int(status_line.split(" ", 2)[1])
        except (IndexError, ValueError):
            self.close()
            raise _ConnectionLost("malformed status line from the Runtime API: %r" % status_line)
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        te = headers.get("transfer-encoding")
        if te is not None and "chunked" in te.lower():
            body, rest = self._read_chunked(rest)
        else:
            length = int(headers.get("content-length", "0") or 0)
            have = len(rest)
            if have >= length:
                body = rest[:length]
                rest = rest[length:]
            else:
                # Large event: read straight into one preallocated buffer.
                out = bytearray(length)
                view = memoryview(out)
                view[:have] = rest
                pos = have
                while pos < length:
                    n = sock.recv_into(view[pos:])
                    if not n:
                        self.close()
                        raise _ConnectionLost("connection closed in the middle of a body")
                    pos += n
                body = bytes(out)
                rest = b""
        self.buf = rest
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, body

    def _read_chunked(self, data):
        sock = self.sock
        parts = []
        while True:
            while b"\r\n" not in data:
                more = sock.recv(_RECV)
                if not more:
                    raise OSError("connection closed in a chunked body")
                data += more
            line, _, data = data.partition(b"\r\n")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # trailers, terminated by an empty line
                while True:
                    while b"\r\n" not in data:
                        more = sock.recv(_RECV)
                        if not more:
                            raise OSError("connection closed in chunk trailers")
                        data += more
                    line, _, data = data.partition(b"\r\n")
                    if not line:
                        return b"".join(parts), data
            while len(data) < size + 2:
                more = sock.recv(_RECV)
                if not more:
                    raise OSError("connection closed in a chunk")
                data += more
            parts.append(data[:size])
            data = data[size + 2:]

    # -- Runtime API calls --------------------------------------------------------------------------
    def next(self):
        """GET /runtime/invocation/next; blocks until an event arrives. Reconnects as needed."""
        head = b"GET " + _API_PREFIX.encode() + b"/invocation/next HTTP/1.1\r\nHost: " + self.hosthdr + b"\r\n\r\n"
        delay = 0.001
        failures = 0
        while True:
            try:
                status, headers, body = self._exchange(head, None)
            except _ConnectionLost:
                failures += 1
                if failures > 200:  # ~60 s of trying: kindling-init is gone
                    raise RuntimeAPIError("lost the Runtime API connection and could not reconnect")
                _sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            if status == 200:
                return headers, body
            raise RuntimeAPIError("GET /next answered HTTP %d: %s" % (status, body[:200].decode("utf-8", "replace")))

    def post(self, path, body, extra_headers=b"", content_type=b"application/json"):
        head = (b"POST " + path + b" HTTP/1.1\r\nHost: " + self.hosthdr
                + b"\r\nContent-Type: " + content_type
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra_headers + b"\r\n")
        for attempt in (0, 1, 2):
            try:
                status, _h, rbody = self._exchange(head, body)
            except _ConnectionLost:
                if attempt == 2:
                    raise RuntimeAPIError("lost the Runtime API connection while posting " + path.decode())
                _sleep(0.005 * (attempt + 1))
                continue
            return status, rbody


_sleep = time.sleep


# ----------------------------------------------------------------------------------------------
# Context object (same attribute names as the AWS Python runtime's LambdaContext).

class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity_id=None, pool_id=None):
        self.cognito_identity_id = identity_id
        self.cognito_identity_pool_id = pool_id

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id, self.cognito_identity_pool_id)


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self, d):
        self.installation_id = d.get("installation_id")
        self.app_title = d.get("app_title")
        self.app_version_name = d.get("app_version_name")
        self.app_version_code = d.get("app_version_code")
        self.app_package_name = d.get("app_package_name")

    def __repr__(self):
        return ("Client([installation_id=%s,app_title=%s,app_version_name=%s,app_version_code=%s,"
                "app_package_name=%s])" % (self.installation_id, self.app_title, self.app_version_name,
                                           self.app_version_code, self.app_package_name))


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, d):
        c = d.get("client")
        self.client = Client(c) if isinstance(c, dict) else None
        self.custom = d.get("custom")
        self.env = d.get("env")

    def __repr__(self):
        return "ClientContext([client=%s,custom=%s,env=%s])" % (self.client, self.custom, self.env)


_ENV = os.environ
_FUNCTION_NAME = _ENV.get("AWS_LAMBDA_FUNCTION_NAME")
_FUNCTION_VERSION = _ENV.get("AWS_LAMBDA_FUNCTION_VERSION")
_LOG_GROUP = _ENV.get("AWS_LAMBDA_LOG_GROUP_NAME")
_LOG_STREAM = _ENV.get("AWS_LAMBDA_LOG_STREAM_NAME")
try:
    _MEMORY = int(_ENV.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
except ValueError:
    _MEMORY = _ENV.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")

_time_ns = time.time_ns


class LambdaContext:
    __slots__ = ("aws_request_id", "invoked_function_arn", "_deadline_ms", "identity", "client_context",
                 "function_name", "function_version", "memory_limit_in_mb", "log_group_name",
                 "log_stream_name")

    def __init__(self, request_id, deadline_ms, arn, identity, client_context):
        self.aws_request_id = request_id
        self._deadline_ms = deadline_ms
        self.invoked_function_arn = arn
        self.identity = identity
        self.client_context = client_context
        self.function_name = _FUNCTION_NAME
        self.function_version = _FUNCTION_VERSION
        self.memory_limit_in_mb = _MEMORY
        self.log_group_name = _LOG_GROUP
        self.log_stream_name = _LOG_STREAM

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - _time_ns() // 1000000
        return remaining if remaining > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))
        sys.stdout.flush()

    def __repr__(self):
        return ("LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,function_name=%s,"
                "memory_limit_in_mb=%s,function_version=%s,invoked_function_arn=%s,client_context=%s,"
                "identity=%s])" % (self.aws_request_id, self.log_group_name, self.log_stream_name,
                                   self.function_name, self.memory_limit_in_mb, self.function_version,
                                   self.invoked_function_arn, self.client_context, self.identity))


def _parse_json_header(value):
    """Client context / Cognito identity header: JSON text (or base64 JSON, as the Invoke API carries it)."""
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        import base64
        return json.loads(base64.b64decode(value, validate=True))
    except Exception:
        return None


def _make_identity(value):
    d = _parse_json_header(value)
    if isinstance(d, dict):
        return CognitoIdentity(d.get("cognitoIdentityId", d.get("cognito_identity_id")),
                               d.get("cognitoIdentityPoolId", d.get("cognito_identity_pool_id")))
    return CognitoIdentity()


def _make_client_context(value):
    d = _parse_json_header(value)
    if isinstance(d, dict):
        return ClientContext(d)
    return None


# ----------------------------------------------------------------------------------------------
# Errors (documents shaped like the AWS Python runtime's).

class FaultException(Exception):
    """A runtime-level failure with a Lambda error type (Runtime.ImportModuleError, ...)."""

    def __init__(self, error_type, message, trace=None):
        Exception.__init__(self, message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


def _format_trace(tb):
    import traceback
    # Drop the runtime's own frames (this file) from the top of the stack, as AWS does.
    frames = traceback.extract_tb(tb)
    here = __file__
    i = 0
    while i < len(frames) and frames[i].filename == here:
        i += 1
    return traceback.format_list(frames[i:])


def _exception_document(exc, request_id=None):
    if isinstance(exc, FaultException):
        doc = {"errorMessage": exc.message, "errorType": exc.error_type}
        if request_id is not None:
            doc["requestId"] = request_id
        doc["stackTrace"] = exc.trace
        return doc
    etype = type(exc).__name__
    doc = {"errorMessage": str(exc), "errorType": etype}
    if request_id is not None:
        doc["requestId"] = request_id
    doc["stackTrace"] = _format_trace(exc.__traceback__)
    return doc


def _log_error(doc):
    """What AWS writes to the function log for an error: "[ERROR] Type: message" and the traceback."""
    lines = ["[ERROR] %s: %s" % (doc["errorType"], doc["errorMessage"])]
    trace = doc.get("stackTrace") or []
    if trace:
        lines.append("Traceback (most recent call last):")
        lines.extend(t.rstrip("\n") for t in trace)
    try:
        sys.stdout.flush()
    except Exception:
        pass
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    except Exception:
        pass


def _dumps_error(doc):
    try:
        return json.dumps(doc).encode("utf-8")
    except Exception:
        return json.dumps({"errorMessage": str(doc.get("errorMessage")), "errorType": str(doc.get("errorType")),
                           "stackTrace": []}).encode("utf-8")


# ----------------------------------------------------------------------------------------------
# Handler loading (the AWS rules: "module.function", module may contain "/" or ".").

def _fault_handler(fault):
    def handler(event, context):
        raise fault
    handler.__kindling_fault__ = True
    return handler


def load_handler(handler_string):
    try:
        modname, fname = handler_string.rsplit(".", 1)
    except ValueError as e:
        raise FaultException("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler_string, e))
    if not modname or not fname:
        raise FaultException("Runtime.MalformedHandlerName", "Bad handler '%s': empty module or function name"
                             % handler_string)
    if modname.split(".")[0] in sys.builtin_module_names:
        raise FaultException("Runtime.BuiltInModuleConflict",
                             "Cannot use built-in module %s as a handler module" % modname)
    import_name = modname.replace("/", ".")
    try:
        __import__(import_name)
        module = sys.modules[import_name]
    except ImportError as e:
        raise FaultException("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultException("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (modname, e), trace)
    try:
        fn = getattr(module, fname)
    except AttributeError:
        # AWS reports a missing handler on every invoke rather than failing init.
        return _fault_handler(FaultException("Runtime.HandlerNotFound",
                                             "Handler '%s' missing on module '%s'" % (fname, modname)))
    return fn


# ----------------------------------------------------------------------------------------------
# JSON marshalling of results (AWS: Decimal allowed, non-ASCII kept as UTF-8).

class _Encoder(json.JSONEncoder):
    def __init__(self):
        json.JSONEncoder.__init__(self, ensure_ascii=False, allow_nan=True)

    def default(self, o):
        if type(o).__name__ == "Decimal" and type(o).__module__ in ("decimal", "_decimal", "_pydecimal"):
            if o.is_nan():
                return float("nan")
            return int(o) if o == o.to_integral_value() else float(o)
        return json.JSONEncoder.default(self, o)


_encode = _Encoder().encode


def _marshal(result):
    if result is None:
        return b"null"
    try:
        return _encode(result).encode("utf-8")
    except Exception as e:  # TypeError, ValueError (circular), OverflowError, UnicodeEncodeError ...
        raise FaultException("Runtime.MarshalError", "Unable to marshal response: %s" % e)



# ----------------------------------------------------------------------------------------------
# The `logging` module, as on AWS: the root logger gets a handler that writes
# "[LEVEL]\t<UTC time>Z\t<request id>\t<message>" to stdout (so logging.basicConfig() is a no-op and
# the root level stays WARNING until the function sets it). Importing logging costs ~5 ms here, so it
# is not imported for functions that never use it: a meta path hook installs the handler the moment
# user code imports logging.

_request_id = ""


def _install_logging(logging):
    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record):
            try:
                msg = self.format(record)
                stream = sys.stdout
                stream.write(msg + "\n")
                stream.flush()
            except Exception:
                self.handleError(record)

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _request_id
            return True

    formatter = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                                  "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler = LambdaLoggerHandler()
    handler.setFormatter(formatter)
    handler.addFilter(LambdaLoggerFilter())
    logging.getLogger().addHandler(handler)


class _LoggingImportHook:
    """sys.meta_path entry that runs _install_logging right after `logging` is first executed."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "logging":
            return None
        try:
            sys.meta_path.remove(_LoggingImportHook)
        except ValueError:
            pass
        from importlib.machinery import PathFinder
        spec = PathFinder.find_spec(name, path, target)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module):
            original(module)
            try:
                _install_logging(module)
            except Exception as e:  # never break the user's import because of our handler
                sys.stderr.write("kindling python runtime: could not set up logging: %s\n" % e)

        loader.exec_module = exec_module
        return spec


def _setup_logging():
    if "logging" in sys.modules:
        _install_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _LoggingImportHook)


# ----------------------------------------------------------------------------------------------
# Main loop

def _report_init_error_and_exit(client, exc):
    doc = _exception_document(exc)
    _log_error(doc)
    try:
        client.post((_API_PREFIX + "/init/error").encode(), _dumps_error(doc),
                    b"Lambda-Runtime-Function-Error-Type: " + doc["errorType"].encode("utf-8", "replace") + b"\r\n")
    except Exception as e:
        sys.stderr.write("kindling python runtime: could not report init error: %s\n" % e)
        sys.stderr.flush()
    sys.exit(1)


def main():
    # Prints must reach the pipe promptly and always before the response is posted.
    try:
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
    except Exception:
        pass

    task_root = _ENV.get("LAMBDA_TASK_ROOT") or "/var/task"
    runtime_dir = os.path.dirname(os.path.abspath(__file__))
    # sys.path[0] is this file's directory; the task root goes first, the runtime directory after it.
    while runtime_dir in sys.path:
        sys.path.remove(runtime_dir)
    if task_root in sys.path:
        sys.path.remove(task_root)
    sys.path.insert(0, task_root)
    sys.path.insert(1, runtime_dir)
    os.environ.setdefault("LAMBDA_RUNTIME_DIR", runtime_dir)

    _setup_logging()

    api = _ENV.get("AWS_LAMBDA_RUNTIME_API")
    if not api:
        sys.stderr.write("kindling python runtime: AWS_LAMBDA_RUNTIME_API is not set\n")
        sys.exit(2)
    client = RuntimeClient(api)

    try:
        handler = load_handler(_ENV.get("_HANDLER", ""))
    except FaultException as e:
        _report_init_error_and_exit(client, e)
    except Exception as e:  # the module raised while importing: report it with its own type
        _report_init_error_and_exit(client, e)

    run(client, handler)


def run(client, handler):
    global _request_id
    environ = os.environ
    stdout = sys.stdout
    stderr = sys.stderr
    loads = json.loads
    prefix = _API_PREFIX.encode() + b"/invocation/"
    unhandled_hdr = b"Lambda-Runtime-Function-Error-Type: Unhandled\r\n"

    while True:
        try:
            headers, body = client.next()
        except RuntimeAPIError as e:
            stderr.write("kindling python runtime: %s\n" % e)
            stderr.flush()
            sys.exit(3)

        request_id = headers.get("lambda-runtime-aws-request-id", "")
        _request_id = request_id
        trace_id = headers.get("lambda-runtime-trace-id")
        if trace_id is not None:
            environ["_X_AMZN_TRACE_ID"] = trace_id
        elif "_X_AMZN_TRACE_ID" in environ:
            del environ["_X_AMZN_TRACE_ID"]
        try:
            deadline = int(headers.get("lambda-runtime-deadline-ms") or 0)
        except ValueError:
            deadline = 0
        cc = headers.get("lambda-runtime-client-context")
        ci = headers.get("lambda-runtime-cognito-identity")
        context = LambdaContext(request_id, deadline, headers.get("lambda-runtime-invoked-function-arn"),
                                _make_identity(ci) if ci else CognitoIdentity(),
                                _make_client_context(cc) if cc else None)
        rid = request_id.encode("latin-1", "replace")
        try:
            ctype = headers.get("content-type")
            if ctype is not None and ctype and not ctype.startswith("application/json"):
                event = body  # AWS passes non-JSON payloads through as bytes
            else:
                try:
                    event = loads(body) if body else None
                except ValueError as e:
                    raise FaultException("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e)
            payload = _marshal(handler(event, context))
            path = prefix + rid + b"/response"
            extra = b""
        except Exception as exc:
            doc = _exception_document(exc, request_id)
            _log_error(doc)
            payload = _dumps_error(doc)
            path = prefix + rid + b"/error"
            extra = unhandled_hdr
        # Log lines must precede the response.
        stdout.flush()
        stderr.flush()
        try:
            status, rbody = client.post(path, payload, extra)
        except RuntimeAPIError as e:
            stderr.write("kindling python runtime: %s\n" % e)
            stderr.flush()
            sys.exit(3)
        if status >= 500:
            # The Runtime API asks the runtime to exit.
            sys.exit(4)
        if status == 413 and extra == b"":
            # Response too large: report it as a function error so the caller sees why.
            doc = {"errorMessage": "Response payload size exceeded maximum allowed payload size",
                   "errorType": "Function.ResponseSizeTooLarge", "requestId": request_id, "stackTrace": []}
            client.post(prefix + rid + b"/error", _dumps_error(doc), unhandled_hdr)
        del context, payload, body


if __name__ == "__main__":
    main()
