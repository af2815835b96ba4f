#include "chunks/manifest.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <map>

#include "common/files.h"

namespace kindling::chunks {
namespace {

// A sink that records what it was given.
class MemorySink : public ChunkSink {
 public:
  Status Put(const Digest& d, std::string_view data) override {
    if (Sha256Of(data) != d) return Status::Error("mismatch");
    puts++;
    chunks[d] = std::string(data);
    return Status::Ok();
  }
  int puts = 0;
  std::map<Digest, std::string> chunks;
};

std::string Hex(char c) { return std::string(64, c); }

Manifest TwoAndAHalf() {
  Manifest m;
  m.chunks = {{Sha256Of("a"), kChunkSize}, {Sha256Of("b"), kChunkSize}, {Sha256Of("c"), 100}};
  m.size = 2ull * kChunkSize + 100;
  return m;
}

}  // namespace

TEST(Manifest, EncodeIsCanonicalAndParsesBack) {
  Manifest m = TwoAndAHalf();
  std::string text = m.Encode();
  EXPECT_EQ(text.rfind(R"({"version":1,"chunk_size":524288,"size":1048676,"chunks":[[")", 0), 0u) << text;
  auto back = Manifest::Parse(text);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(*back, m);
  EXPECT_EQ(back->Id(), m.Id());
  EXPECT_EQ(m.Id(), Sha256Of(text));
  // Whitespace and key order do not change the image, only the bytes.
  std::string spaced = " {\n \"chunks\" : [[\"" + Sha256Of("a").Hex() + "\", 12]], \"size\": 12, \"chunk_size\": 524288, \"version\": 1 }\n";
  auto s = Manifest::Parse(spaced);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->size, 12u);
  EXPECT_EQ(s->Encode(), R"({"version":1,"chunk_size":524288,"size":12,"chunks":[[")" + Sha256Of("a").Hex() + R"(",12]]})");
  // The empty image.
  Manifest empty;
  auto e = Manifest::Parse(empty.Encode());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size, 0u);
  EXPECT_TRUE(e->chunks.empty());
}

// Each hostile or malformed input is rejected with an error, never a crash or an exception.
TEST(Manifest, ParserRejectsHostileInputs) {
  const std::string h = Hex('a');
  const std::string head = R"({"version":1,"chunk_size":524288,)";
  std::vector<std::pair<const char*, std::string>> cases = {
      {"empty input", ""},
      {"not JSON", "hello"},
      {"truncated", head + R"("size":1,"chunks":[[")" + h},
      {"trailing garbage", head + R"("size":0,"chunks":[]}x)"},
      {"second document", head + R"("size":0,"chunks":[]}{})"},
      {"array at top", "[]"},
      {"string at top", "\"x\""},
      {"wrong version", R"({"version":2,"chunk_size":524288,"size":0,"chunks":[]})"},
      {"version as string", R"({"version":"1","chunk_size":524288,"size":0,"chunks":[]})"},
      {"wrong chunk_size", R"({"version":1,"chunk_size":4096,"size":0,"chunks":[]})"},
      {"missing key", R"({"version":1,"chunk_size":524288,"chunks":[]})"},
      {"unknown key", head + R"("size":0,"chunks":[],"extra":1})"},
      {"duplicate key", head + R"("size":0,"size":0,"chunks":[]})"},
      {"negative size", head + R"("size":-1,"chunks":[]})"},
      {"fractional size", head + R"("size":1.5,"chunks":[]})"},
      {"size over 2^64", head + R"("size":184467440737095516160,"chunks":[]})"},
      {"size != sum", head + R"("size":5,"chunks":[[")" + h + R"(",4]]})"},
      {"bad hex", head + R"("size":4,"chunks":[[")" + Hex('z') + R"(",4]]})"},
      {"short hex", head + R"("size":4,"chunks":[[")" + h.substr(1) + R"(",4]]})"},
      {"digest not a string", head + R"("size":4,"chunks":[[1,4]]})"},
      {"entry with one field", head + R"("size":4,"chunks":[[")" + h + R"("]]})"},
      {"entry with three fields", head + R"("size":4,"chunks":[[")" + h + R"(",4,4]]})"},
      {"entry as object", head + R"("size":4,"chunks":[{"d":")" + h + R"(","s":4}]})"},
      {"zero-size chunk", head + R"("size":0,"chunks":[[")" + h + R"(",0]]})"},
      {"chunk over 512 KiB", head + R"("size":524289,"chunks":[[")" + h + R"(",524289]]})"},
      {"short chunk not last", head + R"("size":524388,"chunks":[[")" + h + R"(",100],[")" + h + R"(",524288]]})"},
      {"nested arrays", head + R"("size":0,"chunks":[[[]]]})"},
      {"null chunks", head + R"("size":0,"chunks":null})"},
      {"deep nesting", std::string(100000, '[') + std::string(100000, ']')},
      {"over 16 MiB", std::string(kMaxManifestBytes + 1, ' ')},
  };
  // More than kMaxChunks chunks.
  std::string many = head + R"("size":)" + std::to_string(uint64_t{kMaxChunks + 1} * kChunkSize) + R"(,"chunks":[)";
  for (uint32_t i = 0; i <= kMaxChunks; ++i) many += (i ? ",[\"" : "[\"") + h + "\",524288]";
  many += "]}";
  cases.emplace_back("more than 128Ki chunks", many);
  for (const auto& [name, text] : cases) {
    auto m = Manifest::Parse(text);
    EXPECT_FALSE(m.ok()) << name;
    if (!m.ok()) {
      EXPECT_NE(m.status().message().find("invalid manifest"), std::string::npos) << name;
    }
  }
  // Exactly kMaxChunks is fine.
  std::string max = head + R"("size":)" + std::to_string(kMaxImageBytes) + R"(,"chunks":[)";
  for (uint32_t i = 0; i < kMaxChunks; ++i) max += (i ? ",[\"" : "[\"") + h + "\",524288]";
  max += "]}";
  EXPECT_TRUE(Manifest::Parse(max).ok());
}

