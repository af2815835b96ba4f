// Identifiers: request ids (UUID v4 text) and content digests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kindling {

// A random RFC 4122 version-4 UUID, lower-case, 36 characters. Thread-safe.
std::string NewRequestId();

// 64 random bits from the OS's CSPRNG (secrets such as sandbox lease tokens). Thread-safe.
uint64_t RandomU64();

// Raw 32-byte SHA-256 digest of data.
std::string Sha256(std::string_view data);
// Lower-case hex of bytes.
std::string HexEncode(std::string_view bytes);
// Standard base64 (with padding) of bytes.
std::string Base64Encode(std::string_view bytes);
// Decodes standard base64; returns false on malformed input (whitespace is not accepted).
bool Base64Decode(std::string_view text, std::string* out);

}  // namespace kindling
