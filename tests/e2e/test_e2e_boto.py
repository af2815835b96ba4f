"""boto3 against kindlingd: the lifecycle, function errors as AWS shapes them, invocation types,
the node handler styles, and functions surviving a restart of kindlingd on the same data dir."""

import base64
import hashlib
import json
import os

import pytest
from botocore.exceptions import ClientError

import kindling_harness as h
from kindling_harness import create_fn, invoke


def error_code(excinfo):
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def test_boto_lifecycle_python(client, packages):
    pkg = packages["python"]
    name = h.unique_name("boto-py")
    created = create_fn(client, name, pkg, Environment={"Variables": {"FOO": "alpha"}}, Timeout=7)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["CodeSha256"] == base64.b64encode(hashlib.sha256(pkg.v1).digest()).decode()
    assert created["Timeout"] == 7 and created["MemorySize"] == 128 and created["Handler"] == "app.handler"

    resp, body = invoke(client, name, {"say": "boto", "k": [1, 2, 3]}, LogType="Tail")
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    assert resp["ExecutedVersion"] == "$LATEST"
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-executed-version"] == "$LATEST"
    rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert body["event"] == {"say": "boto", "k": [1, 2, 3]}
    assert body["foo"] == "alpha" and body["memory"] == 128 and body["tag"] == "py-v1"
    assert body["function_name"] == name and body["version"] == "$LATEST"
    assert body["request_id"] == rid  # the invocation's id is the API request id
    log = h.decode_log(resp["LogResult"])
    assert "handler says: boto" in log and ("START RequestId: %s Version: $LATEST" % rid) in log, log

    conf = client.get_function_configuration(FunctionName=name)
    got = client.get_function(FunctionName=name)
    assert got["Configuration"]["RevisionId"] == conf["RevisionId"]
    assert got["Code"]["Location"].startswith("http")

    upd = client.update_function_code(FunctionName=name, ZipFile=pkg.v2)
    assert upd["RevisionId"] != conf["RevisionId"]
    assert invoke(client, name, {})[1]["tag"] == "py-v2"

    upd = client.update_function_configuration(FunctionName=name, MemorySize=192, Timeout=9,
                                               Environment={"Variables": {"FOO": "beta"}})
    assert upd["MemorySize"] == 192 and upd["Timeout"] == 9
    body = invoke(client, name, {})[1]
    assert body["foo"] == "beta" and body["memory"] == 192 and body["memory_env"] == "192"

    # Stale RevisionId: PreconditionFailedException.
    with pytest.raises(ClientError) as e:
        client.update_function_configuration(FunctionName=name, RevisionId=conf["RevisionId"], Timeout=3)
    assert error_code(e) == ("PreconditionFailedException", 412)

    # Invoking by ARN and by partial ARN reaches the same function.
    arn = conf["FunctionArn"]
    assert invoke(client, arn, {})[1]["function_name"] == name
    assert invoke(client, "000000000000:function:" + name, {})[1]["function_name"] == name

    # Creating it again conflicts.
    with pytest.raises(ClientError) as e:
        create_fn(client, name, pkg)
    assert error_code(e) == ("ResourceConflictException", 409)

    assert client.delete_function(FunctionName=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (lambda: invoke(client, name, {}), lambda: client.get_function(FunctionName=name),
                 lambda: client.delete_function(FunctionName=name)):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == ("ResourceNotFoundException", 404)


def test_unicode_and_json_shapes_round_trip(client, packages):
    for family in ("python", "node", "provided"):
        name = h.unique_name("uni-" + family)
        create_fn(client, name, packages[family])
        for event in ({"text": "h\u00e9llo \u4e16\u754c \U0001f525", "nested": {"a": [1, 2.5, None, True]}},
                      [1, "two", {"three": 3}], "just a string", 42, None):
            resp, body = invoke(client, name, event)
            assert "FunctionError" not in resp, body
            assert body["event"] == event, (family, event, body)


def test_python_unhandled_error_shape(client, packages):
    name = h.unique_name("boto-raise")
    create_fn(client, name, packages["python"])
    resp, body = invoke(client, name, {"action": "raise", "message": "kaput"}, LogType="Tail")
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-function-error"] == "Unhandled"
    assert resp["ExecutedVersion"] == "$LATEST"
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "boom: kaput"
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    assert any("app.py" in frame and "raise ValueError" in frame for frame in body["stackTrace"]), body
    log = h.decode_log(resp["LogResult"])
    assert "ValueError" in log and "REPORT RequestId:" in log, log
    # The sandbox survives a handled exception: next invoke is warm and counts on.
    resp2, body2 = invoke(client, name, {})
    assert "FunctionError" not in resp2 and body2["count"] == 2


def test_node_throw_and_handler_styles(client, packages):
    pkg = packages["node"]
    base = h.unique_name("boto-node")
    create_fn(client, base, pkg)
    resp, body = invoke(client, base, {"action": "throw", "message": "x1"})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "TypeError" and body["errorMessage"] == "node boom x1"
    assert isinstance(body.get("trace"), list) and body["trace"][0].startswith("TypeError: node boom x1")

    for handler, variant in (("index.handler", "async"), ("index.promiseHandler", "promise"),
                             ("index.callbackHandler", "callback")):
        name = "%s-%s" % (base, variant)
        create_fn(client, name, pkg, Handler=handler)
        resp, body = invoke(client, name, {"v": variant})
        assert "FunctionError" not in resp, body
        assert body["variant"] == variant and body["event"] == {"v": variant} and body["memory"] == "128"

    resp, body = invoke(client, base + "-callback", {"action": "throw"})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "RangeError" and body["errorMessage"] == "callback boom"


def test_provided_error_and_crash(client, packages):
    name = h.unique_name("boto-c")
    create_fn(client, name, packages["provided"])
    resp, body = invoke(client, name, {"action": "fail"})
    assert resp["FunctionError"] == "Unhandled"
    assert body == {"errorMessage": "requested failure", "errorType": "ProvidedError", "stackTrace": []}
    resp, body = invoke(client, name, {"n": 1})
    assert "FunctionError" not in resp and body["event"] == {"n": 1} and body["count"] == 2
    resp, body = invoke(client, name, {"action": "crash"})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError" and "exit status 3" in body["errorMessage"], body
    resp, body = invoke(client, name, {"n": 2})
    assert "FunctionError" not in resp and body["count"] == 1  # a fresh sandbox


def test_dry_run_and_invocation_types(client, packages, daemon):
    name = h.unique_name("boto-dry")
    create_fn(client, name, packages["python"])
    resp = client.invoke(FunctionName=name, InvocationType="DryRun", Payload=b"{}")
    assert resp["StatusCode"] == 204
    assert resp["Payload"].read() == b""
    metrics = daemon.metrics()
    assert metrics.get('kindling_invocations_total{function="%s"}' % name, 0) == 0  # nothing ran
    with pytest.raises(ClientError) as e:
        client.invoke(FunctionName=h.unique_name("nope"), InvocationType="DryRun")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    # Explicit RequestResponse with a qualifier of $LATEST.
    resp, body = invoke(client, name, {"q": 1}, InvocationType="RequestResponse", Qualifier="$LATEST")
    assert resp["StatusCode"] == 200 and body["event"] == {"q": 1}
    # Unknown qualifier: not found.
    with pytest.raises(ClientError) as e:
        invoke(client, name, {}, Qualifier="7")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    # Bad invocation type: rejected before anything runs.
    status, headers, body = h.raw(daemon.endpoint, "POST", "/2015-03-31/functions/%s/invocations" % name,
                                  b"{}", {"X-Amz-Invocation-Type": "Sometimes"})
    assert status == 400 and h.error_type(headers, body) == "ValidationException", (status, headers, body)
    assert b"at 'invocationType' failed to satisfy constraint" in body


def test_client_context_reaches_function(client, daemon, packages):
    name = h.unique_name("boto-ctx")
    code = h.python_zip(extra={"ctx.py": (
        "def handler(event, context):\n"
        "    cc = context.client_context\n"
        "    return {'custom': cc.custom if cc else None, 'app': cc.client.app_title if cc else None,\n"
        "            'remaining_ok': 0 < context.get_remaining_time_in_millis() <= 5000,\n"
        "            'arn': context.invoked_function_arn}\n")})
    create_fn(client, name, runtime="python3.12", handler="ctx.handler", zip_bytes=code)
    cc = base64.b64encode(json.dumps({"client": {"app_title": "e2e"}, "custom": {"k": "v"}}).encode()).decode()
    resp, body = invoke(client, name, {}, ClientContext=cc)
    assert body == {"custom": {"k": "v"}, "app": "e2e", "remaining_ok": True,
                    "arn": "arn:aws:lambda:us-east-1:000000000000:function:" + name}, body
    with pytest.raises(ClientError) as e:
        invoke(client, name, {}, ClientContext="not base64 json!")
    assert error_code(e)[1] == 400


def test_functions_survive_restart(new_daemon, packages):
    d = new_daemon()
    c = h.boto_client(d.endpoint)
    names = {}
    for family in ("python", "provided"):
        names[family] = h.unique_name("restart-" + family)
        create_fn(c, names[family], packages[family], Environment={"Variables": {"FOO": family}})
        assert invoke(c, names[family], {"before": 1})[1]["foo"] == family
    before = {f: c.get_function_configuration(FunctionName=n) for f, n in names.items()}

    d.stop(check=True)
    d.start()  # same data dir, same port
    c = h.boto_client(d.endpoint)
    for family, name in names.items():
        after = c.get_function_configuration(FunctionName=name)
        for key in ("CodeSha256", "RevisionId", "LastModified", "Environment", "Runtime", "Handler"):
            assert after[key] == before[family][key], key
        resp, body = invoke(c, name, {"after": 1})
        assert "FunctionError" not in resp, body
        assert body["event"] == {"after": 1} and body["foo"] == family
    listed = {f["FunctionName"] for f in c.list_functions()["Functions"]}
    assert set(names.values()) <= listed

    # A delete is durable too.
    c.delete_function(FunctionName=names["python"])
    d.stop(check=True)
    d.start()
    c = h.boto_client(d.endpoint)
    with pytest.raises(ClientError) as e:
        c.get_function(FunctionName=names["python"])
    assert error_code(e) == ("ResourceNotFoundException", 404)
    assert invoke(c, names["provided"], {"third": 1})[1]["event"] == {"third": 1}
    # The deleted function's code package is collected at startup; the live one's stays.
    code = os.path.join(d.data_dir, "code")
    digest = {f: hashlib.sha256(packages[f].v1).hexdigest() for f in names}
    assert not os.path.exists(os.path.join(code, digest["python"]))
    assert not os.path.exists(os.path.join(code, digest["python"] + ".zip"))
    assert os.path.isdir(os.path.join(code, digest["provided"]))


# Regression: ARNs naming another region or account used to act on the local function of that name
# (even DeleteFunction). AWS: "Functions from 'eu-west-1' are not reachable in this region".
@pytest.mark.parametrize("template", ["arn:aws:lambda:eu-west-1:000000000000:function:%s",
                                      "arn:aws:lambda:us-east-1:111111111111:function:%s",
                                      "111111111111:function:%s"])
def test_foreign_arns_do_not_resolve_to_local_functions(template, client, packages):
    name = h.unique_name("foreign")
    create_fn(client, name, packages["python"])
    try:
        for call in (lambda: invoke(client, template % name, {}),
                     lambda: client.get_function_configuration(FunctionName=template % name),
                     lambda: client.delete_function(FunctionName=template % name)):
            with pytest.raises(ClientError) as e:
                call()
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] in (403, 404), e.value.response
    finally:
        # The local function is untouched by all of it.
        assert client.get_function_configuration(FunctionName=name)["FunctionName"] == name


