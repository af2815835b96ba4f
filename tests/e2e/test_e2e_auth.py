"""Authentication and exposure (docs/security.md, "Authentication and exposure"): kindlingd --auth on
verifies AWS Signature Version 4 on every API request against <data-dir>/credentials. boto3 and the
AWS CLI with the generated keys just work; wrong secrets, unknown keys, unsigned and stale requests
get AWS's 403s; the credentials file is owner-only; a non-loopback listener without authentication
is refused at startup (never actually served here)."""

import configparser
import datetime
import json
import os
import re
import shutil
import stat
import subprocess
import urllib.error
import urllib.request
from unittest import mock

import botocore.auth
import botocore.credentials
import boto3
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError

import kindling_harness as h
from kindling_harness import create_fn, invoke

AUTH_ON = ["--auth", "on"]


def read_credentials(daemon):
    path = os.path.join(daemon.data_dir, "credentials")
    ini = configparser.ConfigParser()
    ini.read(path)
    return path, ini["default"]["aws_access_key_id"], ini["default"]["aws_secret_access_key"]


def client_for(endpoint, key, secret):
    return boto3.client(
        "lambda", endpoint_url=endpoint, region_name=h.REGION,
        aws_access_key_id=key, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=10))


def cli(endpoint, key, secret, *args):
    """The AWS CLI with explicit keys (kindling_harness.aws() pins dummy ones); (rc, stdout, stderr)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
           "AWS_DEFAULT_REGION": h.REGION, "AWS_CONFIG_FILE": "/nonexistent/kindling-e2e-config",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/kindling-e2e-credentials", "AWS_MAX_ATTEMPTS": "1",
           "AWS_PAGER": "", "AWS_EC2_METADATA_DISABLED": "true"}
    p = subprocess.run([h.AWS_CLI, "--endpoint-url", endpoint, "--output", "json", "lambda"] + list(args),
                       env=env, capture_output=True, text=True, timeout=90)
    return p.returncode, p.stdout, p.stderr


def signed_at(endpoint, key, secret, when, method="GET", path="/2015-03-31/functions/"):
    """A raw request signed by botocore's SigV4Auth as if the clock read `when` (naive UTC)."""
    class Clock(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return when

        @classmethod
        def now(cls, tz=None):
            return when if tz is None else when.replace(tzinfo=tz)

    req = AWSRequest(method=method, url=endpoint + path, data=b"", headers={})
    with mock.patch("botocore.auth.datetime.datetime", Clock):
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(key, secret), "lambda", h.REGION).add_auth(req)
    return h.raw(endpoint, method, path, headers=dict(req.prepare().headers))


def assert_denied(status, headers, body, error):
    assert status == 403, (status, body)
    assert h.error_type(headers, body) == error, (headers, body)


