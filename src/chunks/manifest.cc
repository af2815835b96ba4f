#include "chunks/manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace kindling::chunks {

std::string Manifest::Encode() const {
  std::string out;
  out.reserve(64 + chunks.size() * 78);
  out += R"({"version":1,"chunk_size":)";
  out += std::to_string(kChunkSize);
  out += R"(,"size":)";
  out += std::to_string(size);
  out += R"(,"chunks":[)";
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (i) out += ',';
    out += "[\"";
    out += chunks[i].digest.Hex();
    out += "\",";
    out += std::to_string(chunks[i].size);
    out += ']';
  }
  out += "]}";
  return out;
}

Digest Manifest::Id() const { return Sha256Of(Encode()); }

namespace {

using json = nlohmann::json;

// A SAX handler that accepts exactly the manifest shape and stops at the first deviation, so a
// hostile document costs no more than reading it up to its first error (no DOM is built).
class ManifestSax {
 public:
  explicit ManifestSax(Manifest* out) : out_(out) {}

  bool null() { return Fail("unexpected null"); }
  bool boolean(bool) { return Fail("unexpected boolean"); }
  bool number_integer(json::number_integer_t) { return Fail("negative number"); }
  bool number_float(json::number_float_t, const json::string_t&) {
    return Fail("number is not an unsigned 64-bit integer");
  }
  bool binary(json::binary_t&) { return Fail("unexpected binary value"); }

  bool number_unsigned(json::number_unsigned_t v) {
    if (depth_ == 1) {
      switch (key_) {
        case Key::kVersion:
          if (v != 1) return Fail("unsupported version " + std::to_string(v));
          return true;
        case Key::kChunkSize:
          if (v != kChunkSize) return Fail("chunk_size must be " + std::to_string(kChunkSize));
          return true;
        case Key::kSize:
          size_ = v;
          return true;
        default:
          return Fail("unexpected number for \"chunks\"");
      }
    }
    if (depth_ == 3 && entry_fields_ == 1) {
      if (v == 0 || v > kChunkSize) return Fail("chunk size " + std::to_string(v) + " out of range");
      out_->chunks.back().size = static_cast<uint32_t>(v);
      entry_fields_ = 2;
      return true;
    }
    return Fail("unexpected number");
  }

  bool string(json::string_t& s) {
    if (depth_ == 3 && entry_fields_ == 0) {
      auto d = Digest::FromHex(s);
      if (!d) return Fail("chunk digest is not 64 hex digits");
      out_->chunks.back().digest = *d;
      entry_fields_ = 1;
      return true;
    }
    return Fail("unexpected string");
  }

  bool start_object(std::size_t) {
    if (depth_ != 0) return Fail("unexpected object");
    depth_ = 1;
    return true;
  }

  bool key(json::string_t& k) {
    // depth_ is 1 here: only the top-level object is accepted.
    Key which;
    if (k == "version") which = Key::kVersion;
    else if (k == "chunk_size") which = Key::kChunkSize;
    else if (k == "size") which = Key::kSize;
    else if (k == "chunks") which = Key::kChunks;
    else return Fail("unknown key \"" + k.substr(0, 64) + "\"");
    unsigned bit = 1u << static_cast<unsigned>(which);
    if (seen_ & bit) return Fail("duplicate key \"" + k + "\"");
    seen_ |= bit;
    key_ = which;
    return true;
  }

  bool end_object() {
    if (seen_ != 0xf) return Fail("missing one of version, chunk_size, size, chunks");
    depth_ = 0;
    done_ = true;
    return true;
  }

  bool start_array(std::size_t) {
    if (depth_ == 1 && key_ == Key::kChunks) {
      depth_ = 2;
      return true;
    }
    if (depth_ == 2) {
      if (out_->chunks.size() >= kMaxChunks)
        return Fail("more than " + std::to_string(kMaxChunks) + " chunks");
      if (!out_->chunks.empty() && out_->chunks.back().size != kChunkSize)
        return Fail("chunk " + std::to_string(out_->chunks.size() - 1) + " is short but not the last");
      out_->chunks.emplace_back();
      entry_fields_ = 0;
      depth_ = 3;
      return true;
    }
    return Fail("unexpected array");
  }