def test_shared_code_package_survives_deleting_one_user(new_daemon, packages):
    d = new_daemon()
    c = h.boto_client(d.endpoint)
    a, b = h.unique_name("twin-a"), h.unique_name("twin-b")
    for n in (a, b):
        create_fn(c, n, packages["node"], Code={"ZipFile": packages["node"].v2})
    assert invoke(c, a, {})[1]["tag"] == "node-v2"
    c.delete_function(FunctionName=a)
    d.stop(check=True)
    d.start()
    c = h.boto_client(d.endpoint)
    resp, body = invoke(c, b, {"twin": 1})
    assert "FunctionError" not in resp and body["tag"] == "node-v2", body
    with open(os.path.join(d.data_dir, "code", hashlib.sha256(packages["node"].v2).hexdigest() + ".zip"), "rb") as f:
        assert f.read() == packages["node"].v2


ENV_PY = "import os\ndef handler(e, c):\n    return os.environ['AWS_EXECUTION_ENV']\n"
ENV_JS = "exports.handler = async () => process.env.AWS_EXECUTION_ENV;\n"


@pytest.mark.parametrize("runtime", ["python3.9", "python3.10", "python3.11", "python3.12", "python3.13",
                                     "nodejs18.x", "nodejs20.x", "nodejs22.x",
                                     "provided", "provided.al2", "provided.al2023"])
def test_every_supported_runtime_identifier(runtime, client, packages):
    name = h.unique_name("rt-" + runtime.replace(".", ""))
    if runtime.startswith("python"):
        create_fn(client, name, runtime=runtime, handler="env.handler", zip_bytes=h.make_zip({"env.py": ENV_PY}))
    elif runtime.startswith("node"):
        create_fn(client, name, runtime=runtime, handler="env.handler", zip_bytes=h.make_zip({"env.js": ENV_JS}))
    else:
        create_fn(client, name, packages["provided"], Runtime=runtime)
    resp, body = invoke(client, name, {"rt": runtime})
    assert "FunctionError" not in resp, body
    if runtime.startswith("provided"):
        assert body["event"] == {"rt": runtime}
    else:
        assert body == "AWS_Lambda_" + runtime
    assert client.get_function_configuration(FunctionName=name)["Runtime"] == runtime
    client.delete_function(FunctionName=name)
