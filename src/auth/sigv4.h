// AWS Signature Version 4 verification for the Lambda API, and the credentials it checks against.
//
// Verification follows what botocore's SigV4Auth / SigV4QueryAuth sign for a non-S3 service
// (botocore/auth.py): canonical URI = quote(remove_dot_segments(raw path), safe='/~') (so an
// already percent-encoded path is encoded again), canonical query = decoded then re-encoded
// (RFC 3986 unreserved kept) pairs sorted by (key, value) without X-Amz-Signature, canonical
// headers = the signed headers, lower-case, values trimmed and inner whitespace runs collapsed,
// repeated headers joined by ',', payload hash = x-amz-content-sha256 when sent (it must then
// match the body) else SHA-256 of the body. Signatures are compared with CRYPTO_memcmp.
//
// Thread safety: a SigV4Verifier is immutable after construction; Verify is const and may run on
// any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/http_server.h"
#include "common/api_error.h"
#include "common/status.h"

namespace kindling {

struct Credential {
  std::string user;  // the INI section name
  std::string access_key_id;
  std::string secret_access_key;
};

// Users and their keys, kept in an AWS-credentials-file-style INI file:
//   [default]
//   aws_access_key_id = KDLG...
//   aws_secret_access_key = ...
// One section per user. The file must be a regular file owned by the daemon's user with no group or
// other permission bits (0600).
class CredentialStore {
 public:
  // Parses INI text; errors name the line.
  static Result<CredentialStore> Parse(std::string_view text);
  // Loads path; when it does not exist, creates it (0600, O_EXCL) with one user "default" holding a
  // random key pair and sets *created. Refuses a file group/other may access or another user owns.
  static Result<CredentialStore> LoadOrCreate(const std::string& path, bool* created);
  // A fresh random pair: access key id "KDLG" + 16 base32 characters, 40-character secret.
  static Credential Generate(const std::string& user);
  static std::string Render(const std::vector<Credential>& users);

  const Credential* Find(std::string_view access_key_id) const;
  const std::vector<Credential>& users() const { return users_; }

 private:
  std::vector<Credential> users_;
};

struct SigV4Options {
  std::string region = "us-east-1";
  std::string service = "lambda";
  std::chrono::seconds max_skew{300};        // ±5 minutes, as AWS
  std::chrono::seconds max_expires{604800};  // presigned URLs: 7 days at most
};

class SigV4Verifier {
 public:
  SigV4Verifier(CredentialStore credentials, SigV4Options options)
      : credentials_(std::move(credentials)), options_(std::move(options)) {}

  // nullopt when the request carries a valid signature of a known user (header or query form);
  // otherwise the 403 to answer with (MissingAuthenticationTokenException,
  // IncompleteSignatureException, UnrecognizedClientException, InvalidSignatureException).
  // On success *user (if given) names the caller.
  std::optional<ApiError> Verify(const HttpRequest& request, std::chrono::system_clock::time_point now,
                                 const Credential** user = nullptr) const;

  // The user whose key signed `request` (nullptr when it names none); meaningful after Verify
  // accepted the request.
  const Credential* Caller(const HttpRequest& request) const;
  // A query string ("X-Amz-Algorithm=...&X-Amz-Signature=...") presigning GET host+path for
  // `user` for `expires` (what GetFunction's Code.Location carries when authentication is on).
  std::string PresignQuery(const Credential& user, const std::string& host, const std::string& raw_path,
                           std::chrono::system_clock::time_point now, std::chrono::seconds expires) const;

  const CredentialStore& credentials() const { return credentials_; }
  const SigV4Options& options() const { return options_; }

 private:
  CredentialStore credentials_;
  SigV4Options options_;
};

// Building blocks (exposed for tests).
namespace sigv4 {
// RFC 3986 percent-encoding, A-Za-z0-9-_.~ kept (and '/' when keep_slash), upper-case hex.
std::string UriEncode(std::string_view in, bool keep_slash);
// botocore's remove_dot_segments: drops "." and empty segments, resolves "..", keeps a leading
// and (for a non-empty result) trailing '/'; "" -> "/".
std::string NormalizePath(std::string_view path);
// quote(NormalizePath(raw_path), safe='/~').
std::string CanonicalUri(std::string_view raw_path);
// Sorted, re-encoded query pairs; X-Amz-Signature left out when drop_signature.
std::string CanonicalQuery(std::string_view raw_query, bool drop_signature);
// Trimall: leading/trailing whitespace removed, inner runs collapsed to one space.
std::string TrimAll(std::string_view value);
// "name:value\n" for each signed header (sorted as given), values of repeated headers joined by ','.
std::string CanonicalHeaders(const std::vector<std::pair<std::string, std::string>>& headers,
                             const std::vector<std::string>& signed_headers);
std::string CanonicalRequest(const std::string& method, std::string_view raw_target,
                             const std::vector<std::pair<std::string, std::string>>& headers,
                             const std::vector<std::string>& signed_headers, const std::string& payload_hash,
                             bool query_form);
std::string StringToSign(const std::string& amz_date, const std::string& scope, const std::string& canonical_request);
std::string HmacSha256(std::string_view key, std::string_view data);
std::string SigningKey(std::string_view secret, std::string_view date, std::string_view region, std::string_view service);
// Hex signature of string_to_sign.
std::string Sign(std::string_view secret, std::string_view date, std::string_view region, std::string_view service,
                 std::string_view string_to_sign);
// Constant-time (CRYPTO_memcmp) equality; sizes are compared first (they are not secret).
bool ConstantTimeEquals(std::string_view a, std::string_view b);
// "YYYYMMDDTHHMMSSZ" -> time point; nullopt when malformed.
std::optional<std::chrono::system_clock::time_point> ParseAmzDate(std::string_view text);
std::string FormatAmzDate(std::chrono::system_clock::time_point t);
}  // namespace sigv4

}  // namespace kindling
