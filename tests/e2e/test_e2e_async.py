"""Asynchronous invocation (InvocationType Event) end to end: a real kindlingd with retry delays
scaled by --async-delay-scale 0.01 (Lambda's ~1 min / ~2 min become ~0.6 s / ~1.2 s), boto3 and the
AWS CLI.

Attempts are counted in a durable place: the function prints "ATTEMPT <request id> <epoch>" and
kindlingd writes every line to <data-dir>/logs/<function>.log; destination records and dead
letters are read from the local queues (/kindling/queues/NAME, docs/async.md).

Every wait is bounded (wait_for); the crash test prints its numbers (accepted, delivered,
duplicates).
"""

import base64
import json
import os
import re
import threading
import time

import pytest

import kindling_harness as h

DELAY_SCALE = "0.01"
ACCOUNT = "000000000000"

# attempt.py: records each attempt in the function's log, then does what the event asks.
ATTEMPT_PY = '''
import json, time

def handler(event, context):
    print("ATTEMPT %s %.3f" % (context.aws_request_id, time.time()), flush=True)
    mode = event.get("mode", "ok") if isinstance(event, dict) else "ok"
    if mode == "fail":
        raise RuntimeError("planned failure %s" % event.get("n"))
    if mode == "sleep":
        time.sleep(event.get("seconds", 0.5))
    return {"ok": True, "n": event.get("n") if isinstance(event, dict) else None}

def record(event, context):
    # A destination function: keeps the record it receives in its log, on one line.
    print("RECORD " + json.dumps(event, sort_keys=True), flush=True)
    return {"recorded": True}
'''


# ------------------------------------------------------------------------------------------------
# local helpers


@pytest.fixture(scope="module")
def adaemon():
    d = h.Daemon(idle_timeout=120, extra_args=["--async-delay-scale", DELAY_SCALE])
    try:
        d.start()
        yield d
        d.stop(check=True)
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def aclient(adaemon):
    return h.boto_client(adaemon.endpoint)


def make_function(client, name=None, handler="attempt.handler", **extra):
    name = name or h.unique_name("async")
    client.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler=handler,
                           Code={"ZipFile": h.python_zip("async", extra={"attempt.py": ATTEMPT_PY})},
                           Timeout=10, **extra)
    return name


def sqs_arn(queue):
    return "arn:aws:sqs:%s:%s:%s" % (h.REGION, ACCOUNT, queue)


def lambda_arn(fn):
    return "arn:aws:lambda:%s:%s:function:%s" % (h.REGION, ACCOUNT, fn)


