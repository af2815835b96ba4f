"""kindlingd as a process: clean shutdown (also with an invocation in flight), recovery after a
crash (SIGKILL) on the same data dir, and the account concurrency limit."""

import concurrent.futures
import os
import signal
import socket
import threading
import time

import pytest
from botocore.exceptions import ClientError

import kindling_harness as h
from kindling_harness import create_fn, invoke


def test_sigterm_with_an_invocation_in_flight(new_daemon, packages):
    d = new_daemon()
    c = h.boto_client(d.endpoint, read_timeout=30)
    name = h.unique_name("term")
    create_fn(c, name, packages["python"], Timeout=30)
    invoke(c, name, {})
    outcome = {}

    def slow():
        try:
            outcome["resp"] = invoke(c, name, {"action": "sleep", "seconds": 20})
        except Exception as e:  # noqa: BLE001 - any client-side failure is acceptable here
            outcome["error"] = e

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    assert d.sandbox_ids()
    t0 = time.monotonic()
    rc = d.stop(check=True)  # exit 0, no sandbox process or cgroup left
    assert rc == 0 and time.monotonic() - t0 < 10, "shutdown took %.1fs" % (time.monotonic() - t0)
    t.join(30)
    assert not t.is_alive()
    assert outcome, outcome  # the client got an answer or an error, it did not hang


def test_clean_shutdown_leaves_no_sandboxes(new_daemon, packages):
    d = new_daemon()
    c = h.boto_client(d.endpoint)
    for family in ("python", "node", "provided"):
        name = h.unique_name("many-" + family)
        create_fn(c, name, packages[family])
        invoke(c, name, {})
    assert len(d.sandbox_ids()) == 3
    d.stop(check=True)


def test_clean_shutdown_removes_instance_cgroups(new_daemon, packages):
    d = new_daemon()
    c = h.boto_client(d.endpoint)
    create_fn(c, "one", packages["provided"])
    invoke(c, "one", {})
    assert d.new_instance_cgroup_dirs()
    d.stop(check=True)
    assert d.new_instance_cgroup_dirs() == []


def test_recovery_after_a_crash(new_daemon, packages):
    d = new_daemon()
    c = h.boto_client(d.endpoint)
    names = []
    for family in ("python", "provided"):
        names.append(h.unique_name("crash-" + family))
        create_fn(c, names[-1], packages[family])
        invoke(c, names[-1], {})
    orphans = h.descendants(d.pid)
    old_sandboxes = d.sandbox_ids()
    assert orphans and len(old_sandboxes) == 2
    os.kill(d.pid, signal.SIGKILL)  # only kindlingd: its sandboxes stay behind
    d.proc.wait(10)
    d.proc = None
    alive = [p for p, st in orphans if h.alive(p, st)]
    assert alive, "sandboxes died with the daemon (expected them to stay until swept)"

    d.start()  # same data dir: sweeps what the crashed run left
    h.wait_for(lambda: not any(h.alive(p, st) for p, st in orphans), 10,
               what="the crashed run's sandbox processes to be killed")
    h.wait_for(lambda: not (set(d.sandbox_ids()) & set(old_sandboxes)), 10,
               what="the crashed run's sandbox cgroups to be removed")
    c = h.boto_client(d.endpoint)
    for name in names:
        resp, body = invoke(c, name, {"after": "sweep"})
        assert "FunctionError" not in resp and body["event"] == {"after": "sweep"}, body
        assert body["count"] == 1


def test_account_concurrency_limit(new_daemon, packages):
    d = new_daemon(extra_args=["--account-concurrency", "2"])
    c = h.boto_client(d.endpoint)
    name = h.unique_name("throttle")
    create_fn(c, name, packages["python"])
    clients = [h.boto_client(d.endpoint) for _ in range(3)]

    def one(i):
        time.sleep(0.15 * i)  # the third arrives while the first two are running
        try:
            return invoke(clients[i], name, {"action": "sleep", "seconds": 1.0})[0]["StatusCode"]
        except ClientError as e:
            return (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"],
                    e.response.get("Reason"))

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(one, range(3)))
    assert results[:2] == [200, 200], results
    assert results[2] == ("TooManyRequestsException", 429, "ConcurrentInvocationLimitExceeded"), results
    m = d.metrics()
    assert m['kindling_throttles_total{function="%s"}' % name] == 1
    # Capacity comes back when they finish.
    assert invoke(c, name, {})[0]["StatusCode"] == 200


