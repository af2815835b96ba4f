// SigV4 verification against signatures made by botocore 1.x on this machine (SigV4Auth /
// SigV4QueryAuth for service "lambda", region us-east-1, clock fixed at 2026-11-28T00:00:00Z): a small
// python script run once produced the Authorization headers and presigned URLs below, which are
// pasted here as constants. Plus the AWS SigV4 test suite's "get-vanilla" vector.
#include "auth/sigv4.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace kindling {
namespace {

using namespace std::chrono_literals;

constexpr const char* kKey = "KDLGTESTTESTTEST0001";
constexpr const char* kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr const char* kDate = "20261128T000000Z";
constexpr const char* kScope = "Credential=KDLGTESTTESTTEST0001/20261128/us-east-1/lambda/aws4_request";

std::chrono::system_clock::time_point Now() { return *sigv4::ParseAmzDate(kDate); }

SigV4Verifier MakeVerifier(const std::string& region = "us-east-1") {
  auto store = CredentialStore::Parse(std::string("[alice]\naws_access_key_id = ") + kKey +
                                      "\naws_secret_access_key = " + kSecret +
                                      "\n\n[bob]\naws_access_key_id = KDLGBOBBOBBOBBOB0002\n"
                                      "aws_secret_access_key = bobsecretbobsecretbobsecret\n");
  EXPECT_TRUE(store.ok()) << store.status().message();
  SigV4Options o;
  o.region = region;
  return SigV4Verifier(std::move(store).value(), o);
}

HttpRequest Request(std::string method, std::string target, std::vector<std::pair<std::string, std::string>> headers,
                    std::string body = "") {
  HttpRequest r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.headers = {{"host", "127.0.0.1:9000"}};
  for (auto& h : headers) r.headers.push_back(std::move(h));
  r.body = std::move(body);
  return r;
}

std::string Auth(const std::string& signed_headers, const std::string& signature) {
  return std::string("AWS4-HMAC-SHA256 ") + kScope + ", SignedHeaders=" + signed_headers + ", Signature=" + signature;
}

// --- botocore vectors -----------------------------------------------------------------------------

HttpRequest ListFunctions() {
  return Request("GET", "/2015-03-31/functions/",
                 {{"x-amz-date", kDate},
                  {"authorization", Auth("host;x-amz-date", "4885fe832fa2160cea1fe470eaad8b0825b5024be35d833ffb5c3df41e2be3ac")}});
}

HttpRequest InvokeRequest() {
  return Request("POST", "/2015-03-31/functions/my-fn/invocations",
                 {{"x-amz-invocation-type", "RequestResponse"},
                  {"content-type", "application/json"},
                  {"x-amz-date", kDate},
                  {"authorization", Auth("content-type;host;x-amz-date;x-amz-invocation-type",
                                         "bf1721c53e1debd5c03524ddd4d64ba7b14916c24fbd96578883168dd7379504")},
                  {"content-length", "10"}},
                 "{\"k\": \"v\"}");
}

TEST(SigV4, BotocoreHeaderFormVectors) {
  SigV4Verifier v = MakeVerifier();
  const Credential* user = nullptr;
  EXPECT_EQ(v.Verify(ListFunctions(), Now(), &user), std::nullopt);
  ASSERT_NE(user, nullptr);
  EXPECT_EQ(user->user, "alice");
  EXPECT_EQ(v.Verify(InvokeRequest(), Now()), std::nullopt);
  // An ARN in the path: botocore sends ':' as %3A and the canonical URI encodes it again (%253A).
  EXPECT_EQ(v.Verify(Request("GET",
                             "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Afn/"
                             "configuration?Qualifier=%24LATEST",
                             {{"x-amz-date", kDate},
                              {"authorization", Auth("host;x-amz-date", "a1c3da3123a9b063f716455e9c6862c90016b43fba968cb3ec7bdc8839f8ac30")}}),
                     Now()),
            std::nullopt);
  // Query parameters are sorted and re-encoded.
  EXPECT_EQ(v.Verify(Request("GET", "/2015-03-31/functions/?MaxItems=10&Marker=a%2Bb%3D&FunctionVersion=ALL",
                             {{"x-amz-date", kDate},
                              {"authorization", Auth("host;x-amz-date", "ef20bab9039b60c412514c5fd4cc9404ed06167048c829f08c479354fd434c00")}}),
                     Now()),
            std::nullopt);
  // Header values are trimmed and inner whitespace collapsed (botocore signed "  a   b  ").
  HttpRequest ws = Request("PUT", "/2015-03-31/functions/f/configuration",
                           {{"x-custom", "  a   b  "},
                            {"x-amz-date", kDate},
                            {"authorization", Auth("host;x-amz-date;x-custom", "93bb6bc391eab1885cd27d153a4894f04018c3b352fb16ffc0c1be910b982686")}},
                           "{\"Timeout\": 5}");
  EXPECT_EQ(v.Verify(ws, Now()), std::nullopt);
  ws.headers[1].second = "a b";  // the same value after trimming: still valid
  EXPECT_EQ(v.Verify(ws, Now()), std::nullopt);
  ws.headers[1].second = "a  b c";
  EXPECT_EQ(v.Verify(ws, Now())->type, "InvalidSignatureException");
}

TEST(SigV4, BotocoreQueryFormVector) {
  SigV4Verifier v = MakeVerifier();
  HttpRequest r = Request("GET",
                          "/kindling/code/abc.zip?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=KDLGTESTTESTTEST0001"
                          "%2F20261128%2Fus-east-1%2Flambda%2Faws4_request&X-Amz-Date=20261128T000000Z&X-Amz-Expires=300"
                          "&X-Amz-SignedHeaders=host&X-Amz-Signature="
                          "ea0fd590101e00872f15789b360fb87c5fad10213aa415d3cd58749c8cbca966",
                          {});
  EXPECT_EQ(v.Verify(r, Now()), std::nullopt);
  EXPECT_EQ(v.Verify(r, Now() + 299s), std::nullopt);  // within X-Amz-Expires
  auto late = v.Verify(r, Now() + 301s);
  ASSERT_TRUE(late);
  EXPECT_EQ(late->type, "InvalidSignatureException");
  EXPECT_NE(late->message.find("Signature expired"), std::string::npos);
  // Another path with the same query: rejected.
  HttpRequest other = r;
  other.target.replace(0, strlen("/kindling/code/abc.zip"), "/kindling/code/abd.zip");
  EXPECT_EQ(v.Verify(other, Now())->type, "InvalidSignatureException");
  // Our own presigner produces URLs the verifier accepts (GetFunction's Code.Location).
  std::string q = v.PresignQuery(*v.credentials().Find(kKey), "127.0.0.1:9000", "/kindling/code/x.zip", Now(), 600s);
  EXPECT_EQ(v.Verify(Request("GET", "/kindling/code/x.zip?" + q, {}), Now() + 599s), std::nullopt);
  EXPECT_TRUE(v.Verify(Request("GET", "/kindling/code/x.zip?" + q, {}), Now() + 601s));
}

TEST(SigV4, AwsTestSuiteGetVanilla) {
  // aws-sig-v4-test-suite/get-vanilla: GET / with Host example.amazonaws.com, service "service".
  std::string canonical = sigv4::CanonicalRequest(
      "GET", "/", {{"host", "example.amazonaws.com"}, {"x-amz-date", "20150830T123600Z"}}, {"host", "x-amz-date"},
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", false);
  EXPECT_EQ(canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string sts = sigv4::StringToSign("20150830T123600Z", "20150830/us-east-1/service/aws4_request", canonical);
  EXPECT_EQ(sigv4::Sign("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "service", sts),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(SigV4, CanonicalPieces) {
  EXPECT_EQ(sigv4::NormalizePath(""), "/");
  EXPECT_EQ(sigv4::NormalizePath("/a//b/./c/../d/"), "/a/b/d/");
  EXPECT_EQ(sigv4::NormalizePath("/.."), "/");
  EXPECT_EQ(sigv4::CanonicalUri("/a b/%3A~"), "/a%20b/%253A~");
  EXPECT_EQ(sigv4::CanonicalQuery("b=2&a=2&a=1&X-Amz-Signature=zz&c", true), "a=1&a=2&b=2&c=");
  EXPECT_EQ(sigv4::CanonicalQuery("k=a+b%2f", false), "k=a%2Bb%2F");
  EXPECT_EQ(sigv4::TrimAll("  a \t  b  "), "a b");
  EXPECT_EQ(sigv4::CanonicalHeaders({{"x-a", "1"}, {"host", "h"}, {"x-a", " 2 "}}, {"host", "x-a"}), "host:h\nx-a:1,2\n");
  EXPECT_EQ(sigv4::FormatAmzDate(Now()), kDate);
  EXPECT_FALSE(sigv4::ParseAmzDate("2026-11-28T00:00:00Z"));
  EXPECT_FALSE(sigv4::ParseAmzDate("20261328T000000Z"));
}

TEST(SigV4, ConstantTimeCompareIsUsed) {
  EXPECT_TRUE(sigv4::ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(sigv4::ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(sigv4::ConstantTimeEquals("abc", "abcd"));
  // Every single-character change of the signature is rejected the same way.
  SigV4Verifier v = MakeVerifier();
  HttpRequest r = ListFunctions();
  std::string& auth = r.headers[2].second;
  size_t at = auth.find("Signature=") + 10;
  for (size_t i = at; i < auth.size(); i += 7) {
    HttpRequest bad = r;
    char& c = bad.headers[2].second[i];
    c = c == '0' ? '1' : '0';
    auto e = v.Verify(bad, Now());
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, 403);
    EXPECT_EQ(e->type, "InvalidSignatureException");
  }
}

TEST(SigV4, BadSignaturesAndTampering) {
  SigV4Verifier v = MakeVerifier();
  HttpRequest r = InvokeRequest();
  r.body = "{\"k\": \"w\"}";  // body changed after signing
  EXPECT_EQ(v.Verify(r, Now())->type, "InvalidSignatureException");
  r = InvokeRequest();
  r.method = "PUT";
  EXPECT_EQ(v.Verify(r, Now())->type, "InvalidSignatureException");
  r = InvokeRequest();
  r.target = "/2015-03-31/functions/other-fn/invocations";
  EXPECT_EQ(v.Verify(r, Now())->type, "InvalidSignatureException");
  r = InvokeRequest();
  r.headers[1].second = "Event";  // a signed header changed
  EXPECT_EQ(v.Verify(r, Now())->type, "InvalidSignatureException");
  r = InvokeRequest();
  r.headers.emplace_back("x-amz-log-type", "Tail");  // an unsigned extra header is allowed (as AWS)
  EXPECT_EQ(v.Verify(r, Now()), std::nullopt);
  r = InvokeRequest();
  r.target += "?Qualifier=x";  // query added
  EXPECT_EQ(v.Verify(r, Now())->type, "InvalidSignatureException");
  // x-amz-content-sha256 must be the body's hash and a real hash.
  r = InvokeRequest();
  r.headers.emplace_back("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
  EXPECT_EQ(v.Verify(r, Now())->type, "InvalidSignatureException");
  r = InvokeRequest();
  r.headers.emplace_back("x-amz-content-sha256", std::string(64, 'a'));
  EXPECT_NE(v.Verify(r, Now())->message.find("x-amz-content-sha256"), std::string::npos);
  // Signed with the wrong secret.
  std::string canonical = sigv4::CanonicalRequest("GET", "/2015-03-31/functions/",
                                                  {{"host", "127.0.0.1:9000"}, {"x-amz-date", kDate}},
                                                  {"host", "x-amz-date"}, sigv4::CanonicalQuery("", false).empty()
                                                      ? "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" : "", false);
  std::string sts = sigv4::StringToSign(kDate, "20261128/us-east-1/lambda/aws4_request", canonical);
  std::string good = sigv4::Sign(kSecret, "20261128", "us-east-1", "lambda", sts);
  EXPECT_EQ(good, "4885fe832fa2160cea1fe470eaad8b0825b5024be35d833ffb5c3df41e2be3ac");  // same as botocore
  std::string wrong = sigv4::Sign("not-the-secret-at-all", "20261128", "us-east-1", "lambda", sts);
  r = ListFunctions();
  r.headers[2].second = Auth("host;x-amz-date", wrong);
  auto e = v.Verify(r, Now());
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 403);
  EXPECT_EQ(e->type, "InvalidSignatureException");
  EXPECT_EQ(e->message.rfind("The request signature we calculated does not match", 0), 0u);
}

TEST(SigV4, UnknownKeyMissingAndMalformed) {
  SigV4Verifier v = MakeVerifier();
  HttpRequest r = ListFunctions();
  std::string& auth = r.headers[2].second;
  auth.replace(auth.find(kKey), strlen(kKey), "KDLGNOBODYNOBODY0009");
  auto e = v.Verify(r, Now());
  ASSERT_TRUE(e);
  EXPECT_EQ(e->status, 403);
  EXPECT_EQ(e->type, "UnrecognizedClientException");
  EXPECT_EQ(e->message, "The security token included in the request is invalid.");

  EXPECT_EQ(v.Verify(Request("GET", "/2015-03-31/functions/", {}), Now())->type, "MissingAuthenticationTokenException");
  auto incomplete = [&](std::string header, std::vector<std::pair<std::string, std::string>> extra = {{"x-amz-date", kDate}}) {
    extra.emplace_back("authorization", std::move(header));
    auto err = v.Verify(Request("GET", "/2015-03-31/functions/", extra), Now());
    return err ? err->type + ": " + err->message : std::string("accepted");
  };
  EXPECT_EQ(incomplete("AWS4-HMAC-SHA256").rfind("IncompleteSignatureException", 0), 0u);
  EXPECT_EQ(incomplete("AWS4-HMAC-SHA1 Credential=x").rfind("IncompleteSignatureException", 0), 0u);
  EXPECT_EQ(incomplete("Bearer abc").rfind("IncompleteSignatureException", 0), 0u);
  EXPECT_EQ(incomplete(std::string("AWS4-HMAC-SHA256 ") + kScope + ", Signature=00").rfind("IncompleteSignatureException", 0), 0u);
  EXPECT_EQ(incomplete(std::string("AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=00")).rfind("IncompleteSignatureException", 0), 0u);
  EXPECT_EQ(incomplete(Auth("x-amz-date", "00")).rfind("IncompleteSignatureException", 0), 0u);  // host unsigned
  EXPECT_EQ(incomplete(Auth("host;x-amz-date", "00"), {}).rfind("IncompleteSignatureException", 0), 0u);  // no date
  EXPECT_EQ(incomplete(Auth("host;x-amz-date", "00"), {{"x-amz-date", "yesterday"}}).rfind("IncompleteSignatureException", 0), 0u);
  // Both forms at once.
  HttpRequest both = ListFunctions();
  both.target += "?X-Amz-Algorithm=AWS4-HMAC-SHA256";
  EXPECT_EQ(v.Verify(both, Now())->type, "IncompleteSignatureException");
}

TEST(SigV4, WrongRegionServiceAndScopeDate) {
  // The same botocore-signed request against a daemon in another region.
  auto e = MakeVerifier("eu-west-1").Verify(ListFunctions(), Now());
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "InvalidSignatureException");
  EXPECT_EQ(e->message, "Credential should be scoped to a valid region. ");
  SigV4Verifier v = MakeVerifier();
  HttpRequest r = ListFunctions();
  std::string& auth = r.headers[2].second;
  auth.replace(auth.find("/lambda/"), 8, "/s3/");
  EXPECT_EQ(v.Verify(r, Now())->message, "Credential should be scoped to correct service: 'lambda'. ");
  r = ListFunctions();
  r.headers[2].second.replace(r.headers[2].second.find("/20261128/"), 10, "/20261127/");
  EXPECT_NE(v.Verify(r, Now())->message.find("Date in Credential scope does not match"), std::string::npos);
  r = ListFunctions();
  r.headers[2].second.replace(r.headers[2].second.find("aws4_request"), 12, "aws5_request");
  EXPECT_EQ(v.Verify(r, Now())->type, "InvalidSignatureException");
}

TEST(SigV4, ClockSkewWindow) {
  SigV4Verifier v = MakeVerifier();
  EXPECT_EQ(v.Verify(ListFunctions(), Now() + 299s), std::nullopt);
  EXPECT_EQ(v.Verify(ListFunctions(), Now() - 299s), std::nullopt);
  auto expired = v.Verify(ListFunctions(), Now() + 10min);
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->status, 403);
  EXPECT_EQ(expired->type, "InvalidSignatureException");
  EXPECT_EQ(expired->message,
            "Signature expired: 20261128T000000Z is now earlier than 20261128T000500Z (20261128T001000Z - 5 min.)");
  auto future = v.Verify(ListFunctions(), Now() - 10min);
  ASSERT_TRUE(future);
  EXPECT_EQ(future->type, "InvalidSignatureException");
  EXPECT_EQ(future->message,
            "Signature not yet current: 20261128T000000Z is still later than 20261127T235500Z (20261127T235000Z + 5 min.)");
}

TEST(SigV4, HeaderOrderAndCase) {
  SigV4Verifier v = MakeVerifier();
  HttpRequest r = InvokeRequest();
  std::reverse(r.headers.begin(), r.headers.end());  // arrival order does not matter
  EXPECT_EQ(v.Verify(r, Now()), std::nullopt);
  // Components of the Authorization header in another order, extra spaces.
  r = ListFunctions();
  r.headers[2].second = std::string("AWS4-HMAC-SHA256 Signature=4885fe832fa2160cea1fe470eaad8b0825b5024be35d833ffb5c3df41e2be3ac ,  ") +
                        kScope + ",SignedHeaders=host;x-amz-date";
  EXPECT_EQ(v.Verify(r, Now()), std::nullopt);
  // SignedHeaders must be sorted lower-case names.
  r = ListFunctions();
  r.headers[2].second = Auth("x-amz-date;host", "4885fe832fa2160cea1fe470eaad8b0825b5024be35d833ffb5c3df41e2be3ac");
  EXPECT_TRUE(v.Verify(r, Now()));
  r.headers[2].second = Auth("Host;x-amz-date", "4885fe832fa2160cea1fe470eaad8b0825b5024be35d833ffb5c3df41e2be3ac");
  EXPECT_TRUE(v.Verify(r, Now()));
  // A second Host header changes the canonical value: rejected.
  r = ListFunctions();
  r.headers.emplace_back("host", "evil.example");
  EXPECT_EQ(v.Verify(r, Now())->type, "InvalidSignatureException");
}

TEST(Credentials, ParseAndValidate) {
  auto ok = CredentialStore::Parse("# c\n[a]\naws_access_key_id=AAAAAAAAAAAAAAAA\naws_secret_access_key = 0123456789abcdef\nregion=x\n");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->users().size(), 1u);
  EXPECT_NE(ok->Find("AAAAAAAAAAAAAAAA"), nullptr);
  EXPECT_EQ(ok->Find("AAAAAAAAAAAAAAAB"), nullptr);
  EXPECT_FALSE(CredentialStore::Parse("").ok());
  EXPECT_FALSE(CredentialStore::Parse("[a]\naws_access_key_id=AAAAAAAAAAAAAAAA\n").ok());
  EXPECT_FALSE(CredentialStore::Parse("aws_access_key_id=AAAAAAAAAAAAAAAA\n").ok());
  EXPECT_FALSE(CredentialStore::Parse("[a]\naws_access_key_id=short\naws_secret_access_key=0123456789abcdef\n").ok());
  EXPECT_FALSE(CredentialStore::Parse("[a]\naws_access_key_id=AAAAAAAAAAAAAAAA\naws_secret_access_key=0123456789abcdef\n"
                                      "[b]\naws_access_key_id=AAAAAAAAAAAAAAAA\naws_secret_access_key=0123456789abcdef\n").ok());
  Credential g1 = CredentialStore::Generate("x"), g2 = CredentialStore::Generate("y");
  EXPECT_EQ(g1.access_key_id.size(), 20u);
  EXPECT_EQ(g1.secret_access_key.size(), 40u);
  EXPECT_NE(g1.access_key_id, g2.access_key_id);
  EXPECT_NE(g1.secret_access_key, g2.secret_access_key);
  auto round = CredentialStore::Parse(CredentialStore::Render({g1, g2}));
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(round->Find(g2.access_key_id)->secret_access_key, g2.secret_access_key);
}

TEST(Credentials, CreatedOwnerOnlyAndLooseModeRefused) {
  char dir[] = "/tmp/kindling-auth-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/credentials";
  bool created = false;
  auto first = CredentialStore::LoadOrCreate(path, &created);
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_TRUE(created);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  auto again = CredentialStore::LoadOrCreate(path, &created);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(again->users().front().secret_access_key, first->users().front().secret_access_key);
  chmod(path.c_str(), 0644);
  auto loose = CredentialStore::LoadOrCreate(path, &created);
  ASSERT_FALSE(loose.ok());
  EXPECT_NE(loose.status().message().find("mode 0644"), std::string::npos);
  chmod(path.c_str(), 0640);
  EXPECT_FALSE(CredentialStore::LoadOrCreate(path, &created).ok());
  // A symlink in its place is not followed.
  unlink(path.c_str());
  ASSERT_EQ(symlink("/etc/hostname", path.c_str()), 0);
  EXPECT_FALSE(CredentialStore::LoadOrCreate(path, &created).ok());
  unlink(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace kindling
