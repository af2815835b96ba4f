// Content addresses of chunks: SHA-256 digests, and the fixed chunk size images are split into.
//
// Thread safety: every function here is pure (no shared state).
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kindling::chunks {

// Every chunk of an image is kChunkSize bytes except its last (1..kChunkSize bytes).
constexpr uint32_t kChunkSize = 512 * 1024;

// A SHA-256 digest. Hex() is 64 lower-case hex digits, the form used in file names, URLs and
// manifests.
struct Digest {
  std::array<uint8_t, 32> bytes{};

  std::string Hex() const;
  // Exactly 64 hex digits (either case); nullopt for anything else.
  static std::optional<Digest> FromHex(std::string_view hex64);

  auto operator<=>(const Digest&) const = default;
  bool operator==(const Digest&) const = default;
};

// For unordered containers: the digest's first 8 bytes (already uniformly distributed).
struct DigestHash {
  size_t operator()(const Digest& d) const noexcept;
};

// SHA-256 of data (OpenSSL EVP).
Digest Sha256Of(std::string_view data);

}  // namespace kindling::chunks
