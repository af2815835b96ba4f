"""Versions and aliases against a real kindlingd, with boto3 and the AWS CLI: PublishVersion (and
Publish on create / update-code), ListVersionsByFunction paging, Qualifier on get and invoke,
deleting one version, aliases with weighted routing between two versions, bad input for each new
API, and everything surviving a restart of kindlingd on the same data dir."""

import base64
import hashlib
import json
import math
import os
import textwrap

import pytest
from botocore.exceptions import ClientError

import kindling_harness as h

# A handler that reports what it runs as: its code tag, the version and the ARN it was invoked by,
# and a marker that is new in every sandbox (warm reuse shows as the same marker).
APP = textwrap.dedent('''
    import os
    import uuid
    TAG = "%s"
    MARKER = uuid.uuid4().hex

    def handler(event, context):
        return {"tag": TAG, "version": context.function_version,
                "arn": context.invoked_function_arn, "marker": MARKER,
                "env_version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
                "foo": os.environ.get("FOO")}
''').lstrip()

ACCOUNT = "000000000000"


def app_zip(tag):
    return h.make_zip({"app.py": APP % tag})


def sha(zip_bytes):
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def fn_arn(name, qualifier=None):
    arn = "arn:aws:lambda:%s:%s:function:%s" % (h.REGION, ACCOUNT, name)
    return arn + ":" + qualifier if qualifier else arn


def error_code(excinfo):
    err = excinfo.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def error_message(excinfo):
    return excinfo.value.response["Error"].get("Message", "")


def create(client, name, tag="v1", **kw):
    return h.create_fn(client, name, runtime="python3.12", handler="app.handler", zip_bytes=app_zip(tag), **kw)


def call(client, name, qualifier=None):
    """Invokes; returns (X-Amz-Executed-Version, payload)."""
    kw = {"Qualifier": qualifier} if qualifier else {}
    resp, body = h.invoke(client, name, {}, **kw)
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    executed = resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-executed-version"]
    assert executed == resp["ExecutedVersion"]
    return executed, body


def raw_json(daemon, method, path, doc=None):
    status, headers, body = h.raw(daemon.endpoint, method, path,
                                  body=json.dumps(doc) if doc is not None else b"",
                                  headers={"Content-Type": "application/json"})
    return status, h.error_type(headers, body), (json.loads(body) if body else None)


def cli(daemon, *args, **kw):
    return h.aws(daemon.endpoint, *args, **kw)


# ------------------------------------------------------------------------------------------------
# versions


def test_publish_invoke_and_get_by_version(client):
    name = h.unique_name("ver")
    created = create(client, name, "v1")
    v1 = client.publish_version(FunctionName=name)
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v1["Version"] == "1" and v1["FunctionArn"] == fn_arn(name, "1")
    assert v1["CodeSha256"] == created["CodeSha256"] == sha(app_zip("v1"))
    # Nothing changed since version 1: Lambda hands back the latest version instead of a new one.
    again = client.publish_version(FunctionName=name)
    assert again["Version"] == "1" and again["RevisionId"] == v1["RevisionId"]

    client.update_function_code(FunctionName=name, ZipFile=app_zip("v2"))
    v2 = client.publish_version(FunctionName=name, Description="second", CodeSha256=sha(app_zip("v2")))
    assert v2["Version"] == "2" and v2["Description"] == "second"

    for qualifier, tag, version in (("1", "v1", "1"), ("2", "v2", "2"), ("$LATEST", "v2", "$LATEST"),
                                    (None, "v2", "$LATEST")):
        executed, body = call(client, name, qualifier)
        assert executed == version and body["tag"] == tag and body["version"] == version
        assert body["env_version"] == version
        assert body["arn"] == fn_arn(name, qualifier)

    # A qualifier inside the name works as well as the Qualifier parameter.
    executed, body = call(client, name + ":1")
    assert executed == "1" and body["tag"] == "v1"
    conf = client.get_function_configuration(FunctionName=name, Qualifier="1")
    assert conf["Version"] == "1" and conf["CodeSha256"] == sha(app_zip("v1"))
    assert conf["FunctionArn"] == fn_arn(name, "1")
    got = client.get_function(FunctionName=fn_arn(name, "2"))
    assert got["Configuration"]["Version"] == "2" and got["Configuration"]["Description"] == "second"
    latest = client.get_function_configuration(FunctionName=name)
    assert latest["Version"] == "$LATEST" and latest["Description"] == ""

    # Versions are immutable: changing $LATEST leaves version 1 alone, and its warm sandbox too.
    _, before = call(client, name, "1")
    client.update_function_configuration(FunctionName=name, Environment={"Variables": {"FOO": "changed"}})
    assert call(client, name)[1]["foo"] == "changed"
    _, after = call(client, name, "1")
    assert after["foo"] is None and after["tag"] == "v1"
    assert after["marker"] == before["marker"], "version 1's warm sandbox was drained by a $LATEST update"


