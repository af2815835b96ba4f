#include "auth/sigv4.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "common/ids.h"

namespace kindling {

namespace {

constexpr const char* kAlgorithm = "AWS4-HMAC-SHA256";
constexpr size_t kMaxCredentialsFile = 1 << 20;

ApiError Missing() { return {403, "MissingAuthenticationTokenException", "Missing Authentication Token", ""}; }
ApiError Incomplete(std::string message) { return {403, "IncompleteSignatureException", std::move(message), ""}; }
ApiError Unrecognized() {
  return {403, "UnrecognizedClientException", "The security token included in the request is invalid.", ""};
}
ApiError BadSignature(std::string message = "") {
  if (message.empty())
    message =
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method. Consult the service documentation for details.";
  return {403, "InvalidSignatureException", std::move(message), ""};
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Strict percent-decoding ('+' stays '+'); false on a malformed escape.
bool PercentDecode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool IsLowerHex(std::string_view s, size_t size) {
  if (s.size() != size) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  for (;;) {
    size_t p = s.find(sep);
    out.emplace_back(s.substr(0, p));
    if (p == std::string_view::npos) break;
    s.remove_prefix(p + 1);
  }
  return out;
}

const std::string* FindHeader(const HttpRequest& req, const std::string& name) {
  for (const auto& [k, v] : req.headers)
    if (k == name) return &v;
  return nullptr;
}

// The raw (still percent-encoded) query parameter `name`, decoded; nullopt when absent.
std::optional<std::string> RawQueryParam(std::string_view raw_query, std::string_view name) {
  for (const std::string& pair : Split(raw_query, '&')) {
    size_t eq = pair.find('=');
    std::string key, value;
    if (!PercentDecode(std::string_view(pair).substr(0, eq), &key)) continue;
    if (key != name) continue;
    if (eq != std::string::npos && !PercentDecode(std::string_view(pair).substr(eq + 1), &value)) return std::nullopt;
    return value;
  }
  return std::nullopt;
}

struct Parsed {
  bool query_form = false;
  std::string access_key, date, region, service, terminal;  // from the credential scope
  std::vector<std::string> signed_headers;
  std::string signature;
  std::string amz_date;
  std::optional<int64_t> expires;
};

// "AKID/20260101/us-east-1/lambda/aws4_request".
std::optional<ApiError> ParseCredential(const std::string& text, Parsed* p) {
  std::vector<std::string> parts = Split(text, '/');
  if (parts.size() != 5 || parts[0].empty())
    return Incomplete("Credential should have exactly 5 slash-separated components: 'ACCESS_KEY_ID/YYYYMMDD/"
                      "REGION/SERVICE/aws4_request'.");
  p->access_key = parts[0];
  p->date = parts[1];
  p->region = parts[2];
  p->service = parts[3];
  p->terminal = parts[4];
  if (p->terminal != "aws4_request")
    return BadSignature("Credential should be scoped with a valid terminator: 'aws4_request', not '" +
                        p->terminal.substr(0, 32) + "'. ");
  return std::nullopt;
}

std::optional<ApiError> ParseSignedHeaders(const std::string& text, Parsed* p) {
  if (text.empty()) return Incomplete("SignedHeaders must not be empty.");
  p->signed_headers = Split(text, ';');
  for (size_t i = 0; i < p->signed_headers.size(); ++i) {
    const std::string& h = p->signed_headers[i];
    if (h.empty()) return Incomplete("SignedHeaders contains an empty header name.");
    for (char c : h)
      if (c >= 'A' && c <= 'Z') return BadSignature();  // canonical names are lower-case
    if (i > 0 && !(p->signed_headers[i - 1] < h)) return BadSignature();  // sorted, unique
  }
  if (std::find(p->signed_headers.begin(), p->signed_headers.end(), "host") == p->signed_headers.end())
    return Incomplete("'Host' must be a 'SignedHeader' in the AWS Authorization.");
  return std::nullopt;
}

// Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...
std::optional<ApiError> ParseAuthorization(const HttpRequest& req, const std::string& header, Parsed* p) {
  std::string_view h = Trim(header);
  size_t sp = h.find(' ');
  std::string_view algorithm = h.substr(0, sp);
  if (algorithm != kAlgorithm)
    return Incomplete("Unsupported AWS 'algorithm': '" + std::string(algorithm.substr(0, 32)) +
                      "'. Supported: 'AWS4-HMAC-SHA256'.");
  std::string_view rest = sp == std::string_view::npos ? std::string_view() : h.substr(sp + 1);
  std::optional<std::string> credential, signed_headers, signature;
  for (const std::string& item : Split(rest, ',')) {
    std::string_view kv = Trim(item);
    if (kv.empty()) continue;
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) return Incomplete("Authorization header is malformed: '" + std::string(kv.substr(0, 64)) + "' has no '='.");
    std::string_view key = kv.substr(0, eq);
    std::string value(Trim(kv.substr(eq + 1)));
    std::optional<std::string>* slot = key == "Credential" ? &credential
                                       : key == "SignedHeaders" ? &signed_headers
                                       : key == "Signature"     ? &signature
                                                                : nullptr;
    if (!slot) return Incomplete("Authorization header is malformed: unknown component '" + std::string(key.substr(0, 32)) + "'.");
    if (slot->has_value()) return Incomplete("Authorization header is malformed: '" + std::string(key) + "' given twice.");
    *slot = std::move(value);
  }
  std::string missing;
  if (!credential) missing += "Authorization header requires 'Credential' parameter. ";
  if (!signature) missing += "Authorization header requires 'Signature' parameter. ";
  if (!signed_headers) missing += "Authorization header requires 'SignedHeaders' parameter. ";
  const std::string* date = FindHeader(req, "x-amz-date");
  if (!date) missing += "Authorization header requires existence of a 'X-Amz-Date' header. ";
  if (!missing.empty()) return Incomplete(missing);
  if (auto e = ParseCredential(*credential, p)) return e;
  if (auto e = ParseSignedHeaders(*signed_headers, p)) return e;
  p->signature = *signature;
  p->amz_date = *date;
  return std::nullopt;
}

std::optional<ApiError> ParseQueryAuth(std::string_view raw_query, Parsed* p) {
  p->query_form = true;
  auto algorithm = RawQueryParam(raw_query, "X-Amz-Algorithm");
  auto credential = RawQueryParam(raw_query, "X-Amz-Credential");
  auto date = RawQueryParam(raw_query, "X-Amz-Date");
  auto expires = RawQueryParam(raw_query, "X-Amz-Expires");
  auto signed_headers = RawQueryParam(raw_query, "X-Amz-SignedHeaders");
  auto signature = RawQueryParam(raw_query, "X-Amz-Signature");
  if (!algorithm) return Missing();
  if (*algorithm != kAlgorithm)
    return Incomplete("Unsupported AWS 'algorithm': '" + algorithm->substr(0, 32) + "'. Supported: 'AWS4-HMAC-SHA256'.");
  std::string missing;
  for (auto [value, name] : {std::pair{&credential, "X-Amz-Credential"}, {&date, "X-Amz-Date"},
                             {&expires, "X-Amz-Expires"}, {&signed_headers, "X-Amz-SignedHeaders"},
                             {&signature, "X-Amz-Signature"}})
    if (!value->has_value()) missing += std::string("AWS query-string parameters must include '") + name + "'. ";
  if (!missing.empty()) return Incomplete(missing + "Re-examine the query-string parameters.");
  if (expires->empty() || expires->size() > 9 || expires->find_first_not_of("0123456789") != std::string::npos)
    return Incomplete("X-Amz-Expires must be a non-negative integer number of seconds.");
  p->expires = std::stoll(*expires);
  if (auto e = ParseCredential(*credential, p)) return e;
  if (auto e = ParseSignedHeaders(*signed_headers, p)) return e;
  p->signature = *signature;
  p->amz_date = *date;
  return std::nullopt;
}

std::string PayloadHash(std::string_view body) { return HexEncode(Sha256(body)); }

}  // namespace

// ------------------------------------------------------------------------------------------------
// building blocks

namespace sigv4 {

std::string UriEncode(std::string_view in, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size());
  for (char ch : in) {
    unsigned char c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string NormalizePath(std::string_view path) {
  if (path.empty()) return "/";
  std::vector<std::string> out;
  for (const std::string& seg : Split(path, '/')) {
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
    } else {
      out.push_back(seg);
    }
  }
  std::string result = path.front() == '/' ? "/" : "";
  for (size_t i = 0; i < out.size(); ++i) {
    if (i) result += '/';
    result += out[i];
  }
  if (path.back() == '/' && !out.empty()) result += '/';
  return result;
}

std::string CanonicalUri(std::string_view raw_path) { return UriEncode(NormalizePath(raw_path), true); }

std::string CanonicalQuery(std::string_view raw_query, bool drop_signature) {
  std::vector<std::pair<std::string, std::string>> pairs;
  if (!raw_query.empty()) {
    for (const std::string& pair : Split(raw_query, '&')) {
      if (pair.empty()) continue;
      size_t eq = pair.find('=');
      std::string key, value;
      // A malformed escape is kept verbatim (re-encoded), so the signature simply fails to match.
      if (!PercentDecode(std::string_view(pair).substr(0, eq), &key)) key = pair.substr(0, eq);
      if (eq != std::string::npos && !PercentDecode(std::string_view(pair).substr(eq + 1), &value))
        value = pair.substr(eq + 1);
      if (drop_signature && key == "X-Amz-Signature") continue;
      pairs.emplace_back(UriEncode(key, false), UriEncode(value, false));
    }
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [k, v] : pairs) {
    if (!out.empty()) out += '&';
    out += k;
    out += '=';
    out += v;
  }
  return out;
}

std::string TrimAll(std::string_view value) {
  std::string out;
  bool pending_space = false;
  for (char c : value) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

std::string CanonicalHeaders(const std::vector<std::pair<std::string, std::string>>& headers,
                             const std::vector<std::string>& signed_headers) {
  std::string out;
  for (const std::string& name : signed_headers) {
    std::string joined;
    bool first = true;
    for (const auto& [k, v] : headers) {
      if (k != name) continue;
      if (!first) joined += ',';
      joined += TrimAll(v);
      first = false;
    }
    out += name + ":" + joined + "\n";
  }
  return out;
}

std::string CanonicalRequest(const std::string& method, std::string_view raw_target,
                             const std::vector<std::pair<std::string, std::string>>& headers,
                             const std::vector<std::string>& signed_headers, const std::string& payload_hash,
                             bool query_form) {
  size_t q = raw_target.find('?');
  std::string_view path = raw_target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : raw_target.substr(q + 1);
  std::string signed_list;
  for (const std::string& h : signed_headers) signed_list += (signed_list.empty() ? "" : ";") + h;
  return method + "\n" + CanonicalUri(path) + "\n" + CanonicalQuery(query, query_form) + "\n" +
         CanonicalHeaders(headers, signed_headers) + "\n" + signed_list + "\n" + payload_hash;
}

std::string StringToSign(const std::string& amz_date, const std::string& scope, const std::string& canonical_request) {
  return std::string(kAlgorithm) + "\n" + amz_date + "\n" + scope + "\n" + HexEncode(Sha256(canonical_request));
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string SigningKey(std::string_view secret, std::string_view date, std::string_view region, std::string_view service) {
  std::string k = HmacSha256("AWS4" + std::string(secret), date);
  k = HmacSha256(k, region);
  k = HmacSha256(k, service);
  std::string signing = HmacSha256(k, "aws4_request");
  OPENSSL_cleanse(k.data(), k.size());
  return signing;
}

std::string Sign(std::string_view secret, std::string_view date, std::string_view region, std::string_view service,
                 std::string_view string_to_sign) {
  std::string key = SigningKey(secret, date, region, service);
  std::string sig = HexEncode(HmacSha256(key, string_to_sign));
  OPENSSL_cleanse(key.data(), key.size());
  return sig;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<std::chrono::system_clock::time_point> ParseAmzDate(std::string_view t) {
  if (t.size() != 16 || t[8] != 'T' || t[15] != 'Z') return std::nullopt;
  for (size_t i : {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14})
    if (t[i] < '0' || t[i] > '9') return std::nullopt;
  auto num = [&](size_t at, size_t n) {
    int v = 0;
    for (size_t i = 0; i < n; ++i) v = v * 10 + (t[at + i] - '0');
    return v;
  };
  struct tm tm = {};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(9, 2);
  tm.tm_min = num(11, 2);
  tm.tm_sec = num(13, 2);
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60)
    return std::nullopt;
  time_t secs = timegm(&tm);
  return std::chrono::system_clock::from_time_t(secs);
}

std::string FormatAmzDate(std::chrono::system_clock::time_point t) {
  time_t secs = std::chrono::system_clock::to_time_t(t);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace sigv4

// ------------------------------------------------------------------------------------------------
// credentials

Result<CredentialStore> CredentialStore::Parse(std::string_view text) {
  CredentialStore store;
  Credential* current = nullptr;
  int line_no = 0;
  auto finish = [&]() -> Status {
    if (!current) return Status::Ok();
    if (current->access_key_id.empty() || current->secret_access_key.empty())
      return Status::Error("credentials: user [" + current->user + "] needs aws_access_key_id and aws_secret_access_key");
    return Status::Ok();
  };
  for (const std::string& raw : Split(text, '\n')) {
    ++line_no;
    std::string_view line = Trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    std::string where = "credentials line " + std::to_string(line_no) + ": ";
    if (line.front() == '[') {
      if (line.back() != ']') return Status::Error(where + "unterminated section header");
      if (Status s = finish(); !s.ok()) return s;
      std::string user(Trim(line.substr(1, line.size() - 2)));
      if (user.empty()) return Status::Error(where + "empty user name");
      for (const Credential& c : store.users_)
        if (c.user == user) return Status::Error(where + "user [" + user + "] given twice");
      store.users_.push_back({user, "", ""});
      current = &store.users_.back();
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) return Status::Error(where + "expected key = value");
    if (!current) return Status::Error(where + "key outside a [user] section");
    std::string key(Trim(line.substr(0, eq)));
    std::string value(Trim(line.substr(eq + 1)));
    if (key == "aws_access_key_id") {
      if (value.size() < 16 || value.size() > 128 ||
          value.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != std::string::npos)
        return Status::Error(where + "aws_access_key_id must be 16-128 characters A-Z 0-9");
      current->access_key_id = value;
    } else if (key == "aws_secret_access_key") {
      if (value.size() < 16 || value.size() > 256)
        return Status::Error(where + "aws_secret_access_key must be 16-256 characters");
      current->secret_access_key = value;
    }  // other keys (region, output, ...) are ignored, as in an AWS credentials file
  }
  if (Status s = finish(); !s.ok()) return s;
  if (store.users_.empty()) return Status::Error("credentials: no users");
  for (size_t i = 0; i < store.users_.size(); ++i)
    for (size_t j = i + 1; j < store.users_.size(); ++j)
      if (store.users_[i].access_key_id == store.users_[j].access_key_id)
        return Status::Error("credentials: access key " + store.users_[i].access_key_id + " given twice");
  return store;
}

Credential CredentialStore::Generate(const std::string& user) {
  static const char* kBase32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  unsigned char bytes[16 + 30];
  if (RAND_bytes(bytes, sizeof bytes) != 1) abort();  // no entropy: never hand out a guessable key
  Credential c;
  c.user = user;
  c.access_key_id = "KDLG";
  for (int i = 0; i < 16; ++i) c.access_key_id.push_back(kBase32[bytes[i] & 31]);
  c.secret_access_key = Base64Encode(std::string_view(reinterpret_cast<char*>(bytes + 16), 30));
  OPENSSL_cleanse(bytes, sizeof bytes);
  return c;
}

std::string CredentialStore::Render(const std::vector<Credential>& users) {
  std::string out =
      "# Kindling API users (kindlingd --auth on). One [user] section each; keep this file mode 0600.\n"
      "# It is also a valid AWS CLI credentials file (AWS_SHARED_CREDENTIALS_FILE).\n";
  for (const Credential& c : users)
    out += "\n[" + c.user + "]\naws_access_key_id = " + c.access_key_id + "\naws_secret_access_key = " +
           c.secret_access_key + "\n";
  return out;
}

Result<CredentialStore> CredentialStore::LoadOrCreate(const std::string& path, bool* created) {
  *created = false;
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    int wfd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (wfd < 0) return Status::Errno("creating " + path);
    std::string text = Render({Generate("default")});
    bool ok = fchmod(wfd, 0600) == 0 && write(wfd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
              fsync(wfd) == 0;
    int err = errno;
    OPENSSL_cleanse(text.data(), text.size());
    close(wfd);
    if (!ok) {
      unlink(path.c_str());
      return Status::Errno("writing " + path, err);
    }
    *created = true;
    fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0) return Status::Errno("opening credentials file " + path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return Status::Errno("stat " + path, err);
  }
  char mode[8];
  snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return Status::Error("credentials file " + path + " is not a regular file");
  }
  if (st.st_mode & 077) {
    close(fd);
    return Status::Error("credentials file " + path + " has mode " + mode +
                         ": group or others may access it; run chmod 600 " + path);
  }
  if (st.st_uid != geteuid()) {
    close(fd);
    return Status::Error("credentials file " + path + " is owned by uid " + std::to_string(st.st_uid) +
                         ", not by the daemon's uid " + std::to_string(geteuid()));
  }
  if (st.st_size > static_cast<off_t>(kMaxCredentialsFile)) {
    close(fd);
    return Status::Error("credentials file " + path + " is larger than 1 MiB");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = read(fd, text.data() + got, text.size() - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  text.resize(got);
  auto parsed = Parse(text);
  OPENSSL_cleanse(text.data(), text.size());
  if (!parsed.ok()) return Status::Error(path + ": " + parsed.status().message());
  return parsed;
}

const Credential* CredentialStore::Find(std::string_view access_key_id) const {
  for (const Credential& c : users_)
    if (c.access_key_id == access_key_id) return &c;
  return nullptr;
}

// ------------------------------------------------------------------------------------------------
// verification

std::optional<ApiError> SigV4Verifier::Verify(const HttpRequest& req, std::chrono::system_clock::time_point now,
                                              const Credential** user) const {
  std::string_view target = req.target;
  size_t q = target.find('?');
  std::string_view raw_query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  const std::string* authorization = FindHeader(req, "authorization");
  bool query_auth = RawQueryParam(raw_query, "X-Amz-Algorithm").has_value();
  if (authorization && query_auth)
    return Incomplete("Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the "
                      "Authorization header should be specified.");
  Parsed p;
  if (authorization) {
    if (auto e = ParseAuthorization(req, *authorization, &p)) return e;
  } else if (query_auth) {
    if (auto e = ParseQueryAuth(raw_query, &p)) return e;
  } else {
    return Missing();
  }

  auto when = sigv4::ParseAmzDate(p.amz_date);
  if (!when)
    return Incomplete("Date must be in ISO-8601 'basic format'. Got '" + p.amz_date.substr(0, 32) +
                      "'. See http://en.wikipedia.org/wiki/ISO_8601");
  if (p.region != options_.region) return BadSignature("Credential should be scoped to a valid region. ");
  if (p.service != options_.service)
    return BadSignature("Credential should be scoped to correct service: '" + options_.service + "'. ");
  if (p.date != p.amz_date.substr(0, 8))
    return BadSignature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '" +
                        p.date.substr(0, 16) + "' != '" + p.amz_date.substr(0, 8) + "', from '" + p.amz_date + "'.");

  const Credential* cred = credentials_.Find(p.access_key);
  if (!cred) return Unrecognized();

  // Freshness: within ±max_skew of now; a presigned URL additionally until X-Amz-Date + X-Amz-Expires.
  using std::chrono::seconds;
  std::string now_text = sigv4::FormatAmzDate(now);
  if (*when > now + options_.max_skew)
    return BadSignature("Signature not yet current: " + p.amz_date + " is still later than " +
                        sigv4::FormatAmzDate(now + options_.max_skew) + " (" + now_text + " + " +
                        std::to_string(options_.max_skew.count() / 60) + " min.)");
  if (p.query_form) {
    if (seconds(*p.expires) > options_.max_expires)
      return BadSignature("X-Amz-Expires must be less than a week (in seconds) that is 604800");
    if (*when + seconds(*p.expires) < now)
      return BadSignature("Signature expired: " + p.amz_date + " is now earlier than " +
                          sigv4::FormatAmzDate(now - seconds(*p.expires)) + " (" + now_text + " - " +
                          std::to_string(*p.expires) + " sec.)");
  } else if (*when < now - options_.max_skew) {
    return BadSignature("Signature expired: " + p.amz_date + " is now earlier than " +
                        sigv4::FormatAmzDate(now - options_.max_skew) + " (" + now_text + " - " +
                        std::to_string(options_.max_skew.count() / 60) + " min.)");
  }

  // The payload hash: a sent x-amz-content-sha256 is what was signed, and it must be the body's.
  std::string body_hash = PayloadHash(req.body);
  std::string payload_hash = body_hash;
  if (const std::string* sent = FindHeader(req, "x-amz-content-sha256")) {
    if (!IsLowerHex(*sent, 64))
      return BadSignature("x-amz-content-sha256 must be the hex SHA-256 of the payload: Kindling does not accept "
                          "unsigned or streaming payloads.");
    if (!sigv4::ConstantTimeEquals(*sent, body_hash))
      return BadSignature("The provided 'x-amz-content-sha256' header does not match what was computed.");
    payload_hash = *sent;
  }

  std::string canonical = sigv4::CanonicalRequest(req.method, target, req.headers, p.signed_headers, payload_hash,
                                                  p.query_form);
  std::string scope = p.date + "/" + p.region + "/" + p.service + "/aws4_request";
  std::string expected = sigv4::Sign(cred->secret_access_key, p.date, p.region, p.service,
                                     sigv4::StringToSign(p.amz_date, scope, canonical));
  bool match = sigv4::ConstantTimeEquals(expected, p.signature);
  OPENSSL_cleanse(expected.data(), expected.size());
  if (!match) return BadSignature();
  if (user) *user = cred;
  return std::nullopt;
}

const Credential* SigV4Verifier::Caller(const HttpRequest& req) const {
  Parsed p;
  if (const std::string* authorization = FindHeader(req, "authorization")) {
    if (ParseAuthorization(req, *authorization, &p)) return nullptr;
  } else {
    std::string_view target = req.target;
    size_t q = target.find('?');
    if (q == std::string_view::npos || ParseQueryAuth(target.substr(q + 1), &p)) return nullptr;
  }
  return credentials_.Find(p.access_key);
}

std::string SigV4Verifier::PresignQuery(const Credential& user, const std::string& host, const std::string& raw_path,
                                        std::chrono::system_clock::time_point now, std::chrono::seconds expires) const {
  std::string amz_date = sigv4::FormatAmzDate(now);
  std::string date = amz_date.substr(0, 8);
  std::string scope = date + "/" + options_.region + "/" + options_.service + "/aws4_request";
  std::string query = "X-Amz-Algorithm=" + std::string(kAlgorithm) +
                      "&X-Amz-Credential=" + sigv4::UriEncode(user.access_key_id + "/" + scope, false) +
                      "&X-Amz-Date=" + amz_date + "&X-Amz-Expires=" + std::to_string(expires.count()) +
                      "&X-Amz-SignedHeaders=host";
  std::string canonical = sigv4::CanonicalRequest("GET", raw_path + "?" + query, {{"host", host}}, {"host"},
                                                  PayloadHash(""), true);
  return query + "&X-Amz-Signature=" +
         sigv4::Sign(user.secret_access_key, date, options_.region, options_.service,
                     sigv4::StringToSign(amz_date, scope, canonical));
}

}  // namespace kindling
