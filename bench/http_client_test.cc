#include "http_client.h"

#include <gtest/gtest.h>

namespace kindling::bench {
namespace {

TEST(ParseUrl, AcceptsLoopbackWithPortAndPath) {
  Url u;
  std::string err;
  ASSERT_TRUE(ParseUrl("http://127.0.0.1:9000/2015-03-31/functions/f/invocations", &u, &err));
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 9000);
  EXPECT_EQ(u.path, "/2015-03-31/functions/f/invocations");
  ASSERT_TRUE(ParseUrl("http://localhost:80", &u, &err));
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.path, "/");
}

TEST(ParseUrl, RejectsOtherSchemesAndNames) {
  Url u;
  std::string err;
  EXPECT_FALSE(ParseUrl("https://127.0.0.1/", &u, &err));
  EXPECT_FALSE(ParseUrl("http://example.com/", &u, &err));
  EXPECT_FALSE(ParseUrl("http://127.0.0.1:99999/", &u, &err));
}

TEST(ParseResponse, ContentLength) {
  Response r;
  std::string err;
  std::string buf = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Amz-Function-Error: Unhandled\r\n\r\n{}";
  EXPECT_EQ(ParseResponse(buf.substr(0, buf.size() - 1), false, &r, &err), 0);
  ASSERT_EQ(ParseResponse(buf, false, &r, &err), static_cast<long>(buf.size()));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{}");
  EXPECT_FALSE(r.close);
  EXPECT_EQ(FindHeader(r.headers, "x-amz-function-error"), "Unhandled");
  EXPECT_EQ(FindHeader(r.headers, "missing"), "");
}

TEST(ParseResponse, ChunkedAndPipelined) {
  Response r;
  std::string err;
  std::string one = "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  std::string buf = one + "HTTP/1.1 204 No Content\r\n\r\n";
  ASSERT_EQ(ParseResponse(buf, false, &r, &err), static_cast<long>(one.size()));
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(r.body, "abcde");
  ASSERT_GT(ParseResponse(std::string_view(buf).substr(one.size()), false, &r, &err), 0);
  EXPECT_EQ(r.status, 204);
}

TEST(ParseResponse, CloseAndErrors) {
  Response r;
  std::string err;
  std::string buf = "HTTP/1.1 429 Too Many\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
  ASSERT_GT(ParseResponse(buf, false, &r, &err), 0);
  EXPECT_TRUE(r.close);
  EXPECT_EQ(ParseResponse("GARBAGE\r\n\r\n", false, &r, &err), -1);
  EXPECT_EQ(ParseResponse("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false, &r, &err), -1);
  EXPECT_EQ(ParseResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, &r,
                          &err),
            -1);
}

TEST(BuildRequest, HasHostLengthAndHeaders) {
  Url u;
  std::string err;
  ASSERT_TRUE(ParseUrl("http://127.0.0.1:9000/x", &u, &err));
  std::string h[] = {"X-Amz-Date: 20260101T000000Z"};
  std::string req = BuildRequest("POST", u, "{}", h, 1);
  EXPECT_EQ(req,
            "POST /x HTTP/1.1\r\nHost: 127.0.0.1:9000\r\nX-Amz-Date: 20260101T000000Z\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
}

}  // namespace
}  // namespace kindling::bench
