"""The AWS CLI v2 against kindlingd: the whole function lifecycle for each runtime family
(python3.12, nodejs20.x, provided.al2023 with a C bootstrap), and ListFunctions paging."""

import base64
import hashlib
import json
import re
import urllib.request

import pytest

import kindling_harness as h
from kindling_harness import aws

FAMILIES = ["python", "node", "provided"]


def cli_invoke(daemon, tmp_path, name, event, log_type="Tail"):
    out = tmp_path / ("out-%s.json" % h.uuid.uuid4().hex[:6])
    meta = aws(daemon.endpoint, "invoke", "--function-name", name, "--cli-binary-format",
               "raw-in-base64-out", "--payload", json.dumps(event), "--log-type", log_type, str(out),
               cwd=str(tmp_path))
    return meta, json.loads(out.read_bytes())


def check_log(log, family, memory, cold):
    """START / END / REPORT lines as AWS writes them, for one request id; returns the id."""
    m = re.search(r"^START RequestId: ([0-9a-f-]{36}) Version: \$LATEST$", log, re.M)
    assert m, log
    rid = m.group(1)
    assert re.search(r"^END RequestId: %s$" % rid, log, re.M), log
    report = re.search(r"^REPORT RequestId: %s\t(.*)$" % rid, log, re.M)
    assert report, log
    fields = report.group(1)
    assert re.search(r"Duration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: %d MB\tMax Memory Used: \d+ MB" % memory, fields), fields
    assert ("Init Duration: " in fields) == cold, fields
    assert log.index("START") < log.index("handler says:") < log.index("END RequestId"), log
    return rid


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_function_lifecycle(family, daemon, packages, tmp_path):
    pkg = packages[family]
    name = h.unique_name("cli-" + family)
    ep = daemon.endpoint
    (tmp_path / "v1.zip").write_bytes(pkg.v1)
    (tmp_path / "v2.zip").write_bytes(pkg.v2)
    sha_v1 = base64.b64encode(hashlib.sha256(pkg.v1).digest()).decode()
    sha_v2 = base64.b64encode(hashlib.sha256(pkg.v2).digest()).decode()

    created = aws(ep, "create-function", "--function-name", name, "--runtime", pkg.runtime,
                  "--handler", pkg.handler, "--zip-file", "fileb://v1.zip", "--role", h.ROLE,
                  "--memory-size", "128", "--timeout", "5",
                  "--environment", "Variables={FOO=one}", "--description", "e2e " + family,
                  cwd=str(tmp_path))
    assert created["FunctionName"] == name
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:" + name
    assert created["Runtime"] == pkg.runtime and created["Handler"] == pkg.handler
    assert created["CodeSha256"] == sha_v1 and created["CodeSize"] == len(pkg.v1)
    assert created["MemorySize"] == 128 and created["Timeout"] == 5
    assert created["Environment"] == {"Variables": {"FOO": "one"}}
    assert created["Version"] == "$LATEST" and created["State"] == "Active"
    assert created["Description"] == "e2e " + family

    # Invoke with the log tail: START/END/REPORT and the function's own output.
    meta, body = cli_invoke(daemon, tmp_path, name, {"say": "hello-" + family, "n": 1})
    assert meta["StatusCode"] == 200 and "FunctionError" not in meta, meta
    assert meta["ExecutedVersion"] == "$LATEST"
    log = h.decode_log(meta["LogResult"])
    assert "handler says: hello-" + family in log, log
    rid = check_log(log, family, 128, cold=True)
    assert body["event"] == {"say": "hello-" + family, "n": 1}
    assert body["tag"].endswith("-v1") and body["foo"] == "one" and body["memory_env"] == "128"
    assert body["request_id"] == rid

    # A second invoke is warm: no Init Duration.
    meta, body = cli_invoke(daemon, tmp_path, name, {"say": "again"})
    check_log(h.decode_log(meta["LogResult"]), family, 128, cold=False)

    got = aws(ep, "get-function", "--function-name", name)
    assert got["Configuration"]["CodeSha256"] == sha_v1
    assert got["Configuration"]["FunctionName"] == name
    with urllib.request.urlopen(got["Code"]["Location"], timeout=30) as r:
        assert r.read() == pkg.v1  # the package as uploaded

    conf = aws(ep, "get-function-configuration", "--function-name", name)
    assert conf == got["Configuration"]
    assert conf["Environment"] == {"Variables": {"FOO": "one"}}

    listed = aws(ep, "list-functions")
    assert name in [f["FunctionName"] for f in listed["Functions"]]

    # New code: visible on the next invoke.
    updated = aws(ep, "update-function-code", "--function-name", name, "--zip-file", "fileb://v2.zip",
                  cwd=str(tmp_path))
    assert updated["CodeSha256"] == sha_v2 and updated["RevisionId"] != conf["RevisionId"]
    _, body = cli_invoke(daemon, tmp_path, name, {"say": "v2"})
    assert body["tag"].endswith("-v2"), body

    # New configuration: environment and memory size visible inside.
    updated = aws(ep, "update-function-configuration", "--function-name", name,
                  "--environment", "Variables={FOO=two,BAR=three}", "--memory-size", "256")
    assert updated["MemorySize"] == 256
    assert updated["Environment"] == {"Variables": {"FOO": "two", "BAR": "three"}}
    meta, body = cli_invoke(daemon, tmp_path, name, {"say": "config"})
    assert body["foo"] == "two" and body["memory_env"] == "256", body
    assert body["tag"].endswith("-v2")
    if family == "python":
        assert body["memory"] == 256
    if family == "node":
        assert body["memory"] == "256"
    check_log(h.decode_log(meta["LogResult"]), family, 256, cold=True)

    assert aws(ep, "delete-function", "--function-name", name) is None
    rc, out, err = aws(ep, "invoke", "--function-name", name, str(tmp_path / "gone.json"),
                       check=False, cwd=str(tmp_path))
    assert rc != 0 and "ResourceNotFoundException" in err, (rc, out, err)
    rc, out, err = aws(ep, "get-function", "--function-name", name, check=False)
    assert rc != 0 and "ResourceNotFoundException" in err, (rc, out, err)
    assert name not in [f["FunctionName"] for f in aws(ep, "list-functions")["Functions"]]


