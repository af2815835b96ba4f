"""Warm and cold sandboxes: reuse between sequential invokes, one sandbox per concurrent invoke,
no reuse across an update, idle reaping, and what /metrics says about it all.

This module runs its own kindlingd with a 2 s idle timeout (the reaper checks every 0.5 s)."""

import concurrent.futures
import threading
import time

import pytest

import kindling_harness as h
from kindling_harness import create_fn, invoke

IDLE = 2.0


@pytest.fixture(scope="module")
def daemon():
    d = h.Daemon(idle_timeout=IDLE)
    try:
        d.start()
        yield d
        d.stop(check=True)
    finally:
        d.cleanup()


def sandbox_of(body):
    """The sandbox id, from the log stream name the worker gives each sandbox: date/[ver]<id>."""
    return body["log_stream"].rsplit("]", 1)[1]


def echo(client, name, event=None):
    resp, body = invoke(client, name, event or {})
    assert "FunctionError" not in resp, body
    return body


@pytest.fixture(scope="module")
def py_app(packages):
    # The python package plus a handler that also names its sandbox.
    return h.python_zip(extra={"where.py": (
        "import os, time, app\n"
        "def handler(event, context):\n"
        "    time.sleep(event.get('sleep', 0))\n"
        "    return {'marker': app.MARKER, 'log_stream': os.environ['AWS_LAMBDA_LOG_STREAM_NAME'],\n"
        "            'foo': os.environ.get('FOO'), 'pid': os.getpid()}\n")})


@pytest.mark.parametrize("family", ["python", "node", "provided"])
def test_sequential_invokes_reuse_the_sandbox(family, client, packages, daemon):
    name = h.unique_name("warm-" + family)
    create_fn(client, name, packages[family])
    first = echo(client, name)
    second = echo(client, name)
    third = echo(client, name)
    assert (first["count"], second["count"], third["count"]) == (1, 2, 3)
    assert first["marker"] == second["marker"] == third["marker"]
    m = daemon.metrics()
    assert m['kindling_cold_starts_total{function="%s"}' % name] == 1
    assert m['kindling_warm_starts_total{function="%s"}' % name] == 2
    assert m['kindling_invocations_total{function="%s"}' % name] == 3


def test_concurrent_invokes_get_distinct_sandboxes(client, daemon, py_app):
    name = h.unique_name("conc")
    create_fn(client, name, runtime="python3.12", handler="where.handler", zip_bytes=py_app)

    clients = [h.boto_client(daemon.endpoint) for _ in range(4)]  # boto3.client() is not thread-safe

    def one(i):
        return echo(clients[i], name, {"sleep": 0.5})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        t0 = time.monotonic()
        first = list(pool.map(one, range(4)))
        elapsed = time.monotonic() - t0
        sandboxes = {sandbox_of(b) for b in first}
        markers = {b["marker"] for b in first}
        assert len(markers) == 4 and len(sandboxes) == 4, first
        assert elapsed < 4 * 0.5, "4 invokes of 0.5 s took %.2fs: not concurrent" % elapsed
        live = set(daemon.sandbox_ids())
        assert sandboxes <= live, (sandboxes, live)
        # The four are warm now: a second wave reuses them and starts nothing new.
        second = list(pool.map(one, range(4)))
    assert {b["marker"] for b in second} <= markers
    m = daemon.metrics()
    assert m['kindling_cold_starts_total{function="%s"}' % name] == 4
    assert m['kindling_warm_starts_total{function="%s"}' % name] == 4