def test_publish_preconditions(client):
    name = h.unique_name("ver-pre")
    create(client, name)
    conf = client.get_function_configuration(FunctionName=name)
    client.update_function_configuration(FunctionName=name, Timeout=6)
    with pytest.raises(ClientError) as e:
        client.publish_version(FunctionName=name, RevisionId=conf["RevisionId"])
    assert error_code(e) == ("PreconditionFailedException", 412)
    with pytest.raises(ClientError) as e:
        client.publish_version(FunctionName=name, CodeSha256=sha(b"other code"))
    assert error_code(e) == ("InvalidParameterValueException", 400)
    assert "CodeSha256" in error_message(e)
    current = client.get_function_configuration(FunctionName=name)
    ok = client.publish_version(FunctionName=name, RevisionId=current["RevisionId"], CodeSha256=current["CodeSha256"])
    assert ok["Version"] == "1" and ok["Timeout"] == 6
    with pytest.raises(ClientError) as e:
        client.publish_version(FunctionName=h.unique_name("ver-missing"))
    assert error_code(e) == ("ResourceNotFoundException", 404)


def test_publish_on_create_and_update_code_and_list_paging(client, daemon):
    name = h.unique_name("ver-list")
    created = create(client, name, "v1", Publish=True)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["Version"] == "1" and created["FunctionArn"] == fn_arn(name, "1")
    updated = client.update_function_code(FunctionName=name, ZipFile=app_zip("v2"), Publish=True)
    assert updated["Version"] == "2" and updated["CodeSha256"] == sha(app_zip("v2"))
    for i in range(3):
        client.update_function_configuration(FunctionName=name, Environment={"Variables": {"FOO": str(i)}})
        assert client.publish_version(FunctionName=name)["Version"] == str(3 + i)

    seen, marker, pages = [], None, 0
    while True:
        kw = {"Marker": marker} if marker else {}
        page = client.list_versions_by_function(FunctionName=name, MaxItems=2, **kw)
        pages += 1
        seen += [v["Version"] for v in page["Versions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == ["$LATEST", "1", "2", "3", "4", "5"] and pages == 3
    # The CLI follows NextMarker itself.
    listed = cli(daemon, "list-versions-by-function", "--function-name", name)
    assert [v["Version"] for v in listed["Versions"]] == seen
    assert listed["Versions"][3]["Environment"]["Variables"] == {"FOO": "0"}
    assert call(client, name, "2")[1]["tag"] == "v2" and call(client, name, "1")[1]["tag"] == "v1"


def test_delete_one_version_and_numbers_are_not_reused(client):
    name = h.unique_name("ver-del")
    create(client, name, "v1", Publish=True)
    client.update_function_code(FunctionName=name, ZipFile=app_zip("v2"), Publish=True)
    assert call(client, name, "2")[1]["tag"] == "v2"
    client.delete_function(FunctionName=name, Qualifier="2")
    with pytest.raises(ClientError) as e:
        client.get_function_configuration(FunctionName=name, Qualifier="2")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as e:
        h.invoke(client, name, {}, Qualifier="2")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    assert "Function not found: %s" % fn_arn(name, "2") in error_message(e)
    assert [v["Version"] for v in client.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "1"]
    # $LATEST and version 1 are untouched; the next version is 3, never 2 again.
    assert call(client, name)[1]["tag"] == "v2" and call(client, name, "1")[1]["tag"] == "v1"
    client.update_function_code(FunctionName=name, ZipFile=app_zip("v3"))
    assert client.publish_version(FunctionName=name)["Version"] == "3"
    with pytest.raises(ClientError) as e:
        client.delete_function(FunctionName=name, Qualifier="$LATEST")
    assert error_code(e) == ("InvalidParameterValueException", 400)
    with pytest.raises(ClientError) as e:
        client.delete_function(FunctionName=name, Qualifier="9")
    assert error_code(e) == ("ResourceNotFoundException", 404)

    # Deleting the function takes every version and alias: a new function of that name starts over.
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    client.delete_function(FunctionName=name)
    create(client, name, "v9")
    with pytest.raises(ClientError) as e:
        client.get_alias(FunctionName=name, Name="live")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as e:
        h.invoke(client, name, {}, Qualifier="1")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    assert client.publish_version(FunctionName=name)["Version"] == "1"
    assert call(client, name, "1")[1]["tag"] == "v9"


# ------------------------------------------------------------------------------------------------
# aliases


def test_alias_lifecycle_with_the_cli(client, daemon, tmp_path):
    name = h.unique_name("alias-cli")
    create(client, name, "v1", Publish=True)
    client.update_function_code(FunctionName=name, ZipFile=app_zip("v2"), Publish=True)

    alias = cli(daemon, "create-alias", "--function-name", name, "--name", "live", "--function-version", "1",
                "--description", "production")
    assert alias["AliasArn"] == fn_arn(name, "live") and alias["FunctionVersion"] == "1"
    assert alias["Name"] == "live" and alias["Description"] == "production" and alias["RevisionId"]
    assert cli(daemon, "get-alias", "--function-name", name, "--name", "live") == alias
    cli(daemon, "create-alias", "--function-name", name, "--name", "edge", "--function-version", "$LATEST")

    out = str(tmp_path / "out.json")
    res = cli(daemon, "invoke", "--function-name", name, "--qualifier", "live", "--cli-binary-format",
              "raw-in-base64-out", "--payload", "{}", out)
    assert res["ExecutedVersion"] == "1" and res["StatusCode"] == 200
    with open(out) as f:
        body = json.load(f)
    assert body["tag"] == "v1" and body["arn"] == fn_arn(name, "live") and body["version"] == "1"
    executed, body = call(client, name, "edge")
    assert executed == "$LATEST" and body["tag"] == "v2" and body["arn"] == fn_arn(name, "edge")
    # An alias ARN as the function name.
    executed, body = call(client, fn_arn(name, "live"))
    assert executed == "1" and body["arn"] == fn_arn(name, "live")
    conf = client.get_function_configuration(FunctionName=name, Qualifier="live")
    assert conf["Version"] == "1"

    # UpdateAlias with a stale RevisionId fails; with the current one it moves the alias.
    rc, _, err = cli(daemon, "update-alias", "--function-name", name, "--name", "live", "--function-version", "2",
                     "--revision-id", "not-the-revision", check=False)
    assert rc != 0 and "PreconditionFailedException" in err
    moved = cli(daemon, "update-alias", "--function-name", name, "--name", "live", "--function-version", "2",
                "--revision-id", alias["RevisionId"])
    assert moved["FunctionVersion"] == "2" and moved["Description"] == "production"
    assert moved["RevisionId"] != alias["RevisionId"]
    assert call(client, name, "live") [0] == "2"

    listed = cli(daemon, "list-aliases", "--function-name", name)
    assert [a["Name"] for a in listed["Aliases"]] == ["edge", "live"]
    only2 = cli(daemon, "list-aliases", "--function-name", name, "--function-version", "2")
    assert [a["Name"] for a in only2["Aliases"]] == ["live"]
    page = client.list_aliases(FunctionName=name, MaxItems=1)
    assert [a["Name"] for a in page["Aliases"]] == ["edge"] and page["NextMarker"]
    page = client.list_aliases(FunctionName=name, MaxItems=1, Marker=page["NextMarker"])
    assert [a["Name"] for a in page["Aliases"]] == ["live"] and "NextMarker" not in page

    # An alias keeps its version from being deleted.
    with pytest.raises(ClientError) as e:
        client.delete_function(FunctionName=name, Qualifier="2")
    assert error_code(e) == ("ResourceConflictException", 409)
    assert "live" in error_message(e)

    assert cli(daemon, "delete-alias", "--function-name", name, "--name", "live") is None
    with pytest.raises(ClientError) as e:
        client.get_alias(FunctionName=name, Name="live")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as e:
        h.invoke(client, name, {}, Qualifier="live")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    assert "Function not found: %s" % fn_arn(name, "live") in error_message(e)
    client.delete_function(FunctionName=name, Qualifier="2")  # no alias uses it any more


def binomial_ok(k, n, p, sigmas=6.0):
    """k successes of n draws with probability p lie within `sigmas` standard deviations (a false
    failure needs a 6-sigma event: about 2e-9)."""
    sd = math.sqrt(n * p * (1 - p))
    return abs(k - n * p) <= sigmas * sd


def test_weighted_alias_routes_by_weight(client, daemon):
    name = h.unique_name("alias-w")
    create(client, name, "v1", Publish=True)
    client.update_function_code(FunctionName=name, ZipFile=app_zip("v2"), Publish=True)
    alias = client.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                                RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}
    assert client.get_alias(FunctionName=name, Name="canary")["RoutingConfig"] == alias["RoutingConfig"]

    n, counts = 400, {"1": 0, "2": 0}
    for _ in range(n):
        executed, body = call(client, name, "canary")
        counts[executed] += 1
        # The header names the version that ran, and the runtime saw the alias ARN.
        assert body["version"] == executed and body["tag"] == "v" + executed
        assert body["arn"] == fn_arn(name, "canary")
    assert counts["1"] + counts["2"] == n
    assert binomial_ok(counts["2"], n, 0.3), counts

    # Weight 1.0 sends everything to the second version, 0.0 nothing; an empty RoutingConfig
    # removes it.
    client.update_alias(FunctionName=name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {"2": 1.0}})
    assert {call(client, name, "canary")[0] for _ in range(20)} == {"2"}
    client.update_alias(FunctionName=name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {"2": 0.0}})
    assert {call(client, name, "canary")[0] for _ in range(20)} == {"1"}
    cleared = client.update_alias(FunctionName=name, Name="canary", RoutingConfig={})
    assert "RoutingConfig" not in cleared or not cleared["RoutingConfig"].get("AdditionalVersionWeights")
    # GetFunction through a weighted alias reads the alias's primary version.
    client.update_alias(FunctionName=name, Name="canary", RoutingConfig={"AdditionalVersionWeights": {"2": 1.0}})
    assert client.get_function_configuration(FunctionName=name, Qualifier="canary")["Version"] == "1"


