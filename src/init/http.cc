#include "init/http.h"

#include <cstring>

namespace kindling::init::http {
namespace {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x += 'a' - 'A';
    if (y >= 'A' && y <= 'Z') y += 'a' - 'A';
    if (x != y) return false;
  }
  return true;
}

// True when s contains `token` as a comma-separated element (case-insensitive).
bool HasToken(std::string_view s, std::string_view token) {
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view t = s.substr(0, comma);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (IEquals(t, token)) return true;
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return false;
}

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

ParseStatus ParseRequestHead(std::string_view buf, size_t* scan, RequestHead* head) {
  // Skip empty lines before the request line.
  size_t start = 0;
  while (start < buf.size() && (buf[start] == '\r' || buf[start] == '\n')) {
    if (buf[start] == '\r' && (start + 1 >= buf.size() || buf[start + 1] != '\n')) {
      if (start + 1 >= buf.size()) return ParseStatus::kIncomplete;
      return ParseStatus::kBad;
    }
    start += buf[start] == '\r' ? 2 : 1;
  }
  if (start > kMaxHeadBytes) return ParseStatus::kTooLarge;
  // Find the blank line that ends the head: "\n\n" or "\n\r\n".
  size_t i = *scan < start ? start : *scan;
  size_t end = 0;
  while (true) {
    const void* nl = i < buf.size() ? std::memchr(buf.data() + i, '\n', buf.size() - i) : nullptr;
    if (!nl) {
      *scan = buf.size();
      return buf.size() - start > kMaxHeadBytes ? ParseStatus::kTooLarge : ParseStatus::kIncomplete;
    }
    size_t p = static_cast<const char*>(nl) - buf.data();
    if (p + 1 < buf.size() && buf[p + 1] == '\n') {
      end = p + 2;
      break;
    }
    if (p + 2 < buf.size() && buf[p + 1] == '\r' && buf[p + 2] == '\n') {
      end = p + 3;
      break;
    }
    if (p + 2 >= buf.size()) {  // the terminator may be split across reads: rescan from here
      *scan = p;
      return buf.size() - start > kMaxHeadBytes ? ParseStatus::kTooLarge : ParseStatus::kIncomplete;
    }
    i = p + 1;
  }
  if (end - start > kMaxHeadBytes) return ParseStatus::kTooLarge;

  *head = RequestHead{};
  head->head_bytes = end;
  std::string_view h = buf.substr(start, end - start);
  auto next_line = [&h](std::string_view* line) {
    size_t nl = h.find('\n');
    *line = h.substr(0, nl);
    h.remove_prefix(nl + 1);
    if (!line->empty() && line->back() == '\r') line->remove_suffix(1);
  };

  // Request line: METHOD SP target SP HTTP/1.x
  std::string_view line;
  next_line(&line);
  size_t sp1 = line.find(' ');
  if (sp1 == 0 || sp1 == std::string_view::npos) return ParseStatus::kBad;
  head->method = line.substr(0, sp1);
  for (char c : head->method)
    if (!IsTokenChar(c)) return ParseStatus::kBad;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return ParseStatus::kBad;
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    head->keep_alive = true;
  } else if (version == "HTTP/1.0") {
    head->keep_alive = false;
  } else {
    return ParseStatus::kBad;
  }
  for (char c : target)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return ParseStatus::kBad;
  if (target.substr(0, 7) == "http://" || target.substr(0, 8) == "https://") {
    size_t slash = target.find('/', target.find("//") + 2);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  if (target.empty() || target[0] != '/') return ParseStatus::kBad;
  head->path = target.substr(0, target.find_first_of("?#"));

  // Header fields.
  bool saw_te = false;
  while (true) {
    next_line(&line);
    if (line.empty()) break;
    if (line[0] == ' ' || line[0] == '\t') return ParseStatus::kBad;  // obsolete line folding
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return ParseStatus::kBad;
    std::string_view name = line.substr(0, colon);
    for (char c : name)
      if (!IsTokenChar(c)) return ParseStatus::kBad;
    std::string_view value = Trim(line.substr(colon + 1));
    for (char c : value)
      if ((static_cast<unsigned char>(c) < ' ' && c != '\t') || c == 0x7f) return ParseStatus::kBad;
    if (IEquals(name, "content-length")) {
      if (value.empty() || value.size() > 18) return ParseStatus::kBad;
      uint64_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return ParseStatus::kBad;
        n = n * 10 + (c - '0');
      }
      if (head->has_content_length && n != head->content_length) return ParseStatus::kBad;
      head->has_content_length = true;
      head->content_length = n;
    } else if (IEquals(name, "transfer-encoding")) {
      if (saw_te) return ParseStatus::kBad;
      saw_te = true;
      if (IEquals(value, "chunked")) {
        head->chunked = true;
      } else if (!IEquals(value, "identity")) {
        return ParseStatus::kNotImplemented;
      }
    } else if (IEquals(name, "connection")) {
      if (HasToken(value, "close")) head->keep_alive = false;
      if (HasToken(value, "keep-alive")) head->keep_alive = true;
    } else if (IEquals(name, "expect")) {
      if (IEquals(value, "100-continue")) head->expect_continue = true;
    } else if (IEquals(name, "lambda-runtime-function-error-type")) {
      head->function_error_type = value;
    }
  }
  // Both framings at once is a request-smuggling shape: refuse it.
  if (head->chunked && head->has_content_length) return ParseStatus::kBad;
  return ParseStatus::kOk;
}