def test_update_retires_old_sandboxes(client, daemon, py_app):
    name = h.unique_name("retire")
    create_fn(client, name, runtime="python3.12", handler="where.handler", zip_bytes=py_app,
              Environment={"Variables": {"FOO": "old"}})
    before = echo(client, name)
    assert echo(client, name)["marker"] == before["marker"]  # warm
    old = sandbox_of(before)
    assert old in daemon.sandbox_ids()

    client.update_function_configuration(FunctionName=name, Environment={"Variables": {"FOO": "new"}})
    after = echo(client, name)
    assert after["foo"] == "new"
    assert after["marker"] != before["marker"] and sandbox_of(after) != old
    # The old sandbox is destroyed, not merely skipped.
    h.wait_for(lambda: old not in daemon.sandbox_ids(), 5, what="sandbox %s to be destroyed" % old)

    client.update_function_code(FunctionName=name, ZipFile=py_app + b"")  # same code: new revision
    again = echo(client, name)
    assert again["marker"] != after["marker"]
    h.wait_for(lambda: sandbox_of(after) not in daemon.sandbox_ids(), 5, what="retired sandbox to go")


def test_idle_sandbox_is_reaped(client, daemon, py_app):
    name = h.unique_name("reap")
    create_fn(client, name, runtime="python3.12", handler="where.handler", zip_bytes=py_app)
    first = echo(client, name)
    sid = sandbox_of(first)
    t0 = time.monotonic()
    assert sid in daemon.sandbox_ids()
    h.wait_for(lambda: sid not in daemon.sandbox_ids(), IDLE + 5, interval=0.1,
               what="idle sandbox %s to be reaped" % sid)
    waited = time.monotonic() - t0
    assert waited >= IDLE - 0.5, "reaped after %.2fs, idle timeout is %.1fs" % (waited, IDLE)
    second = echo(client, name)
    assert second["marker"] != first["marker"] and sandbox_of(second) != sid
    m = daemon.metrics()
    assert m['kindling_cold_starts_total{function="%s"}' % name] == 2