def test_alias_bad_input(client, daemon):
    name = h.unique_name("alias-bad")
    create(client, name, "v1", Publish=True)
    client.update_function_code(FunctionName=name, ZipFile=app_zip("v2"), Publish=True)
    client.update_function_code(FunctionName=name, ZipFile=app_zip("v3"), Publish=True)
    base = "/2015-03-31/functions/%s/aliases" % name

    def create_raw(doc):
        return raw_json(daemon, "POST", base, doc)

    # Alias to a version that does not exist.
    with pytest.raises(ClientError) as e:
        client.create_alias(FunctionName=name, Name="a", FunctionVersion="7")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    assert fn_arn(name, "7") in error_message(e)
    with pytest.raises(ClientError) as e:
        client.create_alias(FunctionName=name, Name="a", FunctionVersion="1",
                            RoutingConfig={"AdditionalVersionWeights": {"8": 0.5}})
    assert error_code(e) == ("ResourceNotFoundException", 404)
    # Weights out of range (raw: the SDK would refuse to send some of them).
    for weight in (1.5, -0.1, 2):
        status, etype, _ = create_raw({"Name": "a", "FunctionVersion": "1",
                                       "RoutingConfig": {"AdditionalVersionWeights": {"2": weight}}})
        assert (status, etype) == (400, "ValidationException"), weight
    status, etype, _ = create_raw({"Name": "a", "FunctionVersion": "1",
                                   "RoutingConfig": {"AdditionalVersionWeights": {"latest": 0.1}}})
    assert (status, etype) == (400, "ValidationException")
    # Two additional versions.
    with pytest.raises(ClientError) as e:
        client.create_alias(FunctionName=name, Name="a", FunctionVersion="1",
                            RoutingConfig={"AdditionalVersionWeights": {"2": 0.1, "3": 0.1}})
    assert error_code(e) == ("InvalidParameterValueException", 400)
    # The additional version is the primary one.
    with pytest.raises(ClientError) as e:
        client.create_alias(FunctionName=name, Name="a", FunctionVersion="1",
                            RoutingConfig={"AdditionalVersionWeights": {"1": 0.1}})
    assert error_code(e) == ("InvalidParameterValueException", 400)
    # $LATEST cannot share traffic.
    with pytest.raises(ClientError) as e:
        client.create_alias(FunctionName=name, Name="a", FunctionVersion="$LATEST",
                            RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    assert error_code(e) == ("InvalidParameterValueException", 400)
    assert "$LATEST" in error_message(e)
    # Invalid names: all digits (reads as a version), $LATEST, characters outside the pattern, too long.
    for bad in ("123", "$LATEST", "bad.name", "x" * 129):
        status, etype, _ = create_raw({"Name": bad, "FunctionVersion": "1"})
        assert (status, etype) == (400, "ValidationException"), bad
    status, etype, _ = create_raw({"Name": "a", "FunctionVersion": "one"})
    assert (status, etype) == (400, "ValidationException")
    status, etype, _ = create_raw({"FunctionVersion": "1"})
    assert (status, etype) == (400, "InvalidParameterValueException")
    # None of the refused calls left an alias behind.
    assert client.list_aliases(FunctionName=name)["Aliases"] == []

    # Duplicate alias.
    first = client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with pytest.raises(ClientError) as e:
        client.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert error_code(e) == ("ResourceConflictException", 409)
    # UpdateAlias: stale RevisionId, weights on $LATEST, missing alias, missing version.
    with pytest.raises(ClientError) as e:
        client.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RevisionId="stale")
    assert error_code(e) == ("PreconditionFailedException", 412)
    with pytest.raises(ClientError) as e:
        client.update_alias(FunctionName=name, Name="live", FunctionVersion="$LATEST",
                            RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    assert error_code(e) == ("InvalidParameterValueException", 400)
    with pytest.raises(ClientError) as e:
        client.update_alias(FunctionName=name, Name="nope", FunctionVersion="2")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as e:
        client.update_alias(FunctionName=name, Name="live", FunctionVersion="42")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    got = client.get_alias(FunctionName=name, Name="live")
    assert got["FunctionVersion"] == "1" and got["RevisionId"] == first["RevisionId"]  # unchanged
    with pytest.raises(ClientError) as e:
        client.delete_alias(FunctionName=name, Name="nope")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    # Alias operations on a function that does not exist.
    with pytest.raises(ClientError) as e:
        client.create_alias(FunctionName=h.unique_name("nofn"), Name="live", FunctionVersion="1")
    assert error_code(e) == ("ResourceNotFoundException", 404)
    # The alias holds version 1 (primary) and version 2 (as the weighted second version).
    client.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 0.2}})
    for v in ("1", "2"):
        with pytest.raises(ClientError) as e:
            client.delete_function(FunctionName=name, Qualifier=v)
        assert error_code(e) == ("ResourceConflictException", 409), v
    client.delete_function(FunctionName=name, Qualifier="3")


