"""Cluster mode on one machine (scripts/cluster.sh): a 3-member etcd, a frontend node, three
assignment nodes (16 partitions, each with a leader and two followers) and two worker nodes, each
its own kindlingd. Functions created and invoked through the frontend run on sandboxes of both
workers; the RPC of workers and assignment nodes refuses what it should; killing (-9) the leader of
a function's partition, or a worker, under load costs only retryable errors; `down` leaves nothing
behind. The module shares one cluster; the kill tests run last."""

import base64
import concurrent.futures
import glob
import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

import kindling_harness as h

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER_SH = os.path.join(ROOT, "scripts", "cluster.sh")


def cluster_cmd(*args, timeout=180):
    env = dict(os.environ, KINDLINGD=h.KINDLINGD)
    return subprocess.run(["bash", CLUSTER_SH, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    if subprocess.run(["which", "etcd"], capture_output=True).returncode != 0:
        pytest.skip("etcd not installed (scripts/deps.sh installs etcd-server)")
    d = h.make_private_tmpdir("kindling-cluster-")
    # The suite's shared chunk server already holds the runtime images.
    env = dict(os.environ, KINDLINGD=h.KINDLINGD, KINDLING_CHUNK_SERVER=h.shared_chunk_server().url,
               KINDLING_CLUSTER_ARGS="--idle-timeout 120")
    up = subprocess.run(["bash", CLUSTER_SH, "up", d, "--workers", "2"], capture_output=True, text=True, timeout=240,
                        env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    with open(os.path.join(d, "cluster.json")) as f:
        info = json.load(f)
    info["dir"] = d
    yield info
    down = cluster_cmd("down", d)
    assert down.returncode == 0, down.stdout + down.stderr
    for p in info["nodes"] + info["etcd"]:
        assert not os.path.exists("/proc/%d" % p["pid"]) or _zombie(p["pid"]), p
    assert (" %s/" % d) not in open("/proc/mounts").read()
    for n in info["nodes"]:
        instance = "kindling-" + hashlib.sha256(os.path.realpath(os.path.join(d, n["id"])).encode()).hexdigest()[:10]
        h.wait_for(lambda: not h.processes_in_cgroups_named(instance), 5, what="%s's sandboxes to go" % n["id"])
        assert not glob.glob("/sys/fs/cgroup/*/" + instance), n["id"]
    subprocess.run(["rm", "-rf", d])


def _zombie(pid):
    try:
        return open("/proc/%d/stat" % pid).read().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def node(cluster, node_id):
    return next(n for n in cluster["nodes"] if n["id"] == node_id)


def client_for(cluster):
    keys = h.read_credentials_file(cluster["credentials"])
    return h.boto_client(node(cluster, "frontend-1")["url"], keys=keys)


def worker_state(cluster, worker_id, key=None):
    with open(cluster["cluster_key"]) as f:
        cluster_key = f.read().strip()
    req = urllib.request.Request(node(cluster, worker_id)["url"] + "/kindling/v1/worker/state",
                                 headers={"x-kindling-cluster-key": key if key is not None else cluster_key})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def test_cluster_json_describes_every_process(cluster):
    assert len(cluster["etcd"]) == 3
    assert [n["id"] for n in cluster["nodes"]] == ["frontend-1", "assignment-1", "assignment-2", "assignment-3",
                                                   "worker-1", "worker-2"]
    assert node(cluster, "worker-1")["roles"] == ["worker"]
    assert node(cluster, "assignment-2")["roles"] == ["assignment"]
    assert node(cluster, "frontend-1")["roles"] == ["frontend"]
    for p in cluster["nodes"] + cluster["etcd"]:
        os.kill(p["pid"], 0)
    assert os.path.exists(cluster["credentials"])


def test_invocations_spread_over_both_workers(cluster, packages):
    c = client_for(cluster)
    name = h.unique_name("spread")
    h.create_fn(c, name, packages["python"])
    clients = [client_for(cluster) for _ in range(4)]

    def one(i):
        return h.invoke(clients[i % 4], name, {"action": "sleep", "seconds": 0.5, "i": i})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    for resp, body in results:
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    assert len({body["marker"] for _, body in results}) == 4  # four sandboxes
    per_worker = {w: [s for s in worker_state(cluster, w)["list"] if s["function"] == name]
                  for w in ("worker-1", "worker-2")}
    assert len(per_worker["worker-1"]) == 2 and len(per_worker["worker-2"]) == 2, per_worker
    # Warm: the next calls reuse those sandboxes.
    resp, body = h.invoke(c, name, {"again": 1}, LogType="Tail")
    assert body["event"] == {"again": 1}
    assert body["marker"] in {b["marker"] for _, b in results}
    assert "Init Duration" not in h.decode_log(resp["LogResult"])


def test_the_cli_and_versions_work_through_the_frontend(cluster, packages, tmp_path):
    keys = h.read_credentials_file(cluster["credentials"])
    endpoint = node(cluster, "frontend-1")["url"]
    c = client_for(cluster)
    name = h.unique_name("cli")
    h.create_fn(c, name, packages["node"])
    c.publish_version(FunctionName=name)
    c.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    out = tmp_path / "out.json"
    h.aws(endpoint, "invoke", "--function-name", name, "--qualifier", "live", "--payload", '{"k": 1}',
          "--cli-binary-format", "raw-in-base64-out", str(out), keys=keys)
    body = json.loads(out.read_text())
    assert body["event"] == {"k": 1} and body["runtime"] == "node", body


def test_function_errors_and_timeouts_cross_the_wire(cluster, packages):
    c = client_for(cluster)
    name, noboot = h.unique_name("errs"), h.unique_name("noboot")
    h.create_fn(c, name, packages["python"], Timeout=1)
    resp, body = h.invoke(c, name, {"action": "raise"})
    assert resp["FunctionError"] == "Unhandled" and body["errorType"] == "ValueError", body
    resp, body = h.invoke(c, name, {"action": "hang"})
    assert body["errorType"] == "Sandbox.Timedout", body
    h.create_fn(c, noboot, runtime="provided.al2023", handler="x", zip_bytes=h.make_zip({"README": "x"}))
    resp, body = h.invoke(c, noboot, {})
    assert body["errorType"] == "Runtime.InvalidEntrypoint", body
    resp, body = h.invoke(c, name, {"after": 1})
    assert body["event"] == {"after": 1}


def partition_of(name, partitions=16):
    """FNV-1a 64 of the name, as kindlingd's PartitionOf."""
    h = 14695981039346656037
    for b in name.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h % partitions


def etcd_range(cluster, prefix):
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"key": base64.b64encode(prefix.encode()).decode(),
                       "range_end": base64.b64encode(end.encode()).decode()}).encode()
    for member in cluster["etcd"]:
        try:
            with urllib.request.urlopen(urllib.request.Request(member["url"] + "/v3/kv/range", data=body), timeout=5) as r:
                doc = json.load(r)
            return [(base64.b64decode(kv["key"]).decode(), base64.b64decode(kv.get("value", "")).decode(),
                     int(kv["create_revision"])) for kv in doc.get("kvs", [])]
        except OSError:
            continue
    raise AssertionError("no etcd member answered")


def partition_members(cluster, name):
    """Node ids of the partition of function `name`, leader first."""
    keys = etcd_range(cluster, "/kindling/assignment/partitions/%02d/" % partition_of(name))
    return [k.rsplit("/", 1)[1] for k, _, _ in sorted(keys, key=lambda kv: kv[2])]


def test_every_partition_has_a_leader_and_two_followers_spread_over_the_nodes(cluster):
    def leaders():
        out = {}
        for p in range(16):
            keys = etcd_range(cluster, "/kindling/assignment/partitions/%02d/" % p)
            members = [k.rsplit("/", 1)[1] for k, _, _ in sorted(keys, key=lambda kv: kv[2])]
            assert sorted(members) == ["assignment-1", "assignment-2", "assignment-3"], (p, members)
            out[members[0]] = out.get(members[0], 0) + 1
        return out
    # Leaders hand partitions to followers that lead less than their share (ceil(16 / 3) = 6).
    h.wait_for(lambda: max(leaders().values()) <= 6 and len(leaders()) == 3, 30, interval=0.5,
               what="leadership to spread")


def test_cluster_view_names_leaders_followers_nodes_and_workers(cluster):
    keys = h.read_credentials_file(cluster["credentials"])
    endpoint = node(cluster, "frontend-1")["url"]
    status, _, body = h.raw(endpoint, "GET", "/kindling/cluster?function=my-fn", keys=keys)
    assert status == 200, body
    view = json.loads(body)
    assert len(view["partitions"]) == 16
    for p in view["partitions"]:
        assert sorted([p["leader"]] + p["followers"]) == ["assignment-1", "assignment-2", "assignment-3"], p
    assert sorted(n["id"] for n in view["nodes"]) == sorted(n["id"] for n in cluster["nodes"])
    assert {n["id"]: n["state"] for n in view["nodes"]}["worker-1"] == "alive"
    workers = {w["id"]: w for w in view["workers"]}
    assert sorted(workers) == ["worker-1", "worker-2"]
    assert workers["worker-1"]["url"] == node(cluster, "worker-1")["url"]
    assert workers["worker-1"]["memory_capacity_mb"] > 0
    assert view["function"] == {"name": "my-fn", "partition": partition_of("my-fn")}
    # Signed like any API call.
    status, _, _ = h.raw(endpoint, "GET", "/kindling/cluster", sign=False)
    assert status == 403


def test_assignment_rpc_refuses_strangers_and_garbage(cluster):
    url = node(cluster, "assignment-1")["url"] + "/kindling/v1/assignment/acquire"
    with open(cluster["cluster_key"]) as f:
        key = f.read().strip()
    for headers, body, want in (({}, b'{"partition": 0}', 401),
                                ({"x-kindling-cluster-key": "y" * 40}, b'{"partition": 0}', 401),
                                ({"x-kindling-cluster-key": key}, b"{nope", 400),
                                ({"x-kindling-cluster-key": key}, b'{"partition": -1}', 400),
                                ({"x-kindling-cluster-key": key}, b'{"partition": 0, "function": "x"}', (400, 409))):
        req = urllib.request.Request(url, data=body, method="POST", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == want or e.value.code in (want if isinstance(want, tuple) else ()), (body, e.value.code)


def test_worker_rpc_refuses_strangers_and_garbage(cluster):
    with pytest.raises(urllib.error.HTTPError) as e:
        worker_state(cluster, "worker-1", key="x" * 48)
    assert e.value.code == 401
    with open(cluster["cluster_key"]) as f:
        key = f.read().strip()
    url = node(cluster, "worker-1")["url"]
    for path, body in (("/kindling/v1/worker/sandboxes", b"{garbage"),
                       ("/kindling/v1/worker/sandboxes/zz%2F..%2F/invoke", b"{}"),
                       ("/kindling/v1/worker/sandboxes/abc/invoke", b"{}")):
        req = urllib.request.Request(url + path, data=body, method="POST", headers={"x-kindling-cluster-key": key})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code in (400, 404), (path, e.value.code)
    # A lease the worker never issued for a real sandbox.
    sandboxes = worker_state(cluster, "worker-1")["list"]
    if sandboxes:
        req = urllib.request.Request(url + "/kindling/v1/worker/sandboxes/%s/invoke" % sandboxes[0]["id"], data=b"{}",
                                     method="POST", headers={"x-kindling-cluster-key": key,
                                                             "x-kindling-lease": "12345:999999",
                                                             "x-kindling-request-id": "r"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 409
    assert "list" in worker_state(cluster, "worker-1")  # still serving


def _load(clients, name, seconds, event):
    """Invokes from every client in a loop for `seconds`; returns [(start, end, outcome)]."""
    stop = time.monotonic() + seconds

    def loop(c):
        mine = []
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                resp, body = h.invoke(c, name, {"action": "sleep", "seconds": 0.05})
                ok = resp["StatusCode"] == 200 and "FunctionError" not in resp
                mine.append((t0, time.monotonic(), "ok" if ok else "function-error"))
            except ClientError as e:
                status = e.response["ResponseMetadata"]["HTTPStatusCode"]
                mine.append((t0, time.monotonic(), "retryable" if status >= 500 or status == 429 else "error %d" % status))
        return mine

    with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(loop, c) for c in clients]
        event()
        return [o for f in futures for o in f.result()]


def test_killing_the_leader_of_a_partition_under_load(cluster, packages):
    c = client_for(cluster)
    name = h.unique_name("failover")
    h.create_fn(c, name, packages["python"])
    h.invoke(c, name, {})
    leader = partition_members(cluster, name)[0]
    victim = node(cluster, leader)
    clients = [client_for(cluster) for _ in range(8)]
    killed = {}

    def kill_after_two_seconds():
        time.sleep(2)
        killed["at"] = time.monotonic()
        os.kill(victim["pid"], signal.SIGKILL)

    outcomes = _load(clients, name, 9, kill_after_two_seconds)
    kinds = [o for _, _, o in outcomes]
    assert "function-error" not in kinds and not any(k.startswith("error") for k in kinds), kinds
    assert kinds.count("ok") >= 0.99 * len(kinds), (kinds.count("ok"), len(kinds))
    served = [end for start, end, o in outcomes if o == "ok" and start >= killed["at"]]
    assert served, "nothing served after the kill"
    failover = min(served) - killed["at"]
    print("failover: first invoke routed by the new leader %.0f ms after the kill" % (failover * 1000))
    assert failover < 4.0, failover
    new_leader = partition_members(cluster, name)[0]
    assert new_leader != leader
    log = open(os.path.join(cluster["dir"], new_leader + ".log")).read()
    assert "leads partition %d (took over" % partition_of(name) in log


def test_killing_a_worker_under_load_costs_only_retryable_errors(cluster, packages):
    c = client_for(cluster)
    name = h.unique_name("survivor")
    h.create_fn(c, name, packages["python"])
    clients = [client_for(cluster) for _ in range(4)]
    stop = time.monotonic() + 8
    victim = node(cluster, "worker-2")
    outcomes = []

    def loop(i):
        mine = []
        while time.monotonic() < stop:
            try:
                resp, body = h.invoke(clients[i], name, {"action": "sleep", "seconds": 0.05})
                mine.append("ok" if resp["StatusCode"] == 200 and "FunctionError" not in resp else "function-error")
            except ClientError as e:
                status = e.response["ResponseMetadata"]["HTTPStatusCode"]
                mine.append("retryable" if status >= 500 or status == 429 else "error %d" % status)
        return mine

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(loop, i) for i in range(4)]
        time.sleep(2)
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        for f in futures:
            outcomes += f.result()
    assert "function-error" not in outcomes and not any(o.startswith("error") for o in outcomes), outcomes
    ok = outcomes.count("ok")
    assert ok >= 0.9 * len(outcomes), outcomes
    # After the lease expired (2 s), everything runs on worker-1; worker-2's sandboxes are forgotten.
    time.sleep(max(0, killed_at + 3 - time.monotonic()))
    for _ in range(10):
        resp, body = h.invoke(c, name, {"x": 1})
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    log = open(os.path.join(cluster["dir"], "frontend-1.log")).read()
    assert "worker worker-2 left the fleet" in log
    h.detach_mounts_below(os.path.join(cluster["dir"], "worker-2"))
