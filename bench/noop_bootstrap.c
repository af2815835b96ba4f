/* noop_bootstrap: the leanest useful `bootstrap` for Kindling's provided.al2023 runtime.
 *
 * Loop: GET /2018-06-01/runtime/invocation/next on $AWS_LAMBDA_RUNTIME_API (host:port, numeric
 * IPv4 or "localhost"), then POST the event back unchanged to
 * /2018-06-01/runtime/invocation/{request-id}/response, over one keep-alive TCP connection
 * (TCP_NODELAY). No allocation per invoke beyond growing one buffer; no stdio on the hot path.
 *
 * `bootstrap --exit` exits 0 immediately: the fork+exec baseline of the same binary.
 *
 * Exit codes: 0 (--exit), 1 runtime API unreachable or answered 5xx (the Lambda contract: the
 * runtime exits and the environment is reset), 2 bad environment.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in g_addr;
static int g_fd = -1;
static char* g_buf;      /* receive buffer */
static size_t g_cap;     /* its capacity */
static size_t g_len;     /* bytes held */

static void die(const char* msg) {
  (void)!write(2, "bootstrap: ", 11);
  (void)!write(2, msg, strlen(msg));
  (void)!write(2, "\n", 1);
  exit(1);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void disconnect(void) {
  if (g_fd >= 0) close(g_fd);
  g_fd = -1;
  g_len = 0;
}

static void connect_api(void) {
  for (int attempt = 0; attempt < 200; attempt++) { /* <= ~2 s */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket failed");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr*)&g_addr, sizeof g_addr) == 0) {
      g_fd = fd;
      g_len = 0;
      return;
    }
    close(fd);
    sleep_ms(10);
  }
  die("cannot connect to the runtime API");
}

