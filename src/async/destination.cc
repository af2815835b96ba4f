#include "async/destination.h"

#include <vector>

namespace kindling {

namespace {

std::vector<std::string> Split(const std::string& s, char sep, size_t max_parts) {
  std::vector<std::string> out;
  size_t start = 0;
  while (out.size() + 1 < max_parts) {
    size_t at = s.find(sep, start);
    if (at == std::string::npos) break;
    out.push_back(s.substr(start, at - start));
    start = at + 1;
  }
  out.push_back(s.substr(start));
  return out;
}

bool AllOf(const std::string& s, const char* chars) {
  return s.find_first_not_of(chars) == std::string::npos;
}

constexpr const char* kDigits = "0123456789";
constexpr const char* kNameChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

}  // namespace

bool ValidQueueName(const std::string& name) {
  std::string base = name;
  if (base.size() > 5 && base.compare(base.size() - 5, 5, ".fifo") == 0) base.resize(base.size() - 5);
  return !base.empty() && name.size() <= 80 && AllOf(base, kNameChars);
}

Destination ParseDestination(const std::string& arn) {
  Destination d;
  // arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE
  std::vector<std::string> p = Split(arn, ':', 6);
  if (p.size() != 6 || p[0] != "arn" || p[1].rfind("aws", 0) != 0 || p[2].empty()) return d;
  d.service = p[2];
  d.region = p[3];
  d.account = p[4];
  const std::string& resource = p[5];
  bool regional = !d.region.empty() && d.account.size() == 12 && AllOf(d.account, kDigits);
  if (d.service == "lambda") {
    std::vector<std::string> r = Split(resource, ':', 3);
    if (!regional || r[0] != "function" || r.size() < 2 || r[1].empty() || r[1].size() > 64 ||
        !AllOf(r[1], kNameChars))
      return d;
    d.function = r[1];
    if (r.size() == 3) {
      if (r[2].empty() || r[2].size() > 128) return d;
      d.qualifier = r[2];
    }
    d.kind = Destination::kLambda;
    return d;
  }
  if (d.service == "sqs" || d.service == "sns") {
    if (!regional || !ValidQueueName(resource)) return d;
    d.queue = resource;
    d.kind = Destination::kLocalQueue;
    return d;
  }
  if (d.service == "events") {
    if (!regional || resource.rfind("event-bus/", 0) != 0) return d;
    d.queue = resource.substr(10);
    d.kind = ValidQueueName(d.queue) ? Destination::kLocalQueue : Destination::kUnsupported;
    return d;
  }
  // S3 buckets are valid OnFailure targets in Lambda, but Kindling has no S3; anything else is
  // not a destination at all.
  if (d.service == "s3") d.kind = Destination::kUnsupported;
  return d;
}

}  // namespace kindling
