"""Isolation, tested from inside real sandboxes: a python function probes what it can read, write,
signal, mount and connect to, and reports; the test checks the report against what a jail must
allow. Host-side checks look at the same sandboxes from outside (uids, cgroups, listeners)."""

import errno
import json
import os
import re
import socket
import subprocess
import urllib.request
import uuid

import pytest

import kindling_harness as h
from kindling_harness import create_fn, invoke

DENIED = ("errno:EROFS", "errno:EACCES", "errno:EPERM", "errno:ENOENT")


def host_addresses():
    """Non-loopback IPv4/IPv6 addresses of this host (none if `ip` is missing)."""
    try:
        out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    addrs = []
    for m in re.finditer(r"\binet6? ([0-9a-f.:]+)/\d+ scope global", out):
        addrs.append(m.group(1))
    return addrs


@pytest.fixture(scope="module")
def probe(client, packages):
    name = h.unique_name("probe")
    create_fn(client, name, packages["python"], Timeout=20)
    return name


@pytest.fixture(scope="module")
def report(client, daemon, probe):
    resp, body = invoke(client, probe, {"action": "security", "data_dir": daemon.data_dir,
                                        "daemon_pid": daemon.pid})
    assert "FunctionError" not in resp, body
    return body


def test_identity_and_privileges(report, daemon):
    uid, euid, gid, egid, groups = report["uid"]
    assert (uid, euid, gid, egid) == (993, 993, 993, 993) and groups == []
    st = report["status"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[cap], 16) == 0, (cap, st)
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
    assert not report["setuid0"]["ok"] and not report["chroot"]["ok"]
    # Seen from the host: every sandbox process runs as an unprivileged host uid, never root.
    for pid, _ in h.descendants(daemon.pid):
        with open("/proc/%d/status" % pid) as f:
            ids = {line.split(":")[0]: line.split()[1:] for line in f if line.startswith(("Uid:", "Gid:"))}
        assert all(int(x) >= 1000 for x in ids["Uid"] + ids["Gid"]), (pid, ids)


def test_host_files_are_out_of_reach(report):
    assert not report["read_shadow"]["ok"], report["read_shadow"]
    lr = report["list_root"]
    assert (not lr["ok"]) or lr["value"] == [], lr
    for key in ("read_data_db", "list_data_dir", "list_code_root"):
        assert not report[key]["ok"], (key, report[key])


def test_own_pid_namespace(report, daemon):
    pids = report["proc_pids"]
    assert 1 in pids and len(pids) <= 8, pids
    assert not report["host_pid_visible"] or daemon.pid <= 8  # a small pid may exist inside
    cmdlines = " | ".join(report["proc_cmdlines"].values())
    assert "kindlingd" not in cmdlines and "pytest" not in cmdlines, cmdlines
    assert "init" in report["proc_cmdlines"]["1"], report["proc_cmdlines"]
    # PID 1's environment is the sandbox's, not the host's or the daemon's.
    env1 = report["proc1_environ"].get("value", "")
    assert h.CANARY not in env1 and "KINDLING_E2E_CANARY" not in env1


def test_environment_is_the_functions_own(report):
    env = report["environ"]
    assert "KINDLING_E2E_CANARY" not in env and h.CANARY not in json.dumps(env)
    assert env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001" and env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "PYTEST_CURRENT_TEST" not in env


def test_filesystem_is_read_only_except_tmp(report):
    for d in ("/", "/var/task", "/usr", "/etc", "/var/runtime", "/var/rapid"):
        r = report["write " + d]
        assert not r["ok"] and r["error"] in DENIED, (d, r)
    assert report["write /tmp"] == {"ok": True, "value": "written"}
    assert not report["write /proc/sys/kernel/hostname"]["ok"]


def test_no_mounts_or_namespaces(report):
    for key in ("mount", "umount /var/task", "unshare CLONE_NEWUSER", "unshare CLONE_NEWNS", "unshare CLONE_NEWNET"):
        r = report[key]
        assert not r["ok"] and r["error"] in ("errno:EPERM", "errno:EACCES", "errno:ENOSYS", "errno:EINVAL"), (key, r)


