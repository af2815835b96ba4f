"""The API server against slow and abusive clients (docs/security.md, "Hardened surface and
fuzzing"): slowloris headers, oversized and too many headers, the connection cap and the idle
keep-alive timeout. Each test starts its own kindlingd with small limits and bounds every wait."""

import socket
import threading
import time

import kindling_harness as h

HEADER_TIMEOUT = 2.0
IDLE_TIMEOUT = 1.5


def _connect(d, timeout=5):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=timeout)
    s.settimeout(timeout)
    return s


def _closed_within(s, seconds):
    """True when the server closes s (EOF or reset) within `seconds`; reads and discards data."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not s.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def _status_line(s):
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def _list_request(d):
    """A signed ListFunctions request for a raw socket (signatures stay valid for minutes)."""
    return h.request_bytes(d.endpoint, "GET", "/2015-03-31/functions/")


def _served(d):
    status, _, _ = h.raw(d.endpoint, "GET", "/2015-03-31/functions/", timeout=5)
    return status


def test_slow_header_is_cut_while_others_are_served(new_daemon):
    d = new_daemon(extra_args=["--http-header-timeout", str(HEADER_TIMEOUT)])
    s = _connect(d)
    cut = threading.Event()
    request = b"GET /2015-03-31/functions/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100

    def drip():  # one byte a second, as a slowloris client
        try:
            for b in request:
                s.sendall(bytes([b]))
                time.sleep(1.0)
        except OSError:
            cut.set()

    t = threading.Thread(target=drip, daemon=True)
    start = time.monotonic()
    t.start()
    # Meanwhile other clients are served promptly.
    for _ in range(5):
        t0 = time.monotonic()
        assert _served(d) == 200
        assert time.monotonic() - t0 < 2
    assert _closed_within(s, HEADER_TIMEOUT + 5), "slow client still connected"
    assert time.monotonic() - start < HEADER_TIMEOUT + 5
    s.close()
    t.join(timeout=3)
    assert _served(d) == 200


def test_oversized_header_gets_431(new_daemon):
    d = new_daemon()
    s = _connect(d)
    s.sendall(b"GET /2015-03-31/functions/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n")
    assert _status_line(s).startswith("HTTP/1.1 431"), "expected 431"
    assert _closed_within(s, 5)
    s.close()
    assert _served(d) == 200


def test_too_many_headers_gets_431(new_daemon):
    d = new_daemon()
    s = _connect(d)
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    s.sendall(b"GET /2015-03-31/functions/ HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert _status_line(s).split(" ")[1] in ("431", "400")
    assert _closed_within(s, 5)
    s.close()
    # A normal number of headers is fine.
    status, _, _ = h.raw(d.endpoint, "GET", "/2015-03-31/functions/",
                         headers={"X-H%d" % i: "v" for i in range(20)}, timeout=5)
    assert status == 200


def test_malformed_header_gets_400(new_daemon):
    d = new_daemon()
    s = _connect(d)
    s.sendall(b"GET /2015-03-31/functions/ HTTP/1.1\r\nBad Header Without Colon\r\n\r\n")
    assert _status_line(s).split(" ")[1] == "400"
    s.close()
    assert _served(d) == 200


def test_connection_cap(new_daemon):
    cap = 4
    d = new_daemon(extra_args=["--max-connections", str(cap), "--http-header-timeout", "30"])
    held = [_connect(d) for _ in range(cap)]
    time.sleep(0.3)  # let the daemon accept them
    extra = [_connect(d) for _ in range(3)]
    for s in extra:
        assert _closed_within(s, 5), "connection over the cap was not closed"
        s.close()
    # The held connections still work (keep-alive request on one of them).
    held[0].sendall(_list_request(d))
    assert _status_line(held[0]).startswith("HTTP/1.1 200")
    for s in held:
        s.close()
    # Once they are gone, new clients are served again.
    h.wait_for(lambda: _try_served(d), timeout=10, what="daemon serves after the held connections close")


def _try_served(d):
    try:
        return _served(d) == 200
    except OSError:
        return False


def test_idle_keepalive_is_closed(new_daemon):
    d = new_daemon(extra_args=["--http-idle-timeout", str(IDLE_TIMEOUT)])
    s = _connect(d)
    s.sendall(_list_request(d))
    assert _status_line(s).startswith("HTTP/1.1 200")
    # Drain the rest of the response, then stay idle.
    start = time.monotonic()
    assert _closed_within(s, IDLE_TIMEOUT + 5), "idle keep-alive connection was not closed"
    assert time.monotonic() - start >= IDLE_TIMEOUT - 0.5
    s.close()
    # A connection in use within the idle timeout is kept.
    s = _connect(d)
    for _ in range(3):
        s.sendall(_list_request(d))
        assert _status_line(s).startswith("HTTP/1.1 200")
        s.settimeout(0.3)
        try:
            while s.recv(65536):
                pass
        except socket.timeout:
            pass
        time.sleep(IDLE_TIMEOUT / 3)
    s.close()