def test_unknown_qualifiers_and_writes_to_versions(client):
    name = h.unique_name("ver-bad")
    create(client, name, "v1", Publish=True)
    for qualifier in ("5", "nosuchalias", "0"):
        with pytest.raises(ClientError) as e:
            h.invoke(client, name, {}, Qualifier=qualifier)
        assert error_code(e) == ("ResourceNotFoundException", 404)
        assert error_message(e) == "Function not found: %s" % fn_arn(name, qualifier)
        with pytest.raises(ClientError) as e:
            client.get_function(FunctionName=name, Qualifier=qualifier)
        assert error_code(e) == ("ResourceNotFoundException", 404)
        with pytest.raises(ClientError) as e:
            client.get_function_configuration(FunctionName=name, Qualifier=qualifier)
        assert error_code(e) == ("ResourceNotFoundException", 404)
    # Published versions are immutable.
    with pytest.raises(ClientError) as e:
        client.update_function_configuration(FunctionName=name + ":1", Timeout=9)
    assert error_code(e) == ("InvalidParameterValueException", 400)
    with pytest.raises(ClientError) as e:
        client.update_function_code(FunctionName=name + ":1", ZipFile=app_zip("v2"))
    assert error_code(e) == ("InvalidParameterValueException", 400)
    assert client.get_function_configuration(FunctionName=name, Qualifier="1")["Timeout"] == 5
    # ListVersionsByFunction of a missing function.
    with pytest.raises(ClientError) as e:
        client.list_versions_by_function(FunctionName=h.unique_name("nofn"))
    assert error_code(e) == ("ResourceNotFoundException", 404)