def log_text(daemon, fn):
    try:
        with open(os.path.join(daemon.data_dir, "logs", fn + ".log"), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def attempts(daemon, fn):
    """{request id: [epoch of each attempt]} from the function's log."""
    out = {}
    for rid, at in re.findall(r"ATTEMPT (\S+) ([0-9.]+)", log_text(daemon, fn)):
        out.setdefault(rid, []).append(float(at))
    return out


def records(daemon, fn):
    return [json.loads(line) for line in re.findall(r"RECORD (\{.*\})", log_text(daemon, fn))]


def queue_messages(daemon, queue):
    status, _, body = h.raw(daemon.endpoint, "GET",
                            "/kindling/queues/%s?VisibilityTimeout=0&MaxNumberOfMessages=1000" % queue)
    assert status == 200, body
    return json.loads(body)["Messages"]


def wait_messages(daemon, queue, n, timeout=30):
    return h.wait_for(lambda: (lambda m: m if len(m) >= n else None)(queue_messages(daemon, queue)),
                      timeout, interval=0.1, what="%d message(s) in local queue %s" % (n, queue))


def invoke_event(client, fn, payload, **kw):
    r = client.invoke(FunctionName=fn, InvocationType="Event", Payload=json.dumps(payload).encode(), **kw)
    assert r["StatusCode"] == 202
    assert r["Payload"].read() == b""
    return r["ResponseMetadata"]["RequestId"]


def put_config(daemon, fn, body, qualifier=None):
    path = "/2019-09-25/functions/%s/event-invoke-config" % fn
    if qualifier:
        path += "?Qualifier=" + qualifier
    status, headers, data = h.raw(daemon.endpoint, "PUT", path, json.dumps(body),
                                  headers={"Content-Type": "application/json"})
    return status, h.error_type(headers, data), json.loads(data) if data else None


# ------------------------------------------------------------------------------------------------
# accept + deliver


def test_event_is_accepted_with_202_and_delivered(adaemon, aclient):
    fn = make_function(aclient)
    rid = invoke_event(aclient, fn, {"n": 1})
    got = h.wait_for(lambda: attempts(adaemon, fn).get(rid), 30, what="the event's delivery")
    assert len(got) == 1
    # The request id the caller saw is the one the function ran with.
    m = adaemon.metrics()
    assert m.get('kindling_async_events_accepted_total{function="%s"}' % fn) == 1
    h.wait_for(lambda: adaemon.metrics().get(
        'kindling_async_deliveries_total{function="%s",result="success"}' % fn) == 1, 10, what="metrics")


def test_event_with_the_aws_cli(adaemon, aclient, tmp_path):
    fn = make_function(aclient)
    out = tmp_path / "out.json"
    r = h.aws(adaemon.endpoint, "invoke", "--function-name", fn, "--invocation-type", "Event",
              "--cli-binary-format", "raw-in-base64-out", "--payload", '{"n": 2}', str(out))
    assert r["StatusCode"] == 202
    assert out.read_bytes() == b""
    h.wait_for(lambda: attempts(adaemon, fn), 30, what="delivery")


def test_raw_event_response_shape(adaemon, aclient):
    fn = make_function(aclient)
    status, headers, body = h.raw(adaemon.endpoint, "POST", "/2015-03-31/functions/%s/invocations" % fn,
                                  b'{"n": 3}', headers={"X-Amz-Invocation-Type": "Event"})
    assert status == 202 and body == b""
    assert re.fullmatch(r"[0-9a-f-]{36}", headers["x-amzn-requestid"])
    rid = headers["x-amzn-requestid"]
    h.wait_for(lambda: rid in attempts(adaemon, fn), 30, what="delivery")


def test_unknown_function_is_404_and_nothing_is_queued(adaemon, aclient):
    before = adaemon.metrics()
    with pytest.raises(aclient.exceptions.ResourceNotFoundException):
        aclient.invoke(FunctionName="no-such-fn-" + h.unique_name("x"), InvocationType="Event", Payload=b"{}")
    fn = make_function(aclient)
    with pytest.raises(aclient.exceptions.ResourceNotFoundException):
        aclient.invoke(FunctionName=fn, Qualifier="7", InvocationType="Event", Payload=b"{}")
    after = adaemon.metrics()
    accepted = lambda m: sum(v for k, v in m.items() if k.startswith("kindling_async_events_accepted_total"))
    assert accepted(after) == accepted(before)


def test_payload_limit_is_1mb(adaemon, aclient):
    fn = make_function(aclient)
    # Exactly 1 MB (1048576 bytes) of JSON is accepted ...
    filler = "x" * (1048576 - len('{"n": 9, "pad": ""}'))
    ok = json.dumps({"n": 9, "pad": filler}).encode()
    assert len(ok) == 1048576
    status, _, _ = h.raw(adaemon.endpoint, "POST", "/2015-03-31/functions/%s/invocations" % fn, ok,
                         headers={"X-Amz-Invocation-Type": "Event"})
    assert status == 202
    # ... one byte more is 413, as are 2 MB (a sync invoke would take both).
    for size in (1048577, 2 << 20):
        big = json.dumps({"pad": "y" * (size - len('{"pad": ""}'))}).encode()
        assert len(big) == size
        status, headers, body = h.raw(adaemon.endpoint, "POST", "/2015-03-31/functions/%s/invocations" % fn, big,
                                      headers={"X-Amz-Invocation-Type": "Event"})
        assert status == 413, body
        assert h.error_type(headers, body) == "RequestTooLargeException"
    with pytest.raises(aclient.exceptions.RequestTooLargeException):
        aclient.invoke(FunctionName=fn, InvocationType="Event", Payload=b'"' + b"z" * (1 << 20) + b'"')
    h.wait_for(lambda: len(attempts(adaemon, fn)) == 1, 30, what="the 1 MB event")
    time.sleep(0.5)
    assert len(attempts(adaemon, fn)) == 1


def test_invalid_json_payload_is_refused(adaemon, aclient):
    fn = make_function(aclient)
    status, headers, body = h.raw(adaemon.endpoint, "POST", "/2015-03-31/functions/%s/invocations" % fn,
                                  b"{not json", headers={"X-Amz-Invocation-Type": "Event"})
    assert status == 400 and h.error_type(headers, body) == "InvalidRequestContentException"


# ------------------------------------------------------------------------------------------------
# retries, destinations, dead letters


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_retry_schedule_after_function_errors(adaemon, aclient, retries):
    fn = make_function(aclient)
    queue = "failures-" + fn
    aclient.put_function_event_invoke_config(
        FunctionName=fn, MaximumRetryAttempts=retries,
        DestinationConfig={"OnFailure": {"Destination": sqs_arn(queue)}})
    t0 = time.time()
    rid = invoke_event(aclient, fn, {"mode": "fail", "n": retries})
    msgs = wait_messages(adaemon, queue, 1, timeout=30)
    record = json.loads(msgs[0]["Body"])
    assert msgs[0]["TargetArn"] == sqs_arn(queue)
    ctx = record["requestContext"]
    assert ctx == {"requestId": rid, "functionArn": lambda_arn(fn) + ":$LATEST",
                   "condition": "RetriesExhausted", "approximateInvokeCount": retries + 1}
    assert record["version"] == "1.0"
    assert record["requestPayload"] == {"mode": "fail", "n": retries}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert record["responsePayload"]["errorMessage"] == "planned failure %d" % retries
    # The function ran 1 + retries times under the same request id, ~0.6 s then ~1.2 s apart.
    times = attempts(adaemon, fn)[rid]
    assert len(times) == retries + 1, times
    gaps = [b - a for a, b in zip(times, times[1:])]
    expected = [0.6, 1.2][:retries]
    for gap, want in zip(gaps, expected):
        assert want * 0.9 <= gap <= want + 3.0, (gaps, expected)
    # No further attempt after the record.
    time.sleep(1.5)
    assert len(attempts(adaemon, fn)[rid]) == retries + 1
    assert time.time() - t0 < 30


def test_default_is_two_retries_and_a_success_stops_them(adaemon, aclient):
    fn = make_function(aclient)
    queue = "ok-" + fn
    aclient.put_function_event_invoke_config(FunctionName=fn, DestinationConfig={
        "OnSuccess": {"Destination": sqs_arn(queue)}})
    failing = invoke_event(aclient, fn, {"mode": "fail", "n": 1})
    fine = invoke_event(aclient, fn, {"mode": "ok", "n": 2})
    h.wait_for(lambda: len(attempts(adaemon, fn).get(failing, [])) == 3, 30, what="3 attempts (default retries)")
    msgs = wait_messages(adaemon, queue, 1)
    assert len(msgs) == 1, "no OnSuccess record for a failed event"
    rec = json.loads(msgs[0]["Body"])
    assert rec["requestContext"]["requestId"] == fine
    assert rec["requestContext"]["condition"] == "Success"
    assert rec["requestContext"]["approximateInvokeCount"] == 1
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert rec["responsePayload"] == {"ok": True, "n": 2}
    assert len(attempts(adaemon, fn)[fine]) == 1


def test_destinations_to_lambda_functions(adaemon, aclient):
    dest = make_function(aclient, handler="attempt.record")
    fn = make_function(aclient)
    aclient.put_function_event_invoke_config(
        FunctionName=fn, MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": lambda_arn(dest)},
                           "OnFailure": {"Destination": lambda_arn(dest)}})
    ok = invoke_event(aclient, fn, {"mode": "ok", "n": 10})
    bad = invoke_event(aclient, fn, {"mode": "fail", "n": 11})
    got = h.wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(records(adaemon, dest)), 30,
                     what="two records at the destination function")
    by_id = {r["requestContext"]["requestId"]: r for r in got}
    assert by_id[ok]["requestContext"]["condition"] == "Success"
    assert by_id[ok]["responsePayload"] == {"ok": True, "n": 10}
    assert by_id[bad]["requestContext"]["condition"] == "RetriesExhausted"
    assert by_id[bad]["requestContext"]["approximateInvokeCount"] == 1
    assert by_id[bad]["responseContext"]["functionError"] == "Unhandled"
    assert by_id[bad]["requestPayload"] == {"mode": "fail", "n": 11}
    for r in got:
        assert set(r) == {"version", "timestamp", "requestContext", "requestPayload", "responseContext",
                          "responsePayload"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["timestamp"])
        assert r["requestContext"]["functionArn"] == lambda_arn(fn) + ":$LATEST"


