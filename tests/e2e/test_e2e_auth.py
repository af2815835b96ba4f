"""Authentication and exposure (docs/security.md, "Authentication and exposure"): kindlingd verifies
AWS Signature Version 4 on every API request against <data-dir>/credentials, by default. boto3, the
AWS CLI (with the profile kindlingd prints on first start) and the AWS SDK for JavaScript with the
generated keys just work; wrong secrets, unknown keys, unsigned and stale requests get AWS's 403s;
the credentials file is owner-only; a non-loopback listener without authentication is refused at
startup (never actually served here)."""

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
    return h.raw(endpoint, method, path, headers=dict(req.prepare().headers), sign=False)


def assert_denied(status, headers, body, error):
    assert status == 403, (status, body)
    assert h.error_type(headers, body) == error, (headers, body)


def run_kindlingd(args, timeout=30):
    return subprocess.run([h.KINDLINGD] + args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def printed_profile(log):
    """The first-start instructions kindlingd printed: ({file: INI text}, endpoint from the `aws`
    command line, {env var: value})."""
    lines = log.splitlines()
    files, current = {"credentials": [], "config": []}, None
    endpoint, env = None, {}
    for line in lines:
        if line.startswith("kindlingd: "):
            current = None
            if line.endswith("add to ~/.aws/credentials:"):
                current = "credentials"
            elif line.endswith("and to ~/.aws/config:"):
                current = "config"
            elif line.startswith("kindlingd: then: aws "):
                endpoint = line.split("--endpoint-url ", 1)[1].split()[0]
            elif line.startswith("kindlingd: or in the environment: "):
                env = dict(kv.split("=", 1) for kv in line.split(": ", 2)[2].split())
        elif current:
            files[current].append(line)
    return {k: "\n".join(v) + "\n" for k, v in files.items()}, endpoint, env


def test_generated_credentials_work_with_boto3_and_cli(new_daemon, packages):
    d = new_daemon(extra_args=AUTH_ON)
    path, key, secret = read_credentials(d)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.stat(path).st_uid == os.geteuid()
    assert re.fullmatch(r"KDLG[A-Z2-7]{16}", key) and len(secret) == 40
    log = d.log(tail=10 ** 7)
    # Printed once, on the start that created the file: a profile with the keys.
    files, _, _ = printed_profile(log)
    assert "aws_access_key_id = " + key in files["credentials"], log
    assert "aws_secret_access_key = " + secret in files["credentials"], log
    assert log.count(secret) == 2, log  # the credentials block and the environment line, nowhere else

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
    status, headers, data = h.raw(d.endpoint, "GET", location.split(d.endpoint, 1)[1].split("?", 1)[0], sign=False)
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

    # The file is reused, not regenerated, on restart; the secret is not printed again, only where
    # the credentials file is.
    d.stop(check=True)
    before = len(d.log(tail=10 ** 7))
    d.start()
    assert read_credentials(d)[1:] == (key, secret)
    assert c.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    restart_log = d.log(tail=10 ** 7)[before:]
    assert secret not in restart_log and key not in restart_log, restart_log
    assert "authentication on (SigV4): 1 user(s) in %s" % path in restart_log, restart_log


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

    # The harness's dummy keys are unknown here.
    with pytest.raises(ClientError) as e:
        h.boto_client(d.endpoint, keys=h.DUMMY_KEYS).list_functions()
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"

    # Unsigned raw requests, every kind of route.
    for method, path in [("GET", "/2015-03-31/functions/"), ("POST", "/2015-03-31/functions/x/invocations"),
                         ("GET", "/kindling/code/" + "0" * 64 + ".zip"), ("GET", "/2016-08-19/account-settings/"),
                         ("GET", "/nonexistent")]:
        status, headers, body = h.raw(d.endpoint, method, path, sign=False)
        assert_denied(status, headers, body, "MissingAuthenticationTokenException")
    status, headers, body = h.raw(d.endpoint, "GET", "/2015-03-31/functions/", sign=False,
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
    assert h.raw(d.endpoint, "GET", "/metrics", sign=False)[0] == 200


def test_default_start_requires_auth(new_daemon):
    """kindlingd with no --auth flag verifies signatures; --auth off stays possible on loopback."""
    d = new_daemon()  # only --listen / --data-dir (and --idle-timeout unset)
    assert "--auth" not in d.extra_args
    assert os.path.exists(d.credentials_path)
    for method, path in [("GET", "/2015-03-31/functions/"), ("POST", "/2015-03-31/functions/x/invocations")]:
        status, headers, body = h.raw(d.endpoint, method, path, sign=False)
        assert status == 403, (status, body)
        # AWS's error shape: the code in x-amzn-ErrorType, {"Type": "User", "message": ...} as the body.
        assert headers["x-amzn-errortype"].split(":")[0] == "MissingAuthenticationTokenException", headers
        assert headers.get("x-amzn-requestid"), headers
        doc = json.loads(body)
        assert doc["Type"] == "User" and doc["message"] == "Missing Authentication Token", doc
    with pytest.raises(ClientError) as e:
        h.boto_client(d.endpoint, keys=h.DUMMY_KEYS).list_functions()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    rc, _, err = h.aws(d.endpoint, "list-functions", keys=h.DUMMY_KEYS, check=False)
    assert rc != 0 and "UnrecognizedClientException" in err, err
    # Signed with the generated keys: served.
    assert h.raw(d.endpoint, "GET", "/2015-03-31/functions/")[0] == 200
    assert "Functions" in h.aws(d.endpoint, "list-functions")

    off = new_daemon(extra_args=["--auth", "off"])
    assert not os.path.exists(off.credentials_path)
    status, _, body = h.raw(off.endpoint, "GET", "/2015-03-31/functions/", sign=False)
    assert status == 200, body
    assert "authentication off (--auth off)" in off.log()


def test_printed_profile_works_with_the_aws_cli(new_daemon, packages, scratch):
    """What kindlingd prints on first start, pasted as it says, works with the real AWS CLI."""
    d = new_daemon()
    files, endpoint, env = printed_profile(d.log(tail=10 ** 7))
    assert endpoint == d.endpoint
    home = os.path.join(scratch, "home")
    os.makedirs(os.path.join(home, ".aws"))
    for name, text in files.items():
        with open(os.path.join(home, ".aws", name), "w") as f:
            f.write(text)
    assert "[profile kindling]" in files["config"] and "endpoint_url = " + d.endpoint in files["config"]
    base_env = {"PATH": "/usr/bin:/bin", "HOME": home, "AWS_MAX_ATTEMPTS": "1", "AWS_PAGER": "",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def run(args, env):
        p = subprocess.run([h.AWS_CLI, "--output", "json"] + args, env=env, capture_output=True, text=True,
                           timeout=90, cwd=home)
        return p.returncode, p.stdout, p.stderr

    name = h.unique_name("profile")
    zip_path = os.path.join(scratch, "fn.zip")
    with open(zip_path, "wb") as f:
        f.write(packages["python"].v1)
    # ~/.aws/credentials + ~/.aws/config, --profile kindling (and --endpoint-url, which this CLI
    # version needs: it predates endpoint_url in the config file).
    profile = ["--profile", "kindling", "--endpoint-url", endpoint, "lambda"]
    rc, out, err = run(profile + ["create-function", "--function-name", name, "--runtime", "python3.12",
                                  "--handler", "app.handler", "--role", h.ROLE, "--zip-file", "fileb://" + zip_path],
                       base_env)
    assert rc == 0, err
    out_file = os.path.join(scratch, "out.json")
    rc, out, err = run(profile + ["invoke", "--function-name", name, "--cli-binary-format", "raw-in-base64-out",
                                  "--payload", '{"via": "profile"}', out_file], base_env)
    assert rc == 0 and json.loads(out)["StatusCode"] == 200, err
    with open(out_file) as f:
        assert json.load(f)["event"] == {"via": "profile"}
    # The environment variables form, no files at all.
    env_only = dict(base_env, AWS_CONFIG_FILE="/nonexistent/config", AWS_SHARED_CREDENTIALS_FILE="/nonexistent/creds")
    env_only.update(env)
    assert set(env) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL"}, env
    rc, out, err = run(["--endpoint-url", env["AWS_ENDPOINT_URL"], "lambda", "list-functions"], env_only)
    assert rc == 0 and name in [f["FunctionName"] for f in json.loads(out)["Functions"]], err
    # A profile with the secret changed is refused.
    with open(os.path.join(home, ".aws", "credentials"), "w") as f:
        f.write(re.sub(r"aws_secret_access_key = .*", "aws_secret_access_key = " + "x" * 40, files["credentials"]))
    rc, out, err = run(profile + ["list-functions"], base_env)
    assert rc != 0 and "InvalidSignatureException" in err, (rc, err)


JS_DIR = os.path.join(h.REPO, "tests", "js")


def _js_sdk_skip_reason():
    if not os.path.exists("/usr/bin/node"):
        return "node is not installed (/usr/bin/node)"
    if os.path.isdir(os.path.join(JS_DIR, "node_modules", "@aws-sdk", "client-lambda")):
        return None
    if not shutil.which("npm"):
        return "npm is not installed, so @aws-sdk/client-lambda cannot be installed (scripts/deps.sh)"
    p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR,
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        return "npm ci in tests/js failed (npm registry unreachable?): " + p.stderr.strip()[-300:]
    return None


def js_invoke(endpoint, key, secret, name, payload):
    p = subprocess.run(["/usr/bin/node", os.path.join(JS_DIR, "invoke.mjs"), endpoint, key, secret, name,
                        json.dumps(payload)], capture_output=True, text=True, timeout=90, cwd=JS_DIR,
                       env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_js_sdk_invokes_with_the_right_keys_only(new_daemon, packages):
    """The AWS SDK for JavaScript v3 (@aws-sdk/client-lambda from npm, pinned in tests/js)."""
    why = _js_sdk_skip_reason()
    if why:
        pytest.skip(why)
    d = new_daemon()
    key, secret = d.keys
    name = h.unique_name("js")
    create_fn(h.boto_client(d.endpoint), name, packages["node"])
    out = js_invoke(d.endpoint, key, secret, name, {"from": "js-sdk"})
    assert out["ok"], out
    assert out["statusCode"] == 200 and out["functionError"] is None, out
    assert out["payload"]["event"] == {"from": "js-sdk"} and out["payload"]["runtime"] == "node", out
    assert name in out["functions"], out
    wrong = js_invoke(d.endpoint, key, "y" * 40, name, {})
    assert not wrong["ok"] and wrong["status"] == 403 and wrong["name"] == "InvalidSignatureException", wrong
    unknown = js_invoke(d.endpoint, "KDLGNOBODYNOBODY0000", secret, name, {})
    assert not unknown["ok"] and unknown["status"] == 403 and unknown["name"] == "UnrecognizedClientException", unknown


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
    # (Without --auth off kindlingd authenticates and may listen anywhere; tests never serve on a
    # non-loopback address, so that case is not started here.)
    for listen in ["0.0.0.0:%d" % h.free_port(), "[::]:%d" % h.free_port()]:
        for extra in (["--auth", "off"], ["--auth=off", "--region", "us-east-1"]):
            p = run_kindlingd(["--listen", listen, "--data-dir", data] + extra)
            assert p.returncode != 0, (listen, extra)
            assert "refusing to listen on non-loopback address" in p.stderr, p.stderr
            assert "--allow-unauthenticated" in p.stderr
    # Refused before anything is created.
    assert not os.path.exists(data)
    p = run_kindlingd(["--listen", "127.0.0.1:1", "--auth", "maybe", "--data-dir", data])
    assert p.returncode != 0