def test_network_is_loopback_only(client, daemon, probe, report):
    assert report["interfaces"] == ["lo"], report["interfaces"]
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("::", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        targets = [["127.0.0.1", daemon.port], ["127.0.0.1", port], ["::1", port]]
        targets += [[a, port] for a in host_addresses()]
        resp, body = invoke(client, probe, {"action": "connect", "targets": targets})
        assert "FunctionError" not in resp, body
        for target, result in body["results"].items():
            assert not result["ok"], (target, result)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            conn, peer = listener.accept()
            conn.close()
            raise AssertionError("a sandbox connected to the host listener from %s" % (peer,))
    finally:
        listener.close()
    # The function's own Runtime API (kindling-init) is reachable: that is its loopback.
    resp, body = invoke(client, probe, {"action": "connect", "targets": [["127.0.0.1", 9001]]})
    assert body["results"]["127.0.0.1:9001"]["ok"], body


def test_tmp_is_private_to_each_sandbox(client, packages, daemon):
    writer, reader = h.unique_name("tmp-writer"), h.unique_name("tmp-reader")
    create_fn(client, writer, packages["python"])
    create_fn(client, reader, packages["python"])
    marker = "marker-" + uuid.uuid4().hex
    wrote = invoke(client, writer, {"action": "tmpwrite", "name": marker})[1]
    assert marker in wrote["tmp"]
    # The same (warm) sandbox keeps its /tmp, as on AWS.
    again = invoke(client, writer, {"action": "tmplist"})[1]
    assert again["marker"] == wrote["marker"] and marker in again["tmp"]
    # Another function's sandbox does not see it.
    assert marker not in invoke(client, reader, {"action": "tmplist"})[1]["tmp"]
    # Nor does a new sandbox of the same function, after the old one is retired.
    client.update_function_configuration(FunctionName=writer, Description="retire the old sandbox")
    fresh = invoke(client, writer, {"action": "tmplist"})[1]
    assert fresh["marker"] != wrote["marker"] and marker not in fresh["tmp"], fresh
    # And nothing of it leaked onto the host's /tmp.
    assert not os.path.exists("/tmp/" + marker)


def test_signals_cannot_reach_the_daemon_or_other_sandboxes(client, packages, daemon, probe):
    victim = h.unique_name("victim")
    create_fn(client, victim, packages["python"])
    v1 = invoke(client, victim, {})[1]
    daemon.remember_children()
    resp, body = invoke(client, probe, {"action": "kill", "daemon_pid": daemon.pid})
    assert "FunctionError" not in resp, body
    kd = body["kill_daemon"]
    assert not kd["ok"] and kd["error"] == "errno:ESRCH" or daemon.pid <= 8, body
    assert daemon.alive(), daemon.log()
    # The other sandbox is untouched (same runtime process, count goes on) ...
    v2 = invoke(client, victim, {})[1]
    assert v2["marker"] == v1["marker"] and v2["count"] == v1["count"] + 1
    # ... and so is the prober's own kindling-init (PID 1 ignores SIGKILL from inside).
    resp, body = invoke(client, probe, {})
    assert "FunctionError" not in resp, body


def test_sandbox_processes_live_in_their_cgroups(daemon, client, probe):
    invoke(client, probe, {})
    kids = h.descendants(daemon.pid)
    assert kids, "no sandbox processes under kindlingd"
    inside = set(h.processes_in_cgroups_named(daemon.instance))
    assert {pid for pid, _ in kids} <= inside, (kids, inside)
    for sid in daemon.sandbox_ids():
        with open("/sys/fs/cgroup/pids/%s/%s/pids.max" % (daemon.instance, sid)) as f:
            assert f.read().strip() == "1024"
        with open("/sys/fs/cgroup/memory/%s/%s/memory.limit_in_bytes" % (daemon.instance, sid)) as f:
            assert int(f.read()) == 128 << 20  # every function here has MemorySize 128


def test_no_devices_or_kernel_interfaces(report):
    assert set(report["dev"]) <= {"fd", "full", "null", "random", "shm", "stderr", "stdin", "stdout", "tty",
                                  "urandom", "zero", "pts", "ptmx", "console"}, report["dev"]
    for key in ("open /dev/kmsg", "open /proc/kcore", "open /dev/mem", "open /dev/kvm", "open /dev/fuse",
                "open /dev/userfaultfd", "open /dev/vda", "open /sys/fs/cgroup", "sysrq"):
        assert not report[key]["ok"], (key, report[key])


def test_no_reaching_into_kindling_init(report):
    # kindling-init (PID 1) holds the control socket to kindlingd: the function must not get at it.
    for key in ("ptrace attach 1", "pidfd_getfd init control socket", "process_vm_readv 1"):
        r = report[key]
        assert not r["ok"] and r["error"] in ("errno:EPERM", "errno:EACCES", "errno:ENOSYS", "no pidfd"), (key, r)
    for key in ("bpf", "perf_event_open", "kexec_load"):
        assert not report[key]["ok"], (key, report[key])


# Regression: metadata.db and its -wal were 0644 in the 0711 data dir: any local user could read
# function environment variables by path.
def test_function_secrets_are_not_readable_by_other_local_users(client, packages, daemon):
    secret = "kindling-secret-" + uuid.uuid4().hex
    name = h.unique_name("secret")
    create_fn(client, name, packages["python"], Environment={"Variables": {"API_TOKEN": secret}})
    invoke(client, name, {"say": secret})
    leaked = []
    for root, _, files in os.walk(daemon.data_dir):
        for f in files:
            path = os.path.join(root, f)
            p = subprocess.run(["/usr/bin/python3", "-c",
                                "import sys\ntry:\n    d = open(sys.argv[1], 'rb').read()\nexcept OSError:\n    sys.exit(3)\n"
                                "sys.exit(0 if sys.argv[2].encode() in d else 1)", path, secret],
                               user=65534, group=65534, extra_groups=[], capture_output=True, timeout=30)
            if p.returncode == 0:
                leaked.append(path)
    assert not leaked, "readable by uid 65534: %s" % leaked


# ------------------------------------------------------------------------------------------------
# Per-function isolation of data: code, logs, environment variables, /tmp (and the other places a
# process can leave bytes: /dev/shm, System V shared memory, abstract unix sockets, /proc) of one
# function are never visible to another, nor through the other's API calls.


def _host_paths_of(daemon, name, pids):
    """Host paths that hold function `name`'s data, for another function to try (all must fail)."""
    paths = [os.path.join(daemon.data_dir, "code"), os.path.join(daemon.data_dir, "logs"),
             os.path.join(daemon.data_dir, "logs", name + ".log"), os.path.join(daemon.data_dir, "jail"),
             os.path.join(daemon.data_dir, "metadata.db"), daemon.data_dir]
    for entry in os.listdir(os.path.join(daemon.data_dir, "code")):
        paths.append(os.path.join(daemon.data_dir, "code", entry))
    for pid in pids:  # the host's pids of the other sandbox's processes
        paths += ["/proc/%d/root/tmp" % pid, "/proc/%d/root/var/task" % pid, "/proc/%d/environ" % pid]
    return paths


def _sandbox_pids(daemon, sandbox_ids):
    """Host pids of the processes in the given sandboxes' cgroups."""
    out = []
    for sid in sandbox_ids:
        for pid in h.processes_in_cgroups_named(sid):
            out.append(pid)
    return sorted(set(out))


def test_functions_cannot_see_each_others_data(client, packages, daemon):
    secret_a = "secret-a-" + uuid.uuid4().hex
    code_secret_b = "code-b-" + uuid.uuid4().hex
    a, b = h.unique_name("iso-a"), h.unique_name("iso-b")
    shm_key = 0x4B00 + (uuid.uuid4().int & 0xFF)
    before = set(daemon.sandbox_ids())
    create_fn(client, a, packages["python"], Environment={"Variables": {"A_SECRET": secret_a}})
    resp, planted = invoke(client, a, {"action": "plant", "secret": secret_a, "shm_key": shm_key}, LogType="Tail")
    assert "FunctionError" not in resp and planted["secret_in_env"] and planted["shm"] >= 0, planted
    assert secret_a in h.decode_log(resp["LogResult"])  # A's own tail has A's output
    a_sandboxes = set(daemon.sandbox_ids()) - before
    a_pids = _sandbox_pids(daemon, a_sandboxes)
    assert a_pids, "A's sandbox processes not found"

    # B's code holds a secret of its own; A is warm (its /tmp, shm segment and socket are live).
    create_fn(client, b, packages["python"], zip_bytes=h.python_zip(extra={"b-secret.txt": code_secret_b}),
              Environment={"Variables": {"B_ONLY": "b"}})
    resp, got = invoke(client, b, {"action": "hunt", "secret": secret_a, "shm_keys": [shm_key],
                                   "paths": _host_paths_of(daemon, a, a_pids)}, LogType="Tail")
    assert "FunctionError" not in resp, got
    assert got["found"] == [], got["found"]
    reachable = {p: r for p, r in got["paths"].items() if r["ok"]}
    assert not reachable, reachable
    assert secret_a not in h.decode_log(resp["LogResult"])
    # And the other way round: A cannot find B's code (its /var/task is its own).
    resp, got = invoke(client, a, {"action": "hunt", "secret": code_secret_b,
                                   "paths": _host_paths_of(daemon, b, [])})
    assert got["found"] == [] and not any(r["ok"] for r in got["paths"].values()), got
    # A itself still has everything it planted (the hunt would have found it: the probe works).
    resp, own = invoke(client, a, {"action": "hunt", "secret": secret_a, "shm_keys": [shm_key]})
    assert own["marker"] == planted["marker"]
    assert {"/tmp/planted-" + secret_a, "/dev/shm/planted-" + secret_a, "environment",
            "sysv shm key %d" % shm_key, "abstract socket kindling-" + secret_a} <= set(own["found"]), own["found"]

    # Through B's API calls: B's configuration, code location and tail never carry A's data.
    for call in (lambda: client.get_function(FunctionName=b), lambda: client.get_function_configuration(FunctionName=b),
                 lambda: client.list_versions_by_function(FunctionName=b)):
        doc = json.dumps(call(), default=str)
        assert secret_a not in doc and "A_SECRET" not in doc, doc
    got_b = client.get_function_configuration(FunctionName=b)
    assert got_b["Environment"]["Variables"] == {"B_ONLY": "b"}
    got_a = client.get_function_configuration(FunctionName=a)
    assert got_a["Environment"]["Variables"] == {"A_SECRET": secret_a}
    with urllib.request.urlopen(client.get_function(FunctionName=b)["Code"]["Location"], timeout=30) as r:
        b_zip = r.read()
    assert code_secret_b.encode() in b_zip or b"b-secret.txt" in b_zip
    with urllib.request.urlopen(client.get_function(FunctionName=a)["Code"]["Location"], timeout=30) as r:
        assert b"b-secret.txt" not in r.read()


def test_concurrent_tails_carry_only_their_own_function(client, packages, daemon):
    """Two functions log at the same time; each LogType=Tail holds only its own lines."""
    names = [h.unique_name("tail-%d" % i) for i in range(2)]
    for n in names:
        create_fn(client, n, packages["python"])
    clients = {n: h.boto_client(daemon.endpoint) for n in names}
    results, errors = {n: [] for n in names}, []

    def run(n):
        try:
            for i in range(6):
                resp, _ = invoke(clients[n], n, {"say": "%s-line-%d" % (n, i)}, LogType="Tail")
                results[n].append(h.decode_log(resp["LogResult"]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    import threading
    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    for n in names:
        other = [m for m in names if m != n][0]
        assert len(results[n]) == 6
        for i, tail in enumerate(results[n]):
            assert "%s-line-%d" % (n, i) in tail, tail
            assert other not in tail, (n, tail)


def test_recreated_function_gets_nothing_of_its_predecessor(client, packages, daemon):
    """A function deleted and created again under the same name starts from scratch: no warm
    sandbox, /tmp, environment or log tail of the old one."""
    name = h.unique_name("reborn")
    secret = "old-life-" + uuid.uuid4().hex
    shm_key = 0x4C00 + (uuid.uuid4().int & 0xFF)
    create_fn(client, name, packages["python"], Environment={"Variables": {"OLD_SECRET": secret}})
    _, planted = invoke(client, name, {"action": "plant", "secret": secret, "shm_key": shm_key})
    client.delete_function(FunctionName=name)
    create_fn(client, name, packages["python"])
    resp, got = invoke(client, name, {"action": "hunt", "secret": secret, "shm_keys": [shm_key]}, LogType="Tail")
    assert "FunctionError" not in resp, got
    assert got["marker"] != planted["marker"], "the old function's sandbox served the new one"
    assert got["found"] == [], got["found"]
    assert secret not in h.decode_log(resp["LogResult"])
    assert "Environment" not in client.get_function_configuration(FunctionName=name) or \
        "OLD_SECRET" not in json.dumps(client.get_function_configuration(FunctionName=name))
