"""Images end to end: sandboxes run on runtime and code images (erofs, from chunks, loaded lazily
through the worker's cache), starts are recorded and later starts prefetch the recording, and a
chunk server that is down, a corrupt chunk or a hostile image gives a clear error, never a hung
sandbox or a dead daemon.

Each test runs its own kindling-chunkd, so that its images and faults are its own."""

import glob
import json
import os
import subprocess
import time

import pytest

import kindling_harness as h
from kindling_harness import create_fn, invoke

ROOT_PROBE = (
    "import os\n"
    "def handler(event, context):\n"
    "    mounts = {}\n"
    "    with open('/proc/self/mountinfo') as f:\n"
    "        for line in f:\n"
    "            parts = line.split()\n"
    "            mounts[parts[4]] = parts[parts.index('-') + 1]\n"
    "    return {'mounts': mounts,\n"
    "            'exists': {p: os.path.exists(p) for p in event['paths']},\n"
    "            'task_writable': os.access('/var/task', os.W_OK),\n"
    "            'usr_writable': os.access('/usr/bin', os.W_OK)}\n")


@pytest.fixture
def chunkd():
    server = h.ChunkServer()
    yield server
    server.stop()


def images_cli(chunkd, *args):
    out = subprocess.run([h.KINDLING_IMAGES, "--chunkd", chunkd.url] + list(args),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def image_names(chunkd):
    status, _, body = h.raw(chunkd.url, "GET", "/v1/images", sign=False)
    assert status == 200
    return {i["name"]: i for i in json.loads(body)["images"]}


def laid_out(chunkd, name):
    """True once the image stored under name has a start layout (the magic of its first chunk)."""
    status, _, manifest = h.raw(chunkd.url, "GET", "/v1/images/" + name, sign=False)
    first = json.loads(manifest)["chunks"][0][0]
    status, _, data = h.raw(chunkd.url, "GET", "/v1/chunks/" + first, sign=False)
    return status == 200 and data.startswith(b"KINDLING-LAYOUT1")


def start_daemon(new_daemon, chunkd, *extra):
    return new_daemon(extra_args=["--chunk-server", chunkd.url] + list(extra))


def restart_with_cold_cache(d):
    """Stops the daemon and drops its worker's chunk cache: the next start is a cold worker."""
    d.stop(check=True)
    for path in glob.glob(os.path.join(d.data_dir, "cache", "*")):
        subprocess.run(["rm", "-rf", path], check=True)
    d.start()
    return h.boto_client(d.endpoint)


def test_sandbox_root_and_task_are_read_only_images(new_daemon, chunkd):
    d = start_daemon(new_daemon, chunkd)
    client = h.boto_client(d.endpoint)
    name = h.unique_name("img-root")
    create_fn(client, name, runtime="python3.12", handler="probe.handler",
              zip_bytes=h.make_zip({"probe.py": ROOT_PROBE}))
    resp, body = invoke(client, name, {"paths": ["/usr/bin/python3", "/var/runtime/bootstrap.py",
                                                  "/var/task/probe.py", "/usr/bin/cc", "/usr/bin/cmake",
                                                  "/usr/bin/aws", "/etc/shadow"]})
    assert "FunctionError" not in resp, body
    assert body["mounts"]["/usr"] == "erofs" and body["mounts"]["/var/task"] == "erofs", body["mounts"]
    assert body["exists"]["/usr/bin/python3"] and body["exists"]["/var/runtime/bootstrap.py"]
    assert body["exists"]["/var/task/probe.py"]
    # Host tools outside the python image's packages are not there.
    for host_only in ("/usr/bin/cc", "/usr/bin/cmake", "/usr/bin/aws", "/etc/shadow"):
        assert os.path.exists(host_only) or host_only == "/etc/shadow"
        assert not body["exists"][host_only], host_only
    assert not body["task_writable"] and not body["usr_writable"]
    names = image_names(chunkd)
    assert any(n.startswith("runtime/python/") for n in names), names
    assert any(n.startswith("code/") for n in names), names


def test_every_family_runs_on_its_image(new_daemon, chunkd, packages):
    d = start_daemon(new_daemon, chunkd)
    client = h.boto_client(d.endpoint)
    for family in ("python", "node", "provided"):
        name = h.unique_name("img-" + family)
        create_fn(client, name, packages[family])
        resp, body = invoke(client, name, {})
        assert "FunctionError" not in resp, (family, body)
    names = image_names(chunkd)
    for family in ("python", "node", "provided"):
        assert any(n.startswith("runtime/%s/" % family) for n in names), names


def test_identical_code_is_stored_once(new_daemon, chunkd, packages):
    d = start_daemon(new_daemon, chunkd)
    client = h.boto_client(d.endpoint)
    a, b = h.unique_name("img-a"), h.unique_name("img-b")
    create_fn(client, a, packages["python"])
    create_fn(client, b, packages["python"])
    sha = client.get_function(FunctionName=a)["Configuration"]["CodeSha256"]
    assert client.get_function(FunctionName=b)["Configuration"]["CodeSha256"] == sha
    code_images = [n for n in image_names(chunkd) if n.startswith("code/")]
    assert len(code_images) == 1, code_images


def test_cold_worker_reads_part_of_the_image_and_prefetch_follows_the_recording(new_daemon, chunkd, packages):
    d = start_daemon(new_daemon, chunkd)
    client = h.boto_client(d.endpoint)
    name = h.unique_name("img-rec")
    create_fn(client, name, packages["python"])
    resp, body = invoke(client, name, {})
    assert "FunctionError" not in resp, body
    runtime = [n for n in image_names(chunkd) if n.startswith("runtime/python/")][0]
    size = image_names(chunkd)[runtime]["size"]
    m = d.metrics()
    fetched = m.get("kindling_chunk_cache_bytes_fetched_total", 0)
    assert 0 < fetched < size, (fetched, size)  # lazy: not the whole runtime image
    # The start was recorded (written when the first invoke is over).
    h.wait_for(lambda: "read at start" in images_cli(chunkd, "info", runtime) and
               "no start recorded" not in images_cli(chunkd, "info", runtime), 10, what="a start recording")
    assert d.metrics().get("kindling_image_recordings_written_total", 0) >= 1

    # The recorded start lays the runtime image out: the blocks it read first, in order.
    h.wait_for(lambda: laid_out(chunkd, runtime), 120, interval=0.5, what="the start layout of " + runtime)
    size = image_names(chunkd)[runtime]["size"]

    # A cold worker prefetches what the recording names, then starts from its cache, reading a
    # small part of the image.
    client = restart_with_cold_cache(d)
    resp, body = invoke(client, name, {})
    assert "FunctionError" not in resp, body
    m = d.metrics()
    assert m.get("kindling_image_prefetched_chunks_total", 0) > 0, m
    fetched = m.get("kindling_chunk_cache_bytes_fetched_total", 0)
    assert 0 < fetched < 0.2 * size, (fetched, size)


def test_chunk_server_down_gives_a_clear_error_and_the_daemon_stays_up(new_daemon, packages):
    server = h.ChunkServer()
    d = start_daemon(new_daemon, server)
    client = h.boto_client(d.endpoint)
    name = h.unique_name("img-down")
    create_fn(client, name, packages["python"])
    d.stop(check=True)
    server.stop()
    subprocess.run(["rm", "-rf", os.path.join(d.data_dir, "cache")], check=True)
    d.start()
    client = h.boto_client(d.endpoint)
    t0 = time.monotonic()
    with pytest.raises(client.exceptions.ServiceException) as err:
        invoke(client, name, {})
    assert time.monotonic() - t0 < 60
    assert "chunk server" in str(err.value), err.value
    assert d.alive()
    # Still serving the API.
    assert client.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def corrupt_chunk_file(chunkd, digest):
    path = os.path.join(chunkd.base, "data", "chunks", digest[:2], digest)
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        for i in range(len(data) - 64, len(data)):
            data[i] ^= 0xFF
        f.seek(0)
        f.write(bytes(data))


def chunkd_metrics(chunkd):
    status, _, text = h.raw(chunkd.url, "GET", "/metrics", sign=False)
    assert status == 200
    return h.parse_metrics(text.decode())


def test_corrupt_chunk_is_never_served(new_daemon, chunkd, packages):
    d = start_daemon(new_daemon, chunkd)
    client = h.boto_client(d.endpoint)
    name = h.unique_name("img-corrupt")
    create_fn(client, name, packages["python"])
    resp, body = invoke(client, name, {})  # the runtime image exists once a start used it
    assert "FunctionError" not in resp, body
    names = image_names(chunkd)
    code = [n for n in names if n.startswith("code/")][0]
    runtime = [n for n in names if n.startswith("runtime/python/")][0]

    # A corrupt code chunk: the server drops its copy instead of serving it, and the worker
    # publishes the code image again from the stored package; the start succeeds.
    status, _, manifest = h.raw(chunkd.url, "GET", "/v1/images/" + code, sign=False)
    assert status == 200
    corrupt_chunk_file(chunkd, json.loads(manifest)["chunks"][0][0])
    client = restart_with_cold_cache(d)
    resp, body = invoke(client, name, {})
    assert "FunctionError" not in resp, body
    assert chunkd_metrics(chunkd)["kindling_chunkd_chunk_corrupt_total"] >= 1

    # A corrupt runtime chunk (the superblock, read before any start): a clear error.
    status, _, manifest = h.raw(chunkd.url, "GET", "/v1/images/" + runtime, sign=False)
    corrupt_chunk_file(chunkd, json.loads(manifest)["chunks"][0][0])
    client = restart_with_cold_cache(d)
    t0 = time.monotonic()
    with pytest.raises(client.exceptions.ServiceException) as err:
        invoke(client, name, {})
    assert time.monotonic() - t0 < 60
    text = str(err.value).lower()
    assert "image runtime/python/" in text and ("corrupt" in text or "not found" in text), err.value
    assert chunkd_metrics(chunkd)["kindling_chunkd_chunk_corrupt_total"] >= 2
    assert d.alive()


def test_hostile_image_is_rejected(new_daemon, chunkd, packages):
    d = start_daemon(new_daemon, chunkd)
    client = h.boto_client(d.endpoint)
    name = h.unique_name("img-hostile")
    create_fn(client, name, packages["python"])
    code = [n for n in image_names(chunkd) if n.startswith("code/")][0]
    # Replace the code image with one chunk of garbage that is no erofs file system.
    garbage = os.urandom(8192)
    import hashlib
    digest = hashlib.sha256(garbage).hexdigest()
    assert h.raw(chunkd.url, "PUT", "/v1/chunks/" + digest, garbage, sign=False)[0] == 200
    hostile = {"version": 1, "chunk_size": 524288, "size": len(garbage), "chunks": [[digest, len(garbage)]]}
    assert h.raw(chunkd.url, "PUT", "/v1/images/" + code, json.dumps(hostile).encode(), sign=False)[0] == 200
    client = restart_with_cold_cache(d)
    with pytest.raises(client.exceptions.ServiceException) as err:
        invoke(client, name, {})
    assert "erofs" in str(err.value), err.value
    assert d.alive()


def test_images_off_runs_on_the_hosts_usr(new_daemon, packages):
    """--images off (hosts without FUSE): sandboxes bind the host's /usr, code is a plain directory."""
    d = new_daemon(extra_args=["--images", "off"])
    client = h.boto_client(d.endpoint)
    name = h.unique_name("img-off")
    create_fn(client, name, runtime="python3.12", handler="probe.handler",
              zip_bytes=h.make_zip({"probe.py": ROOT_PROBE}))
    resp, body = invoke(client, name, {"paths": ["/usr/bin/python3", "/var/task/probe.py"]})
    assert "FunctionError" not in resp, body
    assert body["exists"]["/usr/bin/python3"] and body["exists"]["/var/task/probe.py"]
    assert "erofs" not in (body["mounts"].get("/usr"), body["mounts"].get("/var/task"))
    assert "kindling_image_mounts_total" not in d.metrics()


def test_embedded_chunk_server(new_daemon, packages):
    """kindlingd's default: a chunk server inside it, with its store under the data dir."""
    d = new_daemon(extra_args=["--chunk-listen", "127.0.0.1:0"])
    client = h.boto_client(d.endpoint)
    name = h.unique_name("img-embedded")
    create_fn(client, name, packages["provided"])
    resp, body = invoke(client, name, {})
    assert "FunctionError" not in resp, body
    assert glob.glob(os.path.join(d.data_dir, "chunkd", "chunks", "*", "*"))
    assert "images from chunk server http://127.0.0.1:" in d.log()