# ------------------------------------------------------------------------------------------------
# durability


def test_versions_and_aliases_survive_a_restart(new_daemon):
    d = new_daemon(idle_timeout=60)
    client = h.boto_client(d.endpoint)
    name = h.unique_name("ver-restart")
    create(client, name, "v1", Publish=True)
    client.update_function_code(FunctionName=name, ZipFile=app_zip("v2"), Publish=True)
    client.update_function_code(FunctionName=name, ZipFile=app_zip("v3"), Publish=True)
    alias = client.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                                RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    client.delete_function(FunctionName=name, Qualifier="3")
    assert call(client, name, "live")[0] in ("1", "2")

    d.stop(check=True)
    d.start()
    client = h.boto_client(d.endpoint)
    versions = client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert versions[1]["CodeSha256"] == sha(app_zip("v1")) and versions[2]["CodeSha256"] == sha(app_zip("v2"))
    got = client.get_alias(FunctionName=name, Name="live")
    assert got == {k: v for k, v in alias.items() if k != "ResponseMetadata"} | {"ResponseMetadata": got["ResponseMetadata"]}
    seen = {call(client, name, "live")[0] for _ in range(40)}
    assert seen == {"1", "2"}  # both, with 0.5 each: a miss in 40 draws is a 2^-39 event
    assert call(client, name, "1")[1]["tag"] == "v1" and call(client, name)[1]["tag"] == "v3"
    # The counter is durable too: version 3 was deleted, the next one is 4.
    client.update_function_configuration(FunctionName=name, Environment={"Variables": {"FOO": "x"}})
    assert client.publish_version(FunctionName=name)["Version"] == "4"


def test_list_functions_with_all_versions_pages_through_every_version(new_daemon):
    d = new_daemon()
    c = h.boto_client(d.endpoint)
    names = sorted(h.unique_name("all") for _ in range(2))
    for n in names:
        h.create_fn(c, n, runtime="python3.12", handler="app.handler", zip_bytes=h.python_zip())
        c.publish_version(FunctionName=n)
        c.update_function_configuration(FunctionName=n, Timeout=7)
        c.publish_version(FunctionName=n)
    seen, marker = [], None
    for _ in range(10):
        kw = {"FunctionVersion": "ALL", "MaxItems": 4}
        if marker:
            kw["Marker"] = marker
        page = c.list_functions(**kw)
        seen += [(f["FunctionName"], f["Version"]) for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == [(n, v) for n in names for v in ("$LATEST", "1", "2")]
    # Without FunctionVersion, only $LATEST.
    assert [f["Version"] for f in c.list_functions()["Functions"]] == ["$LATEST", "$LATEST"]