  bool end_array() {
    if (depth_ == 3) {
      if (entry_fields_ != 2) return Fail("a chunk entry must be [\"<hex digest>\", size]");
      depth_ = 2;
      return true;
    }
    // depth_ == 2: the chunk list ends (deeper arrays were refused on start).
    depth_ = 1;
    key_ = Key::kNone;
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    if (error_.empty()) error_ = "invalid JSON at byte " + std::to_string(position);
    return false;
  }

  bool done() const { return done_; }
  uint64_t size() const { return size_; }
  const std::string& error() const { return error_; }

 private:
  enum class Key : unsigned { kVersion = 0, kChunkSize = 1, kSize = 2, kChunks = 3, kNone = 4 };
  bool Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }

  Manifest* out_;
  int depth_ = 0;  // 1: top object, 2: chunk list, 3: chunk entry
  Key key_ = Key::kNone;
  unsigned seen_ = 0;
  int entry_fields_ = 0;
  uint64_t size_ = 0;
  bool done_ = false;
  std::string error_;
};

}  // namespace

Result<Manifest> Manifest::Parse(std::string_view text) {
  auto bad = [](const std::string& why) { return Status::Error("invalid manifest: " + why); };
  if (text.size() > kMaxManifestBytes)
    return bad("larger than " + std::to_string(kMaxManifestBytes) + " bytes");
  Manifest m;
  ManifestSax sax(&m);
  // strict: the document must end at the end of the input (no trailing bytes).
  bool ok = json::sax_parse(text.begin(), text.end(), &sax, nlohmann::detail::input_format_t::json,
                            /*strict=*/true);
  if (!ok || !sax.done()) return bad(sax.error().empty() ? "not a JSON object" : sax.error());
  uint64_t sum = 0;
  for (const ChunkRef& c : m.chunks) sum += c.size;  // <= kMaxChunks * kChunkSize: no overflow
  if (sum != sax.size())
    return bad("size " + std::to_string(sax.size()) + " is not the sum of the chunk sizes (" +
               std::to_string(sum) + ")");
  m.size = sum;
  return m;
}

bool IsValidImageName(std::string_view name) {
  if (name.empty() || name.size() > 200 || name.find("..") != std::string_view::npos) return false;
  for (char c : name)
    if (!isalnum(static_cast<unsigned char>(c)) && std::string_view("._/+-").find(c) == std::string_view::npos)
      return false;
  return true;
}

Result<Manifest> ChunkFile(const std::string& path, ChunkSink& sink) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Errno("open " + path);
  Manifest m;
  std::string buf(kChunkSize, '\0');
  for (;;) {
    // Fill a whole chunk (read may return less than asked).
    size_t have = 0;
    while (have < kChunkSize) {
      ssize_t n = read(fd, buf.data() + have, kChunkSize - have);
      if (n < 0) {
        if (errno == EINTR) continue;
        int e = errno;
        close(fd);
        return Status::Errno("read " + path, e);
      }
      if (n == 0) break;
      have += static_cast<size_t>(n);
    }
    if (have == 0) break;
    if (m.chunks.size() >= kMaxChunks) {
      close(fd);
      return Status::Error(path + " is larger than " + std::to_string(kMaxImageBytes) + " bytes");
    }
    std::string_view data(buf.data(), have);
    ChunkRef ref{Sha256Of(data), static_cast<uint32_t>(have)};
    Status s = sink.Put(ref.digest, data);
    if (!s.ok()) {
      close(fd);
      return s;
    }
    m.chunks.push_back(ref);
    m.size += have;
    if (have < kChunkSize) break;
  }
  close(fd);
  return m;
}

}  // namespace kindling::chunks