def _fill_with_two_sandboxes(d, name):
    clients = [h.boto_client(d.endpoint) for _ in range(2)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        bodies = list(pool.map(lambda i: invoke(clients[i], name, {"action": "sleep", "seconds": 0.5})[1], range(2)))
    assert len({b["marker"] for b in bodies}) == 2, bodies


def test_out_of_capacity_is_a_clean_error(new_daemon, packages):
    d = new_daemon(extra_args=["--memory-capacity-mb", "1024"])
    c = h.boto_client(d.endpoint)
    name = h.unique_name("cap")
    create_fn(c, name, packages["python"], MemorySize=512)
    clients = [h.boto_client(d.endpoint) for _ in range(3)]

    def one(i):
        time.sleep(0.2 * i)  # the third arrives while two 512 MB sandboxes are busy
        try:
            return invoke(clients[i], name, {"action": "sleep", "seconds": 1.0})[0]["StatusCode"]
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(one, range(3)))
    assert results[:2] == [200, 200], results
    assert results[2] in ((429, "TooManyRequestsException"), (500, "ServiceException")), results
    assert invoke(c, name, {})[0]["StatusCode"] == 200  # warm sandboxes serve again


# Regression: idle sandboxes kept their reservation until the idle timeout, and every other
# function's invoke failed with 500 ServiceException 'no worker has 512 MB free'.
def test_idle_sandboxes_make_room_for_other_functions(new_daemon, packages):
    d = new_daemon(extra_args=["--memory-capacity-mb", "1024"])
    c = h.boto_client(d.endpoint)
    a, b = h.unique_name("cap-a"), h.unique_name("cap-b")
    create_fn(c, a, packages["python"], MemorySize=512)
    create_fn(c, b, packages["python"], MemorySize=512)
    _fill_with_two_sandboxes(d, a)  # both now idle
    resp, body = invoke(c, b, {"other": 1})
    assert "FunctionError" not in resp and body["event"] == {"other": 1}, body


def test_concurrency_slots_are_released_after_failures(new_daemon, packages):
    # With room for exactly one invocation, any slot leaked by a failure path blocks everything.
    d = new_daemon(extra_args=["--account-concurrency", "1"])
    c = h.boto_client(d.endpoint)
    name, noboot = h.unique_name("slots"), h.unique_name("slots-noboot")
    create_fn(c, name, packages["python"], Timeout=1)
    create_fn(c, noboot, runtime="provided.al2023", handler="x", zip_bytes=h.make_zip({"README": "x"}))
    for event, error_type in (({"action": "hang"}, "Sandbox.Timedout"), ({"action": "exit"}, "Runtime.ExitError"),
                              ({"action": "raise"}, "ValueError"), ({"action": "alloc"}, "Runtime.OutOfMemory")):
        resp, body = invoke(c, name, event)
        assert body["errorType"] == error_type, body
    assert invoke(c, noboot, {})[1]["errorType"] == "Runtime.InvalidEntrypoint"
    with pytest.raises(ClientError):
        c.invoke(FunctionName=name, Payload=b"{bad json")
    for _ in range(3):  # callers that hang up mid-invocation
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        body = b'{"action": "sleep", "seconds": 0.3}'
        s.sendall(h.request_bytes(d.endpoint, "POST", "/2015-03-31/functions/%s/invocations" % name, body))
        s.close()
        time.sleep(0.6)
    resp, body = invoke(c, name, {"final": 1})
    assert resp["StatusCode"] == 200 and body["event"] == {"final": 1}, body