static int send_all(const struct iovec* iov_in, int n) {
  struct iovec iov[4];
  memcpy(iov, iov_in, sizeof(struct iovec) * (size_t)n);
  struct iovec* p = iov;
  while (n > 0) {
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = p;
    mh.msg_iovlen = (size_t)n;
    ssize_t w = sendmsg(g_fd, &mh, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    while (n > 0 && (size_t)w >= p->iov_len) {
      w -= (ssize_t)p->iov_len;
      p++;
      n--;
    }
    if (n > 0) {
      p->iov_base = (char*)p->iov_base + w;
      p->iov_len -= (size_t)w;
    }
  }
  return 0;
}

static int fill(void) {
  if (g_len == g_cap) {
    size_t ncap = g_cap * 2;
    char* nb = realloc(g_buf, ncap);
    if (!nb) die("out of memory");
    g_buf = nb;
    g_cap = ncap;
  }
  for (;;) {
    ssize_t r = recv(g_fd, g_buf + g_len, g_cap - g_len, 0);
    if (r > 0) {
      g_len += (size_t)r;
      return 0;
    }
    if (r < 0 && errno == EINTR) continue;
    return -1;
  }
}

/* Case-insensitive header lookup within [h, end). Returns value start, sets *vlen. */
static const char* header(const char* h, const char* end, const char* name, size_t* vlen) {
  size_t nl = strlen(name);
  while (h < end) {
    const char* eol = memmem(h, (size_t)(end - h), "\r\n", 2);
    if (!eol) eol = end;
    if ((size_t)(eol - h) > nl && h[nl] == ':' && strncasecmp(h, name, nl) == 0) {
      const char* v = h + nl + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      const char* ve = eol;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      *vlen = (size_t)(ve - v);
      return v;
    }
    h = eol + 2;
  }
  return NULL;
}

/* Reads one response. On success returns the status and sets *hdr_end (offset just past the
 * blank line), *body_off and *body_len (the body is de-chunked in place if needed), and
 * *consumed (bytes of g_buf the response occupied). Returns -1 on connection loss. */
static int read_response(size_t* hdr_end, size_t* body_off, size_t* body_len, size_t* consumed) {
  char* he;
  while (!(he = memmem(g_buf, g_len, "\r\n\r\n", 4))) {
    if (fill() < 0) return -1;
  }
  *hdr_end = (size_t)(he - g_buf) + 4;
  if (g_len < 12 || memcmp(g_buf, "HTTP/1.", 7) != 0) die("bad response from runtime API");
  int status = atoi(g_buf + 9);
  size_t vlen = 0;
  const char* cl = header(g_buf, he + 2, "Content-Length", &vlen);
  const char* te = header(g_buf, he + 2, "Transfer-Encoding", &vlen);
  if (te && !cl) {
    /* Chunked: de-chunk into place right after the headers. */
    size_t out = *hdr_end, in = *hdr_end;
    for (;;) {
      char* eol;
      while (!(eol = memmem(g_buf + in, g_len - in, "\r\n", 2))) {
        if (fill() < 0) return -1;
      }
      size_t n = strtoul(g_buf + in, NULL, 16);
      in = (size_t)(eol - g_buf) + 2;
      if (n == 0) {
        while (g_len < in + 2) {
          if (fill() < 0) return -1;
        }
        in += 2; /* no trailers expected */
        break;
      }
      while (g_len < in + n + 2) {
        if (fill() < 0) return -1;
      }
      memmove(g_buf + out, g_buf + in, n);
      out += n;
      in += n + 2;
    }
    *body_off = *hdr_end;
    *body_len = out - *hdr_end;
    /* Keep any bytes after the chunked body just after the de-chunked body. */
    memmove(g_buf + out, g_buf + in, g_len - in);
    g_len = out + (g_len - in);
    *consumed = out;
    return status;
  }
  size_t n = cl ? strtoul(cl, NULL, 10) : 0;
  while (g_len < *hdr_end + n) {
    if (fill() < 0) return -1;
  }
  *body_off = *hdr_end;
  *body_len = n;
  *consumed = *hdr_end + n;
  return status;
}

/* True when the response headers in g_buf[0, hdr_end) ask to close the connection. */
static int wants_close(size_t hdr_end) {
  size_t vlen = 0;
  const char* v = header(g_buf, g_buf + hdr_end - 2, "Connection", &vlen);
  return (v && vlen >= 5 && strncasecmp(v, "close", 5) == 0) || memcmp(g_buf, "HTTP/1.0", 8) == 0;
}

static void consume(size_t n) {
  memmove(g_buf, g_buf + n, g_len - n);
  g_len -= n;
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "--exit") == 0) return 0;
  const char* api = getenv("AWS_LAMBDA_RUNTIME_API");
  if (!api || !*api) {
    (void)!write(2, "bootstrap: AWS_LAMBDA_RUNTIME_API is not set\n", 45);
    return 2;
  }
  char host[64];
  const char* colon = strrchr(api, ':');
  size_t hl = colon ? (size_t)(colon - api) : strlen(api);
  if (hl >= sizeof host) return 2;
  memcpy(host, api, hl);
  host[hl] = 0;
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons(colon ? (unsigned short)atoi(colon + 1) : 80);
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) {
    (void)!write(2, "bootstrap: AWS_LAMBDA_RUNTIME_API must be IPv4:port\n", 52);
    return 2;
  }
  g_cap = 64 * 1024;
  g_buf = malloc(g_cap);
  if (!g_buf) return 1;

  static const char kNext[] =
      "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: runtime\r\n\r\n";
  char head[512];
  char id[160];
  int failures = 0;
  connect_api();
  for (;;) {
    struct iovec iov[2];
    iov[0].iov_base = (void*)kNext;
    iov[0].iov_len = sizeof kNext - 1;
    size_t hdr_end, body_off, body_len, consumed;
    int status;
    if (send_all(iov, 1) < 0 ||
        (status = read_response(&hdr_end, &body_off, &body_len, &consumed)) < 0) {
      if (++failures > 3) die("runtime API connection lost");
      disconnect();
      connect_api();
      continue;
    }
    if (status >= 500) die("runtime API answered 5xx to next");
    if (status != 200) {
      consume(consumed);
      if (++failures > 3) die("runtime API refused next");
      sleep_ms(10);
      continue;
    }
    size_t idlen = 0;
    const char* idp = header(g_buf, g_buf + hdr_end - 2, "Lambda-Runtime-Aws-Request-Id", &idlen);
    if (!idp || idlen == 0 || idlen >= sizeof id) die("next without a request id");
    memcpy(id, idp, idlen);
    id[idlen] = 0;
    int close_after_next = wants_close(hdr_end);
    int hn = snprintf(head, sizeof head,
                      "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\n"
                      "Host: runtime\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      id, body_len);
    iov[0].iov_base = head;
    iov[0].iov_len = (size_t)hn;
    iov[1].iov_base = g_buf + body_off;
    iov[1].iov_len = body_len;
    if (close_after_next) {
      /* The server closes after `next`: send the response on a fresh connection. Reconnecting
       * only resets g_len, so the event bytes stay in g_buf until send_all has copied them. */
      close(g_fd);
      g_fd = -1;
      connect_api();
      g_len = 0;
    }
    if (send_all(iov, body_len ? 2 : 1) < 0) {
      if (++failures > 3) die("runtime API connection lost");
      disconnect();
      connect_api();
      continue;
    }
    if (!close_after_next) consume(consumed);
    status = read_response(&hdr_end, &body_off, &body_len, &consumed);
    if (status < 0) {
      if (++failures > 3) die("runtime API connection lost");
      disconnect();
      connect_api();
      continue;
    }
    int close_after_resp = wants_close(hdr_end);
    consume(consumed);
    if (status >= 500) die("runtime API answered 5xx to response");
    if (close_after_resp) {
      disconnect();
      connect_api();
    }
    failures = 0;
  }
}
