/*
 * The UDP reference: a C echo loop over recvmmsg(2)/sendmmsg(2), as a C
 * programmer would write it for speed. One thread, a blocking socket:
 * recvmmsg with MSG_WAITFORONE waits for the first datagram and takes what
 * else is queued (up to 64), then sendmmsg sends the batch back, each
 * datagram to its sender.
 *
 *   udp_recvmmsg_echo [host] [port]     prints "LISTENING <port>" once bound
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define SIZE 2048

int main(int argc, char **argv) {
  const char *host = argc > 1 ? argv[1] : "127.0.0.1";
  int port = argc > 2 ? atoi(argv[2]) : 0;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
      bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    perror("udp_recvmmsg_echo");
    return 1;
  }
  socklen_t len = sizeof sa;
  getsockname(fd, (struct sockaddr *)&sa, &len);
  printf("LISTENING %d\n", ntohs(sa.sin_port));
  fflush(stdout);
  static char bufs[BATCH][SIZE];
  static struct sockaddr_storage names[BATCH];
  struct mmsghdr msgs[BATCH];
  struct iovec iovs[BATCH];
  for (;;) {
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
      iovs[i] = (struct iovec){.iov_base = bufs[i], .iov_len = SIZE};
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &names[i];
      msgs[i].msg_hdr.msg_namelen = sizeof names[i];
    }
    int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("recvmmsg");
      return 1;
    }
    for (int i = 0; i < n; i++) iovs[i].iov_len = msgs[i].msg_len;
    for (int sent = 0; sent < n;) {
      int r = sendmmsg(fd, msgs + sent, (unsigned)(n - sent), 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        sent++; /* this datagram refused: drop it, as UDP may */
        continue;
      }
      sent += r;
    }
  }
}