def test_cli_invoke_without_log_tail(daemon, packages, tmp_path, client):
    name = h.unique_name("cli-nolog")
    h.create_fn(client, name, packages["provided"])
    meta, body = cli_invoke(daemon, tmp_path, name, {"x": 1}, log_type="None")
    assert meta["StatusCode"] == 200 and "LogResult" not in meta, meta
    assert body["event"] == {"x": 1}
    client.delete_function(FunctionName=name)


def test_list_functions_paging(daemon, client, packages, tmp_path):
    prefix = h.unique_name("page")
    names = ["%s-%d" % (prefix, i) for i in range(5)]
    for n in names:
        h.create_fn(client, n, packages["python"])

    # boto3: MaxItems + Marker, page by page.
    seen, marker, pages = [], None, 0
    while True:
        kw = {"MaxItems": 2}
        if marker:
            kw["Marker"] = marker
        page = client.list_functions(**kw)
        pages += 1
        assert len(page["Functions"]) <= 2
        seen += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
        assert pages < 100
    assert len(seen) == len(set(seen)), seen
    assert set(names) <= set(seen)
    assert pages >= 3

    # The CLI: --max-items with NextToken / --starting-token.
    first = aws(daemon.endpoint, "list-functions", "--max-items", "2")
    assert len(first["Functions"]) == 2 and first.get("NextToken"), first
    cli_seen = [f["FunctionName"] for f in first["Functions"]]
    token = first["NextToken"]
    for _ in range(100):
        page = aws(daemon.endpoint, "list-functions", "--max-items", "2", "--starting-token", token)
        cli_seen += [f["FunctionName"] for f in page["Functions"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(cli_seen) == sorted(seen)

    # A bad MaxItems is refused.
    status, headers, body = h.raw(daemon.endpoint, "GET", "/2015-03-31/functions/?MaxItems=0")
    assert status == 400, body
    for n in names:
        client.delete_function(FunctionName=n)