TEST(Manifest, ImageNames) {
  EXPECT_TRUE(IsValidImageName("runtime/python3.11+v2-x86_64.erofs"));
  EXPECT_FALSE(IsValidImageName(""));
  EXPECT_FALSE(IsValidImageName(std::string(201, 'a')));
  EXPECT_TRUE(IsValidImageName(std::string(200, 'a')));
  EXPECT_FALSE(IsValidImageName("a/../b"));
  EXPECT_FALSE(IsValidImageName("a b"));
  EXPECT_FALSE(IsValidImageName("a?b"));
  EXPECT_FALSE(IsValidImageName(std::string("a\0b", 3)));
}

TEST(Manifest, ChunkFileSplitsAtChunkSize) {
  char tmpl[] = "/tmp/kindling-chunkfile-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  MemorySink sink;
  // Empty file: no chunks.
  ASSERT_TRUE(WriteFile(dir + "/empty", "").ok());
  auto e = ChunkFile(dir + "/empty", sink);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size, 0u);
  EXPECT_TRUE(e->chunks.empty());
  // 2.5 chunks, the first two identical: three Puts (the sink dedups), two distinct chunks.
  std::string data(kChunkSize, 'x');
  data += std::string(kChunkSize, 'x');
  data += std::string(1000, 'y');
  ASSERT_TRUE(WriteFile(dir + "/img", data).ok());
  auto m = ChunkFile(dir + "/img", sink);
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->size, data.size());
  ASSERT_EQ(m->chunks.size(), 3u);
  EXPECT_EQ(m->chunks[0], m->chunks[1]);
  EXPECT_EQ(m->chunks[2].size, 1000u);
  EXPECT_EQ(sink.puts, 3);
  EXPECT_EQ(sink.chunks.size(), 2u);
  EXPECT_TRUE(Manifest::Parse(m->Encode()).ok());
  // Exactly one chunk.
  ASSERT_TRUE(WriteFile(dir + "/one", std::string(kChunkSize, 'z')).ok());
  auto one = ChunkFile(dir + "/one", sink);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->chunks.size(), 1u);
  EXPECT_EQ(one->chunks[0].size, kChunkSize);
  EXPECT_FALSE(ChunkFile(dir + "/absent", sink).ok());
  RemoveTree(dir);
}

}  // namespace kindling::chunks