ChunkedDecoder::Result ChunkedDecoder::Run(char* buf, size_t len, size_t* pos, size_t* out,
                                           uint64_t max_body) {
  constexpr size_t kMaxLine = 4096;
  constexpr size_t kMaxTrailers = 16 * 1024;
  size_t p = *pos;
  while (p < len) {
    switch (state_) {
      case kSizeLine: {
        const void* nl = std::memchr(buf + p, '\n', len - p);
        size_t avail = nl ? static_cast<const char*>(nl) - (buf + p) + 1 : len - p;
        if (avail > kMaxLine) { *pos = p; return kBad; }
        if (!nl) {  // keep the partial line in place: it is parsed again once complete
          *pos = p;
          return kNeedMore;
        }
        std::string_view l(buf + p, avail - 1);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        l = l.substr(0, l.find(';'));  // chunk extensions are ignored
        l = Trim(l);
        if (l.empty() || l.size() > 15) { *pos = p; return kBad; }
        uint64_t n = 0;
        for (char c : l) {
          int d;
          if (c >= '0' && c <= '9') d = c - '0';
          else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
          else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
          else { *pos = p; return kBad; }
          n = n * 16 + d;
        }
        p += avail;
        if (n == 0) {
          state_ = kTrailer;
        } else {
          if (decoded_ + n > max_body) { *pos = p; return kTooLarge; }
          remaining_ = n;
          state_ = kData;
        }
        break;
      }
      case kData: {
        size_t take = len - p < remaining_ ? len - p : static_cast<size_t>(remaining_);
        if (*out != p) std::memmove(buf + *out, buf + p, take);
        *out += take;
        p += take;
        remaining_ -= take;
        decoded_ += take;
        if (remaining_ == 0) state_ = kDataCrlf;
        break;
      }
      case kDataCrlf: {
        if (buf[p] == '\r') {
          if (len - p < 2) {
            *pos = p;
            return kNeedMore;
          }
          if (buf[p + 1] != '\n') { *pos = p; return kBad; }
          p += 2;
        } else if (buf[p] == '\n') {
          p += 1;
        } else {
          { *pos = p; return kBad; }
        }
        state_ = kSizeLine;
        break;
      }
      case kTrailer: {
        const void* nl = std::memchr(buf + p, '\n', len - p);
        if (!nl) {
          if (trailer_bytes_ + (len - p) > kMaxTrailers) { *pos = p; return kBad; }
          *pos = p;
          return kNeedMore;
        }
        size_t n = static_cast<const char*>(nl) - (buf + p) + 1;
        trailer_bytes_ += n;
        if (trailer_bytes_ > kMaxTrailers) { *pos = p; return kBad; }
        bool empty = n == 1 || (n == 2 && buf[p] == '\r');
        p += n;
        if (empty) {
          *pos = p;
          return kDone;
        }
        break;
      }
    }
  }
  *pos = p;
  return kNeedMore;
}

Route MatchRoute(std::string_view path, std::string_view* id) {
  constexpr std::string_view kPrefix = "/2018-06-01/runtime/";
  if (path.substr(0, kPrefix.size()) != kPrefix) return Route::kNotFound;
  path.remove_prefix(kPrefix.size());
  if (path == "invocation/next") return Route::kNext;
  if (path == "init/error") return Route::kInitError;
  constexpr std::string_view kInv = "invocation/";
  if (path.substr(0, kInv.size()) != kInv) return Route::kNotFound;
  path.remove_prefix(kInv.size());
  size_t slash = path.find('/');
  if (slash == 0 || slash == std::string_view::npos) return Route::kNotFound;
  std::string_view rest = path.substr(slash + 1);
  *id = path.substr(0, slash);
  if (rest == "response") return Route::kResponse;
  if (rest == "error") return Route::kError;
  return Route::kNotFound;
}

std::string_view ExtractErrorType(std::string_view json) {
  constexpr std::string_view kKey = "\"errorType\"";
  if (json.size() > 64 * 1024) json = json.substr(0, 64 * 1024);  // the key comes early
  size_t k = json.find(kKey);
  if (k == std::string_view::npos) return {};
  size_t p = k + kKey.size();
  while (p < json.size() && (json[p] == ' ' || json[p] == '\t' || json[p] == '\n' || json[p] == '\r')) ++p;
  if (p >= json.size() || json[p] != ':') return {};
  ++p;
  while (p < json.size() && (json[p] == ' ' || json[p] == '\t' || json[p] == '\n' || json[p] == '\r')) ++p;
  if (p >= json.size() || json[p] != '"') return {};
  ++p;
  size_t q = p;
  while (q < json.size() && json[q] != '"') {
    unsigned char c = json[q];
    if (c == '\\' || c < ' ' || c == 0x7f || q - p >= 256) return {};
    ++q;
  }
  if (q >= json.size()) return {};
  return json.substr(p, q - p);
}

}  // namespace kindling::init::http
