// FunctionConfig: the metadata of one function version, as the control plane stores it and as the
// other components receive it (a plain message: copyable, serializable).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kindling {

struct FunctionConfig {
  std::string name;
  std::string version = "$LATEST";
  std::string runtime;
  std::string handler;
  std::string role;
  std::string description;
  int memory_mb = 128;
  int timeout_s = 3;
  int ephemeral_mb = 512;
  std::map<std::string, std::string> environment;
  std::vector<std::string> architectures{"x86_64"};
  std::string code_sha256;   // base64(SHA-256(zip)), as Lambda reports it
  int64_t code_size = 0;     // bytes of the zip
  std::string code_digest;   // hex SHA-256: names the extracted code directory
  std::string last_modified; // "2026-11-27T22:40:10.000+0000"
  std::string revision_id;   // changes on every update; sandboxes are bound to one revision
  std::string dead_letter_arn;  // DeadLetterConfig.TargetArn (SQS/SNS ARN), "" = none
  int reserved_concurrency = -1;  // PutFunctionConcurrency (function-wide, kept on $LATEST); -1 = none
};

// Region and account that ARNs are minted with.
struct ArnContext {
  std::string region = "us-east-1";
  std::string account_id = "000000000000";
  std::string FunctionArn(const std::string& name) const {
    return "arn:aws:lambda:" + region + ":" + account_id + ":function:" + name;
  }
};

}  // namespace kindling