def run_kindlingd(args, timeout=30):
    return subprocess.run([h.KINDLINGD] + args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_generated_credentials_work_with_boto3_and_cli(new_daemon, packages):
    d = new_daemon(extra_args=AUTH_ON)
    path, key, secret = read_credentials(d)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.stat(path).st_uid == os.geteuid()
    assert re.fullmatch(r"KDLG[A-Z2-7]{16}", key) and len(secret) == 40
    log = d.log()
    assert "aws configure set --profile kindling aws_access_key_id " + key in log, log
    assert secret not in log  # the secret is never logged

    c = client_for(d.endpoint, key, secret)
    name = h.unique_name("auth")
    create_fn(c, name, packages["python"])
    resp, body = invoke(c, name, {"hello": "signed"})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    assert body["event"] == {"hello": "signed"}

    # Code.Location is presigned with the caller's key (10 minutes); without the signature it is refused.
    location = c.get_function(FunctionName=name)["Code"]["Location"]
    assert "X-Amz-Signature=" in location, location
    with urllib.request.urlopen(location, timeout=30) as r:
        assert r.status == 200 and r.read()[:2] == b"PK"
    status, headers, data = h.raw(d.endpoint, "GET", location.split(d.endpoint, 1)[1].split("?", 1)[0])
    assert_denied(status, headers, data, "MissingAuthenticationTokenException")

    # The AWS CLI with the generated keys (environment variables).
    rc, out, err = cli(d.endpoint, key, secret, "list-functions")
    assert rc == 0, err
    assert name in [f["FunctionName"] for f in json.loads(out)["Functions"]]
    rc, out, err = cli(d.endpoint, key, secret, "get-function-configuration", "--function-name",
                       "arn:aws:lambda:%s:000000000000:function:%s" % (h.REGION, name))
    assert rc == 0 and json.loads(out)["FunctionName"] == name, err
    rc, out, err = cli(d.endpoint, key, "x" * 40, "list-functions")
    assert rc != 0 and "InvalidSignatureException" in err, (rc, err)

    # The file is reused, not regenerated, on restart.
    d.stop(check=True)
    d.start()
    assert read_credentials(d)[1:] == (key, secret)
    assert c.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def test_bad_requests_get_aws_403s(new_daemon):
    d = new_daemon(extra_args=AUTH_ON)
    _, key, secret = read_credentials(d)

    with pytest.raises(ClientError) as e:
        client_for(d.endpoint, key, secret[:-1] + ("A" if secret[-1] != "A" else "B")).list_functions()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"

    with pytest.raises(ClientError) as e:
        client_for(d.endpoint, "KDLGNOBODYNOBODY0000", secret).list_functions()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert "security token included in the request is invalid" in e.value.response["Error"]["Message"]

    # The harness's dummy keys (what unauthenticated-mode tests send) are unknown here.
    with pytest.raises(ClientError) as e:
        h.boto_client(d.endpoint).list_functions()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"

    # Unsigned raw requests, every kind of route.
    for method, path in [("GET", "/2015-03-31/functions/"), ("POST", "/2015-03-31/functions/x/invocations"),
                         ("GET", "/kindling/code/" + "0" * 64 + ".zip"), ("GET", "/2016-08-19/account-settings/"),
                         ("GET", "/nonexistent")]:
        status, headers, body = h.raw(d.endpoint, method, path)
        assert_denied(status, headers, body, "MissingAuthenticationTokenException")
    status, headers, body = h.raw(d.endpoint, "GET", "/2015-03-31/functions/",
                                  headers={"Authorization": "AWS4-HMAC-SHA256 Credential=" + key})
    assert_denied(status, headers, body, "IncompleteSignatureException")

    # Signed 10 minutes in the past (or future): outside the ±5 minute window. Now: accepted.
    now = datetime.datetime.utcnow()
    status, headers, body = signed_at(d.endpoint, key, secret, now - datetime.timedelta(minutes=10))
    assert_denied(status, headers, body, "InvalidSignatureException")
    assert b"Signature expired" in body, body
    status, headers, body = signed_at(d.endpoint, key, secret, now + datetime.timedelta(minutes=10))
    assert_denied(status, headers, body, "InvalidSignatureException")
    assert b"Signature not yet current" in body, body
    status, _, body = signed_at(d.endpoint, key, secret, now)
    assert status == 200, body

    # /metrics stays readable without a signature on a loopback listener (documented).
    assert h.raw(d.endpoint, "GET", "/metrics")[0] == 200


@pytest.fixture
def scratch():
    base = h.make_private_tmpdir("kindling-e2e-auth-")
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_credentials_file_must_be_owner_only(new_daemon, scratch):
    base = scratch
    data = os.path.join(base, "data")
    os.makedirs(data, mode=0o711)
    path = os.path.join(data, "credentials")
    with open(path, "w") as f:
        f.write("[default]\naws_access_key_id = KDLGAAAAAAAAAAAAAAAA\naws_secret_access_key = %s\n" % ("s" * 40))
    os.chmod(path, 0o644)
    p = run_kindlingd(["--listen", "127.0.0.1:%d" % h.free_port(), "--data-dir", data, "--auth", "on"])
    assert p.returncode != 0
    assert "mode 0644" in p.stderr and "chmod 600" in p.stderr, p.stderr
    # Fixed permissions: it starts and accepts that user.
    os.chmod(path, 0o600)
    d = new_daemon(data_dir=data, extra_args=AUTH_ON)
    resp = client_for(d.endpoint, "KDLGAAAAAAAAAAAAAAAA", "s" * 40).list_functions()
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_non_loopback_listen_without_auth_refused(scratch):
    data = os.path.join(scratch, "data")
    for listen in ["0.0.0.0:%d" % h.free_port(), "[::]:%d" % h.free_port()]:
        for extra in ([], ["--auth", "off"]):
            p = run_kindlingd(["--listen", listen, "--data-dir", data] + extra)
            assert p.returncode != 0, (listen, extra)
            assert "refusing to listen on non-loopback address" in p.stderr, p.stderr
            assert "--allow-unauthenticated" in p.stderr
    # Refused before anything is created.
    assert not os.path.exists(data)
    p = run_kindlingd(["--listen", "127.0.0.1:1", "--auth", "maybe", "--data-dir", data])
    assert p.returncode != 0