def test_metrics_report_invocations_and_sandboxes(client, daemon, packages):
    name = h.unique_name("metrics")
    create_fn(client, name, packages["provided"])
    for _ in range(3):
        echo(client, name)
    resp, _ = invoke(client, name, {"action": "fail"})
    assert resp["FunctionError"] == "Unhandled"
    status, headers, text = h.raw(daemon.endpoint, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = text.decode()
    assert "# TYPE kindling_invocations_total counter" in text
    m = h.parse_metrics(text)
    label = '{function="%s"}' % name
    assert m["kindling_invocations_total" + label] == 4
    assert m["kindling_errors_total" + label] == 1
    assert m["kindling_cold_starts_total" + label] == 1
    assert m["kindling_warm_starts_total" + label] == 3
    assert m["kindling_invocation_duration_ms_count" + label] == 4
    assert m['kindling_invocation_duration_ms_bucket{function="%s",le="+Inf"}' % name] == 4
    # The sandbox is parked (idle or frozen) and counted by the worker.
    parked = m.get('kindling_sandboxes{state="idle"}', 0) + m.get('kindling_sandboxes{state="frozen"}', 0)
    assert parked >= 1 and m['kindling_sandboxes{state="busy"}'] == 0
    assert m["kindling_worker_sandboxes"] >= 1
    assert m["kindling_worker_memory_reserved_bytes"] >= 128 << 20
    # Once everything idles out, the gauges return to zero.
    h.wait_for(lambda: not daemon.sandbox_ids(), IDLE + 6, interval=0.1, what="all sandboxes reaped")
    m = daemon.metrics()
    assert m["kindling_worker_sandboxes"] == 0
    assert m['kindling_sandboxes{state="idle"}'] == 0 and m['kindling_sandboxes{state="frozen"}'] == 0
    assert m["kindling_invocations_total" + label] == 4


TICKER = (
    "import threading, time, uuid\n"
    "MARKER = uuid.uuid4().hex\n"
    "TICKS = []\n"
    "def _tick():\n"
    "    while True:\n"
    "        TICKS.append(time.monotonic())\n"
    "        time.sleep(0.01)\n"
    "threading.Thread(target=_tick, daemon=True).start()\n"
    "def handler(event, context):\n"
    "    time.sleep(0.05)\n"
    "    ticks = TICKS[-400:]\n"
    "    gaps = [b - a for a, b in zip(ticks, ticks[1:])]\n"
    "    return {'marker': MARKER, 'max_gap': max(gaps) if gaps else 0, 'n': len(TICKS)}\n")


def cgroup_frozen(daemon, sid):
    """True/False from the unified cgroup.events or the v1 freezer.state; None if neither exists."""
    try:
        with open("/sys/fs/cgroup/unified/%s/%s/cgroup.events" % (daemon.instance, sid)) as f:
            for line in f:
                if line.startswith("frozen "):
                    return line.split()[1] == "1"
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/freezer/%s/%s/freezer.state" % (daemon.instance, sid)) as f:
            return f.read().strip() == "FROZEN"
    except OSError:
        return None


def test_idle_sandboxes_are_frozen(client, daemon):
    name = h.unique_name("frozen")
    create_fn(client, name, runtime="python3.12", handler="ticker.handler",
              zip_bytes=h.make_zip({"ticker.py": TICKER}))
    existing = set(daemon.sandbox_ids())
    first = echo(client, name)
    (sid,) = set(daemon.sandbox_ids()) - existing
    # Parked between invokes: frozen, so the function's background thread does not run.
    assert h.wait_for(lambda: cgroup_frozen(daemon, sid), 2, what="sandbox frozen after the invoke")
    time.sleep(1.0)
    assert cgroup_frozen(daemon, sid)
    second = echo(client, name)
    assert second["marker"] == first["marker"]
    assert second["max_gap"] >= 0.8, "background thread ran while the sandbox was idle: %r" % second
    assert cgroup_frozen(daemon, sid) is not None


def test_update_during_an_invocation(client, daemon, py_app):
    name = h.unique_name("inflight")
    create_fn(client, name, runtime="python3.12", handler="where.handler", zip_bytes=py_app,
              Environment={"Variables": {"FOO": "v1"}})
    result = {}

    def slow():
        result["body"] = echo(h.boto_client(daemon.endpoint), name, {"sleep": 1.0})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4)
    client.update_function_configuration(FunctionName=name, Environment={"Variables": {"FOO": "v2"}})
    during = echo(client, name)
    t.join(10)
    assert result["body"]["foo"] == "v1", result  # the in-flight invocation finishes on the old config
    assert during["foo"] == "v2" and sandbox_of(during) != sandbox_of(result["body"])
    # Once released, the old sandbox is destroyed rather than parked.
    h.wait_for(lambda: sandbox_of(result["body"]) not in daemon.sandbox_ids(), 5,
               what="the old sandbox to be destroyed after its last invocation")
    assert echo(client, name)["marker"] == during["marker"]


def test_delete_during_an_invocation(client, daemon, py_app):
    name = h.unique_name("delinflight")
    create_fn(client, name, runtime="python3.12", handler="where.handler", zip_bytes=py_app)
    result = {}

    def slow():
        result["body"] = echo(h.boto_client(daemon.endpoint), name, {"sleep": 1.0})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4)
    client.delete_function(FunctionName=name)
    t.join(10)
    assert "marker" in result.get("body", {}), result
    h.wait_for(lambda: sandbox_of(result["body"]) not in daemon.sandbox_ids(), 5,
               what="the deleted function's sandbox to be destroyed")


def test_recreated_function_never_gets_the_old_sandbox(client, daemon, packages):
    name = h.unique_name("reborn")
    create_fn(client, name, packages["python"])
    old = echo(client, name)
    assert old["tag"] == "py-v1"
    client.delete_function(FunctionName=name)
    create_fn(client, name, packages["python"], Code={"ZipFile": packages["python"].v2},
              Environment={"Variables": {"FOO": "reborn"}})
    new = echo(client, name)
    assert new["tag"] == "py-v2" and new["foo"] == "reborn"
    assert new["marker"] != old["marker"] and new["count"] == 1
