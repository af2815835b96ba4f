"""Concurrency control end to end: account limit, reserved concurrency (API and enforcement), the
scaling rate, and GetAccountSettings, against a real kindlingd with boto3 and the AWS CLI."""

import concurrent.futures
import json
import time

import pytest
from botocore.exceptions import ClientError

import kindling_harness as h
from kindling_harness import create_fn, invoke


def throttle_of(err):
    """(status, error code, Reason) of a boto3 ClientError."""
    r = err.response
    return (r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r.get("Reason"))


def run_parallel(client, name, n, seconds):
    """n concurrent invokes sleeping `seconds`; returns (successes, [(status, code, reason)])."""
    def one(_):
        try:
            invoke(client, name, {"action": "sleep", "seconds": seconds})
            return None
        except ClientError as e:
            return throttle_of(e)
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n), timeout=120))
    return sum(1 for r in results if r is None), [r for r in results if r is not None]


def test_reserved_concurrency_api_and_limits(client, packages):
    name = h.unique_name("reserved")
    create_fn(client, name, packages["python"])
    try:
        assert client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") is None
        assert client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)[
            "ReservedConcurrentExecutions"] == 2
        assert client.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 2
        assert client.get_function(FunctionName=name)["Concurrency"]["ReservedConcurrentExecutions"] == 2
        settings = client.get_account_settings()
        assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
        assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 998

        ok, throttled = run_parallel(client, name, 5, 1.5)
        assert ok == 2, (ok, throttled)
        assert throttled and all(t == (429, "TooManyRequestsException",
                                       "ReservedFunctionConcurrentInvocationLimitExceeded") for t in throttled), throttled

        client.delete_function_concurrency(FunctionName=name)
        assert client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") is None
        ok, throttled = run_parallel(client, name, 4, 0.5)
        assert ok == 4 and not throttled
    finally:
        client.delete_function(FunctionName=name)


def test_reserved_zero_disables_the_function(client, packages):
    name = h.unique_name("disabled")
    create_fn(client, name, packages["python"])
    try:
        client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        with pytest.raises(ClientError) as e:
            invoke(client, name, {})
        assert throttle_of(e.value) == (429, "TooManyRequestsException",
                                        "ReservedFunctionConcurrentInvocationLimitExceeded")
        body = e.value.response["Error"]
        assert body["Message"] == "Rate Exceeded."
        client.delete_function_concurrency(FunctionName=name)
        assert invoke(client, name, {})[0]["StatusCode"] == 200
    finally:
        client.delete_function(FunctionName=name)


def test_unreserved_minimum_and_bad_values(client, packages):
    a, b = h.unique_name("big"), h.unique_name("more")
    for n in (a, b):
        create_fn(client, n, packages["python"])
    try:
        client.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=900)
        with pytest.raises(ClientError) as e:
            client.put_function_concurrency(FunctionName=b, ReservedConcurrentExecutions=1)
        assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert "UnreservedConcurrentExecution below its minimum value of [100]" in e.value.response["Error"]["Message"]
        resp = h.raw(client.meta.endpoint_url, "PUT", "/2017-10-31/functions/%s/concurrency" % b,
                     json.dumps({"ReservedConcurrentExecutions": -1}).encode())
        assert resp[0] == 400, resp
        resp = h.raw(client.meta.endpoint_url, "PUT", "/2017-10-31/functions/%s/concurrency" % b, b"{nope")
        assert resp[0] == 400, resp
        with pytest.raises(ClientError) as e:
            client.put_function_concurrency(FunctionName=h.unique_name("missing"), ReservedConcurrentExecutions=1)
        assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        for n in (a, b):
            client.delete_function(FunctionName=n)
    # Deleting the function released its reservation.
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000


def test_reservation_survives_restart_and_cli(new_daemon, packages):
    d = new_daemon()
    c = h.boto_client(d.endpoint)
    name = h.unique_name("persist")
    create_fn(c, name, packages["python"])
    out = h.aws(d.endpoint, "put-function-concurrency", "--function-name", name,
                "--reserved-concurrent-executions", "1")
    assert out["ReservedConcurrentExecutions"] == 1
    d.stop(check=True)
    d.start()
    c = h.boto_client(d.endpoint)
    out = h.aws(d.endpoint, "get-function-concurrency", "--function-name", name)
    assert out["ReservedConcurrentExecutions"] == 1
    ok, throttled = run_parallel(c, name, 3, 1.0)
    assert ok == 1 and len(throttled) == 2, (ok, throttled)


def test_account_limit_reason(new_daemon, packages):
    d = new_daemon(extra_args=["--account-concurrency", "2"])
    c = h.boto_client(d.endpoint)
    name = h.unique_name("acct")
    create_fn(c, name, packages["python"])
    ok, throttled = run_parallel(c, name, 4, 1.5)
    assert ok == 2, (ok, throttled)
    assert throttled and all(t == (429, "TooManyRequestsException", "ConcurrentInvocationLimitExceeded")
                             for t in throttled), throttled
    # With fewer than 100 concurrent executions in all, nothing can be reserved.
    with pytest.raises(ClientError) as e:
        c.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_scaling_rate_throttles_cold_starts_only(new_daemon, packages):
    d = new_daemon(extra_args=["--scaling-limit", "2", "--scaling-window", "60"])
    c = h.boto_client(d.endpoint)
    name = h.unique_name("scale")
    create_fn(c, name, packages["python"])
    ok, throttled = run_parallel(c, name, 4, 1.0)
    assert ok == 2, (ok, throttled)
    assert throttled and all(t == (429, "TooManyRequestsException", "FunctionInvocationRateLimitExceeded")
                             for t in throttled), throttled
    # Warm sandboxes need no scaling budget.
    for _ in range(5):
        assert invoke(c, name, {})[0]["StatusCode"] == 200