def test_dead_letter_queue(adaemon, aclient):
    dlq = "dlq-" + h.unique_name("q")
    fn = make_function(aclient, DeadLetterConfig={"TargetArn": sqs_arn(dlq)})
    conf = aclient.get_function_configuration(FunctionName=fn)
    assert conf["DeadLetterConfig"] == {"TargetArn": sqs_arn(dlq)}
    aclient.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=1)
    rid = invoke_event(aclient, fn, {"mode": "fail", "n": 42})
    msgs = wait_messages(adaemon, dlq, 1)
    m = msgs[0]
    assert json.loads(m["Body"]) == {"mode": "fail", "n": 42}  # the event itself
    attrs = m["MessageAttributes"]
    assert attrs["RequestID"] == {"DataType": "String", "StringValue": rid}
    assert attrs["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert attrs["ErrorMessage"]["StringValue"] == "planned failure 42"
    assert len(attempts(adaemon, fn)[rid]) == 2
    # Receive (visibility) and delete, as a consumer would.
    status, _, body = h.raw(adaemon.endpoint, "GET", "/kindling/queues/%s?VisibilityTimeout=30" % dlq)
    got = json.loads(body)["Messages"]
    assert len(got) == 1 and got[0]["ReceiptHandle"]
    assert queue_messages(adaemon, dlq) == [], "a received message is invisible"
    status, _, _ = h.raw(adaemon.endpoint, "DELETE", "/kindling/queues/%s/messages/%s" % (dlq, got[0]["ReceiptHandle"]))
    assert status == 200
    status, _, _ = h.raw(adaemon.endpoint, "DELETE", "/kindling/queues/%s/messages/%s" % (dlq, got[0]["MessageId"]))
    assert status == 404
    # The DLQ is changed / cleared by UpdateFunctionConfiguration.
    aclient.update_function_configuration(FunctionName=fn, DeadLetterConfig={"TargetArn": ""})
    assert "DeadLetterConfig" not in aclient.get_function_configuration(FunctionName=fn)


def test_invalid_dead_letter_targets(adaemon, aclient):
    fn = make_function(aclient)
    for target, code in ((lambda_arn("x"), "InvalidParameterValueException"),
                         ("arn:aws:s3:::bucket", "InvalidParameterValueException"),
                         ("not-an-arn", "ValidationException")):
        status, headers, body = h.raw(adaemon.endpoint, "PUT", "/2015-03-31/functions/%s/configuration" % fn,
                                      json.dumps({"DeadLetterConfig": {"TargetArn": target}}))
        assert status == 400 and h.error_type(headers, body) == code, (target, body)


def test_event_age_expiry_while_throttled(adaemon, aclient):
    """Reserved concurrency 0 throttles every delivery: the event is requeued with backoff until
    MaximumEventAgeInSeconds (60, the minimum) and then goes to OnFailure as EventAgeExceeded."""
    fn = make_function(aclient)
    queue = "aged-" + fn
    aclient.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=0)
    aclient.put_function_event_invoke_config(FunctionName=fn, MaximumEventAgeInSeconds=60,
                                             DestinationConfig={"OnFailure": {"Destination": sqs_arn(queue)}})
    t0 = time.time()
    rid = invoke_event(aclient, fn, {"n": 60})
    h.wait_for(lambda: adaemon.metrics().get(
        'kindling_async_deliveries_total{function="%s",result="throttled"}' % fn, 0) >= 3, 20,
        what="throttled deliveries")
    msgs = wait_messages(adaemon, queue, 1, timeout=90)
    elapsed = time.time() - t0
    assert 59 <= elapsed <= 75, elapsed
    rec = json.loads(msgs[0]["Body"])
    assert rec["requestContext"]["condition"] == "EventAgeExceeded"
    assert rec["requestContext"]["requestId"] == rid
    assert rec["requestContext"]["approximateInvokeCount"] == 0
    assert "responseContext" not in rec
    assert attempts(adaemon, fn) == {}
    throttles = adaemon.metrics()['kindling_async_deliveries_total{function="%s",result="throttled"}' % fn]
    # Backoff doubles from 10 ms (scaled 1 s) to 3 s (scaled 5 min): ~25 tries in 60 s, not thousands.
    assert 10 <= throttles <= 60, throttles
    aclient.delete_function_concurrency(FunctionName=fn)


