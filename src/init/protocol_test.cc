#include "init/protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace kindling::protocol {
namespace {

std::string Enc(FrameType t, const std::vector<std::string_view>& f) {
  std::string s;
  Encode(t, f, &s);
  return s;
}

TEST(ProtocolTest, RoundTripsFramesFedByteByByte) {
  std::string big(100000, 'x');
  std::string wire = Enc(FrameType::kInvoke, {"id-1", "123", "arn", "", "ctx", "", big}) +
                     Enc(FrameType::kReady, {"42"}) + Enc(FrameType::kLog, {});
  FrameDecoder d;
  Frame f;
  std::vector<Frame> got;
  for (char c : wire) {
    d.Feed(&c, 1);
    while (d.Next(&f) == 1) got.push_back(f);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].type, FrameType::kInvoke);
  ASSERT_EQ(got[0].fields.size(), 7u);
  EXPECT_EQ(got[0].field(0), "id-1");
  EXPECT_EQ(got[0].field(3), "");
  EXPECT_EQ(got[0].field(6), big);
  EXPECT_EQ(got[1].type, FrameType::kReady);
  EXPECT_EQ(got[1].field(0), "42");
  EXPECT_EQ(got[2].type, FrameType::kLog);
  EXPECT_TRUE(got[2].fields.empty());
  EXPECT_EQ(got[2].field(5), "");  // missing trailing fields decode as empty
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(ProtocolTest, ReusesFrameAcrossDecodes) {
  FrameDecoder d;
  Frame f;
  std::string wire = Enc(FrameType::kError, {"a", "b", "c"}) + Enc(FrameType::kResponse, {"z"});
  d.Feed(wire.data(), wire.size());
  ASSERT_EQ(d.Next(&f), 1);
  EXPECT_EQ(f.fields.size(), 3u);
  ASSERT_EQ(d.Next(&f), 1);
  EXPECT_EQ(f.type, FrameType::kResponse);
  ASSERT_EQ(f.fields.size(), 1u);
  EXPECT_EQ(f.field(0), "z");
  EXPECT_EQ(d.Next(&f), 0);
}

TEST(ProtocolTest, FeedSpaceAndCommitReadInPlace) {
  std::string wire = Enc(FrameType::kLog, {"hello"});
  FrameDecoder d;
  char* p = d.FeedSpace(3);
  memcpy(p, wire.data(), 3);
  d.Commit(3);
  Frame f;
  EXPECT_EQ(d.Next(&f), 0);
  p = d.FeedSpace(1 << 20);
  memcpy(p, wire.data() + 3, wire.size() - 3);
  d.Commit(wire.size() - 3);
  ASSERT_EQ(d.Next(&f), 1);
  EXPECT_EQ(f.field(0), "hello");
  d.ShrinkIfEmpty(0);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(ProtocolTest, PiecewiseEncodingMatchesEncode) {
  char h[kFrameHeaderBytes], f1[kFieldHeaderBytes], f2[kFieldHeaderBytes];
  EncodeFrameHeader(FrameType::kResponse, 2 * kFieldHeaderBytes + 2 + 5, h);
  EncodeFieldHeader(2, f1);
  EncodeFieldHeader(5, f2);
  std::string s = std::string(h, sizeof h) + std::string(f1, 4) + "id" + std::string(f2, 4) + "hello";
  EXPECT_EQ(s, Enc(FrameType::kResponse, {"id", "hello"}));
}

TEST(ProtocolTest, RejectsZeroLength) {
  FrameDecoder d;
  Frame f;
  const char z[4] = {0, 0, 0, 0};
  d.Feed(z, 4);
  EXPECT_EQ(d.Next(&f), -1);
}

TEST(ProtocolTest, RejectsOversizedFrameBeforeItArrives) {
  FrameDecoder d;
  Frame f;
  uint32_t len = kMaxFrameBytes + 1;
  char b[5] = {static_cast<char>(len), static_cast<char>(len >> 8), static_cast<char>(len >> 16),
               static_cast<char>(len >> 24), 1};
  d.Feed(b, 5);
  EXPECT_EQ(d.Next(&f), -1);
  const char ff[4] = {'\xff', '\xff', '\xff', '\xff'};
  FrameDecoder d2;
  d2.Feed(ff, 4);
  EXPECT_EQ(d2.Next(&f), -1);
}

TEST(ProtocolTest, RejectsFieldOverrunningFrame) {
  // length 1+4+2, type, field size 100 (but only 2 bytes follow)
  std::string s = {7, 0, 0, 0, 14, 100, 0, 0, 0, 'a', 'b'};
  FrameDecoder d;
  Frame f;
  d.Feed(s.data(), s.size());
  EXPECT_EQ(d.Next(&f), -1);
}

TEST(ProtocolTest, RejectsTruncatedFieldHeader) {
  std::string s = {3, 0, 0, 0, 14, 1, 0};  // 2 bytes of a 4-byte field size
  FrameDecoder d;
  Frame f;
  d.Feed(s.data(), s.size());
  EXPECT_EQ(d.Next(&f), -1);
}

}  // namespace
}  // namespace kindling::protocol
