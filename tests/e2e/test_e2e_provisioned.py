"""Provisioned concurrency end to end: initialized sandboxes kept ready for a version or alias,
IN_PROGRESS then READY, used by invocations before any cold start, exempt from idle reaping,
persistent across restarts, and Lambda's errors for bad requests."""

import json
import time

import pytest
from botocore.exceptions import ClientError

import kindling_harness as h

APP = '''
import os
def handler(event, context):
    return {"init": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"), "version": context.function_version}
'''


def make_function(client, name):
    client.create_function(FunctionName=name, Role=h.ROLE, Runtime="python3.12", Handler="app.handler",
                           Code={"ZipFile": h.make_zip({"app.py": APP})}, MemorySize=128, Timeout=5)
    return client.publish_version(FunctionName=name)["Version"]


def wait_ready(client, name, qualifier, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        cfg = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        if cfg["Status"] == "READY":
            return cfg
        assert cfg["Status"] == "IN_PROGRESS", cfg
        assert time.monotonic() < deadline, cfg
        time.sleep(0.1)


def counter(daemon, metric, name):
    return h.parse_metrics(h.raw(daemon.endpoint, "GET", "/metrics")[2].decode()).get(
        '%s{function="%s"}' % (metric, name), 0)


def test_version_is_provisioned_and_used_before_cold_starts(new_daemon):
    d = new_daemon(idle_timeout=1)
    c = h.boto_client(d.endpoint)
    name = h.unique_name("prov")
    version = make_function(c, name)
    put = c.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version,
                                               ProvisionedConcurrentExecutions=2)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["Status"] in ("IN_PROGRESS", "READY")
    cfg = wait_ready(c, name, version)
    assert cfg["AvailableProvisionedConcurrentExecutions"] == 2
    assert cfg["AllocatedProvisionedConcurrentExecutions"] == 2
    # Idle far past --idle-timeout: provisioned sandboxes stay.
    time.sleep(2.5)
    assert c.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)[
        "AvailableProvisionedConcurrentExecutions"] == 2
    resp, body = h.invoke(c, name, {}, Qualifier=version)
    assert body == {"init": "provisioned-concurrency", "version": version}
    assert resp["ExecutedVersion"] == version
    assert counter(d, "kindling_cold_starts_total", name) == 0
    assert counter(d, "kindling_warm_starts_total", name) == 1
    # $LATEST is not provisioned: its first invoke is an on-demand cold start.
    assert h.invoke(c, name, {})[1]["init"] == "on-demand"

    listed = c.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [x["FunctionArn"].rsplit(":", 1)[1] for x in listed] == [version]
    c.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    with pytest.raises(ClientError) as e:
        c.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
    assert e.value.response["Error"]["Code"] == "ProvisionedConcurrencyConfigNotFoundException"


def test_alias_is_provisioned_and_survives_restart(new_daemon):
    d = new_daemon()
    c = h.boto_client(d.endpoint)
    name = h.unique_name("prov-alias")
    version = make_function(c, name)
    c.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    c.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1)
    wait_ready(c, name, "live")
    d.stop(check=True)
    d.start()
    c = h.boto_client(d.endpoint)
    cfg = wait_ready(c, name, "live")
    assert cfg["RequestedProvisionedConcurrentExecutions"] == 1
    out = h.aws(d.endpoint, "get-provisioned-concurrency-config", "--function-name", name, "--qualifier", "live")
    assert out["Status"] == "READY"
    assert h.invoke(c, name, {}, Qualifier="live")[1]["init"] == "provisioned-concurrency"


def test_bad_provisioned_requests(client):
    name = h.unique_name("prov-bad")
    version = make_function(client, name)
    try:
        def code(**kw):
            with pytest.raises(ClientError) as e:
                client.put_provisioned_concurrency_config(FunctionName=name, **kw)
            return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]
        assert code(Qualifier="$LATEST", ProvisionedConcurrentExecutions=1) == (400, "InvalidParameterValueException")
        assert code(Qualifier="99", ProvisionedConcurrentExecutions=1)[0] == 404
        assert code(Qualifier="nosuchalias", ProvisionedConcurrentExecutions=1)[0] == 404
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
        assert code(Qualifier=version, ProvisionedConcurrentExecutions=2) == (400, "InvalidParameterValueException")
        status = h.raw(client.meta.endpoint_url, "PUT",
                       "/2019-09-30/functions/%s/provisioned-concurrency?Qualifier=%s" % (name, version),
                       json.dumps({"ProvisionedConcurrentExecutions": 0}))[0]
        assert status == 400
        with pytest.raises(ClientError) as e:
            client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)
        assert e.value.response["Error"]["Code"] == "ProvisionedConcurrencyConfigNotFoundException"
    finally:
        client.delete_function(FunctionName=name)