# ------------------------------------------------------------------------------------------------
# the event-invoke-config API


def test_event_invoke_config_crud_with_boto3(adaemon, aclient):
    fn = make_function(aclient)
    with pytest.raises(aclient.exceptions.ResourceNotFoundException):
        aclient.get_function_event_invoke_config(FunctionName=fn)
    put = aclient.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=1,
                                                   MaximumEventAgeInSeconds=300)
    assert put["FunctionArn"] == lambda_arn(fn) + ":$LATEST"
    assert put["MaximumRetryAttempts"] == 1 and put["MaximumEventAgeInSeconds"] == 300
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    assert abs(put["LastModified"].timestamp() - time.time()) < 60
    got = aclient.get_function_event_invoke_config(FunctionName=fn)
    assert got["MaximumRetryAttempts"] == 1
    # Update merges ...
    upd = aclient.update_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": sqs_arn("f")}})
    assert upd["MaximumRetryAttempts"] == 1 and upd["MaximumEventAgeInSeconds"] == 300
    assert upd["DestinationConfig"]["OnFailure"] == {"Destination": sqs_arn("f")}
    # ... Put replaces.
    put = aclient.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=0)
    assert "MaximumEventAgeInSeconds" not in put and put["DestinationConfig"]["OnFailure"] == {}
    listed = aclient.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"]
    assert [c["FunctionArn"] for c in listed] == [lambda_arn(fn) + ":$LATEST"]
    aclient.delete_function_event_invoke_config(FunctionName=fn)
    with pytest.raises(aclient.exceptions.ResourceNotFoundException):
        aclient.delete_function_event_invoke_config(FunctionName=fn)
    with pytest.raises(aclient.exceptions.ResourceNotFoundException):
        aclient.update_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=1)
    assert aclient.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"] == []
    with pytest.raises(aclient.exceptions.ResourceNotFoundException):
        aclient.put_function_event_invoke_config(FunctionName="no-such-" + fn, MaximumRetryAttempts=1)


