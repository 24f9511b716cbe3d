/*
 * The C baseline of the migration stream's RAM path: a sender and a receiver of the same framing
 * (a 24-byte RAM_PAGES head, then up to 256 pages), the sender writing each run straight from its
 * guest RAM with writev, the receiver reading each run's pages straight into its guest RAM. Built
 * by the bench with gcc -O3 -march=native; the bench runs each end as a process of its own.
 *
 *   stream-pair recv tcp|unix:PATH RAM  prints "listening ADDRESS", then "done BYTES MS" where MS is
 *                                       the time from accept to the end of the stream; RAM bytes of
 *                                       guest RAM, touched before (as a running guest's is)
 *   stream-pair send ADDRESS BYTES      sends BYTES of random pages to ADDRESS (tcp:HOST:PORT|unix:PATH)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { PAGE = 4096, RUN = 256, HEAD = 24 };

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static uint8_t *guest_ram(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

/* Read exactly n bytes; 0 at a clean end of stream before the first byte. */
static size_t read_full(int fd, uint8_t *p, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = read(fd, p + done, n - done);
		if (r < 0)
			die("read");
		if (r == 0) {
			if (done == 0)
				return 0;
			fprintf(stderr, "stream ended inside a record\n");
			exit(1);
		}
		done += (size_t)r;
	}
	return done;
}

static int receive(const char *where, size_t ram_bytes)
{
	uint8_t *ram = guest_ram(ram_bytes);
	memset(ram, 1, ram_bytes);
	int fd;
	char name[200];
	if (strcmp(where, "tcp") == 0) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof a;
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0)
			die("tcp listen");
		snprintf(name, sizeof name, "tcp:127.0.0.1:%u", ntohs(a.sin_port));
	} else {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		snprintf(a.sun_path, sizeof a.sun_path, "%s", where + strlen("unix:"));
		unlink(a.sun_path);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
			die("unix listen");
		snprintf(name, sizeof name, "%s", where);
	}
	if (listen(fd, 1) < 0)
		die("listen");
	printf("listening %s\n", name);
	fflush(stdout);
	int c = accept(fd, NULL, NULL);
	if (c < 0)
		die("accept");
	double t0 = now_ms();
	uint8_t head[HEAD];
	size_t bytes = 0;
	while (read_full(c, head, HEAD)) {
		uint32_t first, count;
		memcpy(&first, head + 12, 4);
		memcpy(&count, head + 16, 4);
		if (head[0] != 0x02 || count == 0 || count > RUN || (size_t)(first + count) * PAGE > ram_bytes) {
			fprintf(stderr, "bad record\n");
			return 1;
		}
		bytes += HEAD + read_full(c, ram + (size_t)first * PAGE, (size_t)count * PAGE);
	}
	printf("done %zu %.3f\n", bytes, now_ms() - t0);
	return 0;
}

static int send_pages(const char *where, size_t bytes)
{
	uint8_t *ram = guest_ram(bytes);
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < bytes / 8; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		((uint64_t *)ram)[i] = x;
	}
	int fd;
	if (strncmp(where, "tcp:", 4) == 0) {
		const char *port = strrchr(where, ':');
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port + 1)), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
			die("tcp connect");
	} else {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		snprintf(a.sun_path, sizeof a.sun_path, "%s", where + strlen("unix:"));
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
			die("unix connect");
	}
	size_t pages = bytes / PAGE;
	for (size_t first = 0; first < pages; first += RUN) {
		uint32_t count = pages - first < RUN ? (uint32_t)(pages - first) : RUN;
		uint8_t head[HEAD] = { 0x02 };
		uint32_t len = 16 + count * PAGE, f = (uint32_t)first;
		memcpy(head + 4, &len, 4);
		memcpy(head + 12, &f, 4);
		memcpy(head + 16, &count, 4);
		struct iovec iov[2] = { { head, HEAD }, { ram + first * PAGE, (size_t)count * PAGE } };
		size_t left = HEAD + (size_t)count * PAGE;
		while (left > 0) {
			ssize_t w = writev(fd, iov, 2);
			if (w < 0)
				die("writev");
			left -= (size_t)w;
			for (int i = 0; i < 2 && w > 0; i++) {
				size_t n = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
				iov[i].iov_base = (uint8_t *)iov[i].iov_base + n;
				iov[i].iov_len -= n;
				w -= (ssize_t)n;
			}
		}
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "recv") == 0)
		return receive(argv[2], strtoull(argv[3], NULL, 0));
	if (argc >= 4 && strcmp(argv[1], "send") == 0)
		return send_pages(argv[2], strtoull(argv[3], NULL, 0));
	fprintf(stderr, "usage: stream-pair recv tcp|unix:PATH RAM | send ADDRESS BYTES\n");
	return 2;
}
