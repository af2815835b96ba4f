#!/usr/bin/env python3
"""Writes the seed corpora of the Kindling fuzz targets into fuzz/corpus/<target>/ (a few small,
valid or near-valid inputs each). Deterministic; re-run after changing it. Crash reproducers kept as
regression seeds are named crash-* and are not touched."""
import io
import json
import os
import struct
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def make_zip(entries, symlinks=()):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if name.endswith("bootstrap") else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, body)
        for name, target in symlinks:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o120777 << 16
            z.writestr(info, target)
    return buf.getvalue()


# code_package_fuzz: zips
write("code_package_fuzz", "handler", make_zip([("lambda_function.py", "def handler(e, c):\n    return e\n")]))
write("code_package_fuzz", "dirs", make_zip([("lib/", ""), ("lib/a.py", "x = 1\n"), ("bootstrap", "#!/bin/sh\n")]))
write("code_package_fuzz", "symlink", make_zip([("a.txt", "a")], symlinks=[("link", "a.txt")]))
write("code_package_fuzz", "escape", make_zip([("../evil", "x")]))
def stored_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("s.txt", "stored " * 10)
    return buf.getvalue()


write("code_package_fuzz", "stored", stored_zip())
write("code_package_fuzz", "bomb", make_zip([("zeros", "\0" * 200000)]))


# frame_decoder_fuzz: first byte = feed step, then frames (u32 len, u8 type, fields of u32 size + bytes)
def frame(ftype, *fields):
    body = bytes([ftype]) + b"".join(struct.pack("<I", len(f)) + f for f in fields)
    return struct.pack("<I", len(body)) + body


write("frame_decoder_fuzz", "invoke", b"\x07" + frame(1, b"req-1", b"1700000000000", b"arn:aws:lambda:us-east-1:123456789012:function:f", b"", b"", b"", b'{"a":1}'))
write("frame_decoder_fuzz", "ready_log", b"\x01" + frame(10, b"1234") + frame(14, b"START RequestId: x\n"))
write("frame_decoder_fuzz", "response_error", b"\x20" + frame(11, b"r", b"{}") + frame(12, b"r", b"Unhandled", b'{"errorType":"E"}') + frame(16))
write("frame_decoder_fuzz", "exited", b"\x03" + frame(15, b"9", b"1"))
write("frame_decoder_fuzz", "oversized", b"\x05" + struct.pack("<I", 0xFFFFFFF0) + b"\x01")
write("frame_decoder_fuzz", "field_overrun", b"\x05" + struct.pack("<I", 6) + b"\x0b" + struct.pack("<I", 100) + b"x")

# init_http_fuzz: Runtime API requests from a runtime
write("init_http_fuzz", "next", "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nUser-Agent: x\r\n\r\n")
write("init_http_fuzz", "response", "POST /2018-06-01/runtime/invocation/abc-123/response HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
write("init_http_fuzz", "chunked_error", "POST /2018-06-01/runtime/invocation/abc/error HTTP/1.1\r\nTransfer-Encoding: chunked\r\nLambda-Runtime-Function-Error-Type: Runtime.Foo\r\n\r\n"
      "10\r\n{\"errorType\":\"E\"\r\n1;ext=1\r\n}\r\n0\r\nTrailer: x\r\n\r\n")
write("init_http_fuzz", "init_error", "\r\nPOST http://127.0.0.1:9001/2018-06-01/runtime/init/error?x=1 HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}")
write("init_http_fuzz", "bad_te", "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")

# init_runtime_api_fuzz: byte 0 = flags (1: an invocation "fuzz-id" is handed to init first, 2: split
# writes), then up to four connections' bytes separated by two NUL bytes.
NEXT = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n\r\n"
RESP = b"POST /2018-06-01/runtime/invocation/fuzz-id/response HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
ERR = (b"POST /2018-06-01/runtime/invocation/fuzz-id/error HTTP/1.1\r\nLambda-Runtime-Function-Error-Type: X\r\n"
       b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")
write("init_runtime_api_fuzz", "next_then_response", b"\x01" + NEXT + b"\0\0" + RESP)
write("init_runtime_api_fuzz", "next_then_error_split", b"\x03" + NEXT + b"\0\0" + ERR)
write("init_runtime_api_fuzz", "pipelined", b"\x01" + NEXT + RESP + NEXT)
write("init_runtime_api_fuzz", "init_error", b"\x00" + b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
write("init_runtime_api_fuzz", "wrong_id", b"\x01" + NEXT + b"\0\0" + RESP.replace(b"fuzz-id", b"other") + b"\0\0" + RESP)
write("init_runtime_api_fuzz", "garbage", b"\x02" + b"GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n\0\0\xff\xfe\r\n\r\n")

# function_config_fuzz: CreateFunction / UpdateFunctionConfiguration bodies
write("function_config_fuzz", "create", json.dumps({
    "FunctionName": "f", "Runtime": "python3.12", "Role": "arn:aws:iam::123456789012:role/r",
    "Handler": "lambda_function.handler", "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
    "MemorySize": 256, "Timeout": 30, "Environment": {"Variables": {"A": "1", "B_2": "x"}},
    "Description": "d", "Architectures": ["x86_64"], "EphemeralStorage": {"Size": 1024},
    "PackageType": "Zip", "Publish": True, "Layers": [], "TracingConfig": {"Mode": "PassThrough"},
    "DeadLetterConfig": {"TargetArn": "arn:aws:sqs:us-east-1:123456789012:q"}}))
write("function_config_fuzz", "update", json.dumps({"MemorySize": 128000, "Timeout": 0, "Environment": {"Variables": {"1bad": 3}}}))
write("function_config_fuzz", "types", '{"Runtime": 5, "Handler": null, "Role": [], "MemorySize": 1.5e308, "Timeout": -1, "Environment": "x"}')
write("function_config_fuzz", "nested", "[" * 50 + "]" * 50)
write("function_config_fuzz", "unicode", '{"Description": "\\ud83d\\ude00 \\u0000", "Handler": "a.b", "Runtime": "provided.al2023", "Role": "r"}')

# function_name_fuzz: FunctionName, optionally "\n" + ?Qualifier=
for i, s in enumerate(["my-fn", "my-fn:live", "my-fn:$LATEST\n$LATEST", "123456789012:function:f:3",
                       "arn:aws:lambda:us-east-1:123456789012:function:my_fn:prod\nprod",
                       "arn:aws:lambda:eu-west-1:1:function:", "f:1\n2", "a" * 65]):
    write("function_name_fuzz", f"seed{i}", s)

# base64_fuzz
for i, s in enumerate(["", "QQ==", "QUI=", "QUJD", "eyJhIjoxfQ==", "QQ", "Q===", "QU=D", "////"]):
    write("base64_fuzz", f"seed{i}", s)

# lease_header_fuzz: x-kindling-lease ("TOKEN:SEQUENCE")
for name, s in (("simple", "1001:1"), ("max", "18446744073709551615:18446744073709551615"), ("leading_zero", "007:0")):
    write("lease_header_fuzz", name, s)