def test_event_invoke_config_with_the_aws_cli(adaemon, aclient):
    fn = make_function(aclient)
    out = h.aws(adaemon.endpoint, "put-function-event-invoke-config", "--function-name", fn,
                "--maximum-retry-attempts", "2", "--destination-config",
                json.dumps({"OnSuccess": {"Destination": lambda_arn(fn + "-dest")}}))
    assert out["MaximumRetryAttempts"] == 2
    assert out["DestinationConfig"]["OnSuccess"]["Destination"] == lambda_arn(fn + "-dest")
    got = h.aws(adaemon.endpoint, "get-function-event-invoke-config", "--function-name", fn)
    assert got["FunctionArn"] == lambda_arn(fn) + ":$LATEST"
    listed = h.aws(adaemon.endpoint, "list-function-event-invoke-configs", "--function-name", fn)
    assert len(listed["FunctionEventInvokeConfigs"]) == 1
    h.aws(adaemon.endpoint, "delete-function-event-invoke-config", "--function-name", fn)
    rc, _, err = h.aws(adaemon.endpoint, "get-function-event-invoke-config", "--function-name", fn, check=False)
    assert rc != 0 and "ResourceNotFoundException" in err


@pytest.mark.parametrize("body,code,fragment", [
    ({"MaximumRetryAttempts": 3}, "ValidationException", "maximumRetryAttempts"),
    ({"MaximumRetryAttempts": -1}, "ValidationException", "maximumRetryAttempts"),
    ({"MaximumEventAgeInSeconds": 59}, "ValidationException", "maximumEventAgeInSeconds"),
    ({"MaximumEventAgeInSeconds": 21601}, "ValidationException", "maximumEventAgeInSeconds"),
    ({"MaximumRetryAttempts": "two"}, "InvalidParameterValueException", "MaximumRetryAttempts"),
    ({"DestinationConfig": {"OnSuccess": {"Destination": "queue-name"}}}, "ValidationException",
     "destinationConfig.onSuccess.destination"),
    ({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:dynamodb:us-east-1:000000000000:table/t"}}},
     "InvalidParameterValueException", "is invalid"),
    ({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:s3:::bucket"}}},
     "InvalidParameterValueException", "not supported"),
    ({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:lambda:eu-west-1:000000000000:function:f"}}},
     "InvalidParameterValueException", "region"),
    ({"DestinationConfig": "sqs"}, "InvalidParameterValueException", "DestinationConfig"),
])
def test_invalid_event_invoke_configs(adaemon, aclient, body, code, fragment):
    fn = make_function(aclient) if not hasattr(test_invalid_event_invoke_configs, "fn") else \
        test_invalid_event_invoke_configs.fn
    test_invalid_event_invoke_configs.fn = fn
    status, etype, doc = put_config(adaemon, fn, body)
    assert status == 400 and etype == code, doc
    assert fragment in doc["message"], doc
    status, _, _ = h.raw(adaemon.endpoint, "GET", "/2019-09-25/functions/%s/event-invoke-config" % fn)
    assert status == 404, "a refused Put stores nothing"


def test_event_invoke_config_for_unknown_qualifier_and_bad_list_args(adaemon, aclient):
    fn = make_function(aclient)
    status, etype, _ = put_config(adaemon, fn, {"MaximumRetryAttempts": 1}, qualifier="99")
    assert status == 404 and etype == "ResourceNotFoundException"
    status, headers, body = h.raw(adaemon.endpoint, "GET",
                                  "/2019-09-25/functions/%s/event-invoke-config/list?MaxItems=51" % fn)
    assert status == 400 and h.error_type(headers, body) == "ValidationException"


def test_configs_go_with_their_function(adaemon, aclient):
    fn = make_function(aclient)
    aclient.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=0)
    aclient.delete_function(FunctionName=fn)
    make_function(aclient, name=fn)
    with pytest.raises(aclient.exceptions.ResourceNotFoundException):
        aclient.get_function_event_invoke_config(FunctionName=fn)


def test_local_queue_api_errors(adaemon):
    status, headers, body = h.raw(adaemon.endpoint, "GET", "/kindling/queues/bad%20name")
    assert status == 400
    status, _, body = h.raw(adaemon.endpoint, "GET", "/kindling/queues/empty-queue?MaxNumberOfMessages=0")
    assert status == 400
    status, _, body = h.raw(adaemon.endpoint, "GET", "/kindling/queues/empty-queue")
    assert status == 200 and json.loads(body) == {"Messages": []}
    status, _, body = h.raw(adaemon.endpoint, "GET", "/kindling/queues")
    assert status == 200 and "Queues" in json.loads(body)


def test_async_metrics(adaemon):
    m = adaemon.metrics()
    for key in ("kindling_async_queue_depth", "kindling_async_oldest_event_age_seconds",
                "kindling_async_deliveries_in_flight", "kindling_async_event_age_seconds_count"):
        assert key in m, key
    assert any(k.startswith("kindling_async_retries_total") for k in m)
    assert any(k.startswith("kindling_async_events_failed_total") for k in m)


# ------------------------------------------------------------------------------------------------
# crash safety


def test_kill_9_under_async_load_loses_no_accepted_event(new_daemon):
    """200 events from 4 client threads; kindlingd is killed with SIGKILL while they are being
    accepted and delivered, restarted on the same data dir, and every event that got a 202 must
    run at least once. Duplicates (at-least-once) are counted and reported."""
    d = new_daemon(idle_timeout=120, extra_args=["--async-delay-scale", DELAY_SCALE])
    client = h.boto_client(d.endpoint)
    fn = make_function(client)
    accepted, refused, lock = [], [], threading.Lock()
    kill_at = 100
    killed = threading.Event()

    def sender(tid):
        for i in range(50):
            payload = json.dumps({"mode": "sleep", "seconds": 0.02, "n": "%d-%d" % (tid, i)})
            try:
                status, headers, _ = h.raw(d.endpoint, "POST", "/2015-03-31/functions/%s/invocations" % fn,
                                           payload, headers={"X-Amz-Invocation-Type": "Event"}, timeout=10)
            except OSError:
                with lock:
                    refused.append((tid, i))
                if killed.is_set():
                    time.sleep(0.05)
                continue
            with lock:
                if status == 202:
                    accepted.append(headers["x-amzn-requestid"])
                else:
                    refused.append((tid, i, status))

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    h.wait_for(lambda: len(accepted) >= kill_at, 60, interval=0.005, what="%d accepted events" % kill_at)
    d.kill()  # SIGKILL to the daemon's process group
    killed.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    accepted_before_restart = len(accepted)
    delivered_before = set(attempts(d, fn))
    d.start()  # same data dir
    missing = lambda: [r for r in accepted if r not in attempts(d, fn)]
    h.wait_for(lambda: not missing(), 120, interval=0.2, what="every accepted event delivered")
    seen = attempts(d, fn)
    duplicates = {r: len(seen[r]) for r in accepted if len(seen[r]) > 1}
    unknown = set(seen) - set(accepted)
    print("\nasync crash safety: %d accepted (202) before kill -9, %d refused/failed sends, %d delivered "
          "before the kill, %d delivered in total, %d lost, %d duplicated (%d extra runs), %d runs of events "
          "whose 202 never reached the client"
          % (accepted_before_restart, len(refused), len(delivered_before & set(accepted)),
             len([r for r in accepted if r in seen]), len(missing()), len(duplicates),
             sum(n - 1 for n in duplicates.values()), len(unknown)))
    assert not missing()
    assert accepted_before_restart >= kill_at
    # Nothing stays queued.
    h.wait_for(lambda: d.metrics().get("kindling_async_queue_depth") == 0, 30, what="an empty queue")
