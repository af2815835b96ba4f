#include "chunks/digest.h"

#include <openssl/evp.h>

#include <cstring>

namespace kindling::chunks {

std::string Digest::Hex() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(64, '0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0xf];
  }
  return out;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::optional<Digest> Digest::FromHex(std::string_view hex64) {
  if (hex64.size() != 64) return std::nullopt;
  Digest d;
  for (size_t i = 0; i < d.bytes.size(); ++i) {
    int hi = HexValue(hex64[2 * i]), lo = HexValue(hex64[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return d;
}

size_t DigestHash::operator()(const Digest& d) const noexcept {
  size_t h;
  std::memcpy(&h, d.bytes.data(), sizeof h);
  return h;
}

Digest Sha256Of(std::string_view data) {
  Digest d;
  unsigned int len = 0;
  // EVP_Digest with a built-in algorithm fails only on allocation failure; the digest is then all
  // zeros, which matches no real content, so a verification against it fails safely.
  EVP_Digest(data.data(), data.size(), d.bytes.data(), &len, EVP_sha256(), nullptr);
  return d;
}

}  // namespace kindling::chunks
