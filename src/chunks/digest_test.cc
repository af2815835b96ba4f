#include "chunks/digest.h"

#include <gtest/gtest.h>

#include <unordered_set>

namespace kindling::chunks {

TEST(Digest, Sha256KnownVectorsAndHexRoundTrip) {
  EXPECT_EQ(Sha256Of("").Hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Of("abc").Hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Digest d = Sha256Of("kindling");
  auto back = Digest::FromHex(d.Hex());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, d);
  std::string upper = d.Hex();
  for (char& c : upper) c = static_cast<char>(toupper(c));
  EXPECT_EQ(Digest::FromHex(upper), d);
}

TEST(Digest, FromHexRejectsMalformed) {
  std::string good = Sha256Of("x").Hex();
  EXPECT_FALSE(Digest::FromHex(""));
  EXPECT_FALSE(Digest::FromHex(good.substr(0, 63)));
  EXPECT_FALSE(Digest::FromHex(good + "0"));
  std::string bad = good;
  bad[10] = 'g';
  EXPECT_FALSE(Digest::FromHex(bad));
  bad[10] = '\0';
  EXPECT_FALSE(Digest::FromHex(bad));
}

TEST(Digest, HashAndOrdering) {
  std::unordered_set<Digest, DigestHash> set;
  for (int i = 0; i < 100; ++i) set.insert(Sha256Of(std::to_string(i)));
  set.insert(Sha256Of("0"));
  EXPECT_EQ(set.size(), 100u);
  Digest a, b;
  b.bytes[31] = 1;
  EXPECT_LT(a, b);
}

}  // namespace kindling::chunks
