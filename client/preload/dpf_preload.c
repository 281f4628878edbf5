/*
 * dpf_preload.c - LD_PRELOAD shim for "dpf run".
 *
 * It tells the dpf agent about every TCP socket a program starts listening
 * on and every UDP socket it binds to a port of its choosing, and waits for
 * the agent's answer, so that the router's pinhole is already open when
 * listen() or bind() returns. A UDP bind() to port 0 is left out: that is
 * what clients do (libuv, Java, resolvers) before they send, and the agent
 * judges such sockets by polling, without making bind() wait.
 *
 * Build:
 *   gcc -O2 -fPIC -shared -Wall -Wextra -o libdpf-preload.so dpf_preload.c -ldl -pthread
 *
 * Protocol (one unix stream connection per request, to $DPF_AGENT_SOCK;
 * client/internal/agent/proto.go is the other side):
 *   BIND <tcp|udp> <port> <inode> <pid> <requested>\n
 *                           answered by  OK <ip>:<port>\n,
 *                                        ERR <message>\n or SKIP <reason>\n
 *                           requested is the port passed to bind(); for
 *                           listen(), which has none, the bound port
 *   CLOSE <inode>\n         no answer; a hint that a socket may be gone
 *                           (the agent asks the kernel, which is the truth)
 *
 * Rules the code keeps:
 *  - Without DPF_AGENT_SOCK in the environment the shim does nothing.
 *  - The intercepted call's return value and errno are never changed. If
 *    the agent cannot be reached or reports an error the program goes on
 *    unchanged, and ONE warning per process goes to stderr, if stderr is a
 *    terminal, a pipe or a unix socket (never a file or a network socket:
 *    a daemon may have reopened fd 2 as either).
 *  - Thread- and fork-safe: configuration is written once (pthread_once,
 *    normally from the constructor, before any thread exists), everything
 *    else is atomics; no locks that a fork could leave held, no connection
 *    kept across calls.
 *  - No malloc: the close() path only uses async-signal-safe system calls.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Defaults and bounds. */
#define DEFAULT_TIMEOUT_MS 6000  /* agent's map timeout (5 s) plus a margin */
#define MAX_TIMEOUT_MS 600000    /* ignore absurd DPF_MAP_TIMEOUT_MS values */
#define CONNECT_RETRY_NS 10000000 /* 10 ms between connects while the agent's backlog is full */
#define SLOTS 256                /* registered sockets remembered for close() */

typedef int (*listen_fn)(int, int);
typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*close_fn)(int);

static _Atomic(listen_fn) real_listen_p;
static _Atomic(bind_fn) real_bind_p;
static _Atomic(close_fn) real_close_p;

/* Configuration, written once by load_config under config_once. */
static pthread_once_t config_once = PTHREAD_ONCE_INIT;
static struct sockaddr_un agent_addr;
static int agent_on;
static int agent_path_too_long;
static int timeout_ms = DEFAULT_TIMEOUT_MS;

static atomic_int warned;

/*
 * Sockets announced to the agent, so that close() can send a CLOSE hint.
 * slot_fd is 0 when free, -1 while a thread owns the slot, fd+1 when used.
 * A fork that happens while a slot is owned leaves it owned in the child: a
 * lost slot, never a deadlock.
 */
static atomic_int slot_fd[SLOTS];
static _Atomic unsigned long long slot_ino[SLOTS];
static atomic_int slots_used;

/*
 * resolve looks up the next definition of name. POSIX allows converting
 * dlsym's result to a function pointer; the memcpy keeps -Wpedantic quiet.
 */
typedef void (*any_fn)(void);
static any_fn resolve(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	any_fn f;
	memcpy(&f, &p, sizeof f);
	return f;
}

static listen_fn get_listen(void)
{
	listen_fn f = atomic_load_explicit(&real_listen_p, memory_order_acquire);
	if (!f) {
		f = (listen_fn)resolve("listen");
		atomic_store_explicit(&real_listen_p, f, memory_order_release);
	}
	return f;
}

static bind_fn get_bind(void)
{
	bind_fn f = atomic_load_explicit(&real_bind_p, memory_order_acquire);
	if (!f) {
		f = (bind_fn)resolve("bind");
		atomic_store_explicit(&real_bind_p, f, memory_order_release);
	}
	return f;
}

static close_fn get_close(void)
{
	close_fn f = atomic_load_explicit(&real_close_p, memory_order_acquire);
	if (!f) {
		f = (close_fn)resolve("close");
		atomic_store_explicit(&real_close_p, f, memory_order_release);
	}
	return f;
}

static void load_config(void)
{
	const char *p = getenv("DPF_AGENT_SOCK");
	if (!p || !*p)
		return;
	if (strlen(p) >= sizeof(agent_addr.sun_path)) {
		agent_path_too_long = 1;
		agent_on = 1;
		return;
	}
	agent_addr.sun_family = AF_UNIX;
	memcpy(agent_addr.sun_path, p, strlen(p) + 1);
	const char *t = getenv("DPF_MAP_TIMEOUT_MS");
	if (t && *t) {
		char *end;
		long v = strtol(t, &end, 10);
		if (*end == '\0' && v > 0 && v <= MAX_TIMEOUT_MS)
			timeout_ms = (int)v;
	}
	agent_on = 1;
}

__attribute__((constructor)) static void dpf_preload_init(void)
{
	get_listen();
	get_bind();
	get_close();
	pthread_once(&config_once, load_config);
}

/* Small string helpers: no stdio, no malloc. */

static size_t append(char *buf, size_t len, size_t cap, const char *s)
{
	while (*s && len + 1 < cap)
		buf[len++] = *s++;
	buf[len] = '\0';
	return len;
}

static size_t append_uint(char *buf, size_t len, size_t cap, unsigned long long v)
{
	char tmp[24];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n && len + 1 < cap)
		buf[len++] = tmp[--n];
	buf[len] = '\0';
	return len;
}

static void write_all(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/*
 * stderr_is_log reports whether fd 2 looks like somewhere a message may go:
 * a terminal or other character device, a pipe, or a unix socket (such as
 * journald's stream). A daemon that closed stderr may have got a data file
 * or a network connection as fd 2, and writing there would corrupt it.
 */
static int stderr_is_log(void)
{
	struct stat st;
	if (fstat(STDERR_FILENO, &st) != 0)
		return 0;
	if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))
		return 1;
	if (!S_ISSOCK(st.st_mode))
		return 0;
	int domain;
	socklen_t dl = sizeof domain;
	return getsockopt(STDERR_FILENO, SOL_SOCKET, SO_DOMAIN, &domain, &dl) == 0 && domain == AF_UNIX;
}

/*
 * warn_once prints "dpf-preload: <a><b><c>" once per process, when stderr
 * is fit for it (stderr_is_log). It uses async-signal-safe calls only and
 * leaves errno as it found it.
 */
static void warn_once(const char *a, const char *b, const char *c)
{
	if (atomic_exchange(&warned, 1))
		return;
	int e = errno;
	if (!stderr_is_log()) {
		errno = e;
		return;
	}
	char msg[512];
	size_t n = append(msg, 0, sizeof msg, "dpf-preload: ");
	n = append(msg, n, sizeof msg, a);
	n = append(msg, n, sizeof msg, b);
	n = append(msg, n, sizeof msg, c);
	n = append(msg, n, sizeof msg, "; continuing without waiting for pinholes\n");
	write_all(STDERR_FILENO, msg, n);
	errno = e;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_fd polls fd for events until deadline_ms; returns 1 when ready. */
static int wait_fd(int fd, short events, long long deadline_ms)
{
	for (;;) {
		long long left = deadline_ms - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = {.fd = fd, .events = events};
		int r = poll(&p, 1, (int)left);
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return 0;
	}
}

/*
 * agent_connect opens a non-blocking connection to the agent. With
 * deadline_ms 0 it tries once (for CLOSE hints, which must never block).
 */
static int agent_connect(long long deadline_ms)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return -1;
	for (;;) {
		if (connect(s, (const struct sockaddr *)&agent_addr, sizeof agent_addr) == 0)
			return s;
		if (errno == EINTR)
			continue;
		/* A full listen backlog gives EAGAIN on unix sockets; retry. */
		if (errno == EAGAIN && deadline_ms && now_ms() < deadline_ms) {
			struct timespec ts = {0, CONNECT_RETRY_NS};
			nanosleep(&ts, NULL);
			continue;
		}
		int e = errno;
		get_close()(s);
		errno = e;
		return -1;
	}
}

/* send_all sends n bytes before deadline_ms (0: without waiting). */
static int send_all(int s, const char *buf, size_t n, long long deadline_ms)
{
	while (n > 0) {
		ssize_t w = send(s, buf, n, MSG_NOSIGNAL);
		if (w > 0) {
			buf += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN && deadline_ms && wait_fd(s, POLLOUT, deadline_ms))
			continue;
		if (w < 0 && errno == EAGAIN)
			errno = ETIMEDOUT;
		return -1;
	}
	return 0;
}

/*
 * agent_request sends req and reads one reply line into reply (without the
 * newline). It returns 0, or -1 with errno set.
 */
static int agent_request(const char *req, size_t reqlen, char *reply, size_t cap)
{
	long long deadline = now_ms() + timeout_ms;
	int s = agent_connect(deadline);
	if (s < 0)
		return -1;
	int ret = -1;
	size_t n = 0;
	if (send_all(s, req, reqlen, deadline) != 0)
		goto out;
	for (;;) {
		ssize_t r = recv(s, reply + n, cap - 1 - n, 0);
		if (r > 0) {
			n += (size_t)r;
			reply[n] = '\0';
			char *nl = memchr(reply, '\n', n);
			if (nl) {
				*nl = '\0';
				ret = 0;
				goto out;
			}
			if (n == cap - 1) {
				errno = EMSGSIZE;
				goto out;
			}
			continue;
		}
		if (r == 0) {
			errno = ECONNRESET;
			goto out;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			goto out;
		if (!wait_fd(s, POLLIN, deadline)) {
			errno = ETIMEDOUT;
			goto out;
		}
	}
out:;
	int e = errno;
	get_close()(s);
	errno = e;
	return ret;
}

static void remember(int fd, unsigned long long ino)
{
	int key = fd + 1;
	for (int i = 0; i < SLOTS; i++) { /* the same fd announced again */
		int k = key;
		if (atomic_load_explicit(&slot_fd[i], memory_order_relaxed) == key &&
		    atomic_compare_exchange_strong(&slot_fd[i], &k, -1)) {
			atomic_store(&slot_ino[i], ino);
			atomic_store(&slot_fd[i], key);
			return;
		}
	}
	for (int i = 0; i < SLOTS; i++) {
		int k = 0;
		if (atomic_load_explicit(&slot_fd[i], memory_order_relaxed) == 0 &&
		    atomic_compare_exchange_strong(&slot_fd[i], &k, -1)) {
			atomic_fetch_add(&slots_used, 1);
			atomic_store(&slot_ino[i], ino);
			atomic_store(&slot_fd[i], key);
			return;
		}
	}
	/* Table full: the agent's polling still notices the close. */
}

/* forget removes fd from the table; it returns its inode or 0. */
static unsigned long long forget(int fd)
{
	if (atomic_load_explicit(&slots_used, memory_order_relaxed) == 0)
		return 0;
	int key = fd + 1;
	for (int i = 0; i < SLOTS; i++) {
		int k = key;
		if (atomic_load_explicit(&slot_fd[i], memory_order_relaxed) == key &&
		    atomic_compare_exchange_strong(&slot_fd[i], &k, -1)) {
			unsigned long long ino = atomic_load(&slot_ino[i]);
			atomic_store(&slot_fd[i], 0);
			atomic_fetch_sub(&slots_used, 1);
			return ino;
		}
	}
	return 0;
}

/*
 * mappable reads the socket's address and returns its port if the agent
 * should hear about it: IPv4 or IPv6 (wildcard or v4-mapped) of the given
 * type and protocol, not loopback. Specific IPv6 addresses are left out:
 * DPF maps IPv4 only.
 */
static int mappable(int fd, int type, int proto)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return 0;
	int port;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
		if ((ntohl(sin->sin_addr.s_addr) >> 24) == 127)
			return 0;
		port = ntohs(sin->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
		const struct in6_addr *a = &sin6->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			if (a->s6_addr[12] == 127)
				return 0;
		} else if (!IN6_IS_ADDR_UNSPECIFIED(a)) {
			return 0;
		}
		port = ntohs(sin6->sin6_port);
	} else {
		return 0;
	}
	int v;
	socklen_t vl = sizeof v;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vl) != 0 || v != type)
		return 0;
	vl = sizeof v;
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &vl) != 0 || v != proto)
		return 0;
	return port;
}

/*
 * announce tells the agent about fd and waits for the pinhole. requested is
 * the port the program passed to bind(), or -1 for listen().
 */
static void announce(int fd, int type, int proto, int requested)
{
	pthread_once(&config_once, load_config);
	if (!agent_on)
		return;
	int port = mappable(fd, type, proto);
	if (port <= 0)
		return;
	/* A UDP socket on a port the kernel chose: a client, most likely. */
	if (type == SOCK_DGRAM && requested == 0)
		return;
	if (requested < 0)
		requested = port;
	struct stat st;
	if (fstat(fd, &st) != 0)
		return;
	if (agent_path_too_long) {
		warn_once("DPF_AGENT_SOCK is too long for a unix socket path", "", "");
		return;
	}
	remember(fd, (unsigned long long)st.st_ino);

	char req[128];
	size_t n = append(req, 0, sizeof req, type == SOCK_STREAM ? "BIND tcp " : "BIND udp ");
	n = append_uint(req, n, sizeof req, (unsigned long long)port);
	n = append(req, n, sizeof req, " ");
	n = append_uint(req, n, sizeof req, (unsigned long long)st.st_ino);
	n = append(req, n, sizeof req, " ");
	n = append_uint(req, n, sizeof req, (unsigned long long)getpid());
	n = append(req, n, sizeof req, " ");
	n = append_uint(req, n, sizeof req, (unsigned long long)requested);
	n = append(req, n, sizeof req, "\n");

	char reply[256];
	if (agent_request(req, n, reply, sizeof reply) != 0) {
		warn_once("cannot reach the dpf agent at ", agent_addr.sun_path, errno == ETIMEDOUT ? " (timed out)" : "");
		return;
	}
	if (strncmp(reply, "OK ", 3) == 0 || strncmp(reply, "SKIP ", 5) == 0 || strcmp(reply, "SKIP") == 0)
		return;
	if (strncmp(reply, "ERR ", 4) == 0) {
		warn_once("the dpf agent could not open a pinhole: ", reply + 4, "");
		return;
	}
	warn_once("unexpected answer from the dpf agent: ", reply, "");
}

/* close_hint sends "CLOSE <inode>" without ever waiting. */
static void close_hint(unsigned long long ino)
{
	if (!agent_on || agent_path_too_long)
		return;
	int s = agent_connect(0);
	if (s < 0)
		return;
	char req[48];
	size_t n = append(req, 0, sizeof req, "CLOSE ");
	n = append_uint(req, n, sizeof req, ino);
	n = append(req, n, sizeof req, "\n");
	send_all(s, req, n, 0);
	get_close()(s);
}

int listen(int fd, int backlog)
{
	listen_fn real = get_listen();
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	int ret = real(fd, backlog);
	if (ret == 0) {
		int e = errno;
		announce(fd, SOCK_STREAM, IPPROTO_TCP, -1);
		errno = e;
	}
	return ret;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	bind_fn real = get_bind();
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	int ret = real(fd, addr, len);
	/* Only UDP is announced at bind(); TCP waits for listen(). */
	if (ret == 0 && addr && len >= sizeof(sa_family_t)) {
		/* The requested port; copied, as addr need not be aligned. */
		int requested = -1;
		if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
			struct sockaddr_in sin;
			memcpy(&sin, addr, sizeof sin);
			requested = ntohs(sin.sin_port);
		} else if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
			struct sockaddr_in6 sin6;
			memcpy(&sin6, addr, sizeof sin6);
			requested = ntohs(sin6.sin6_port);
		}
		if (requested >= 0) {
			int e = errno;
			announce(fd, SOCK_DGRAM, IPPROTO_UDP, requested);
			errno = e;
		}
	}
	return ret;
}

int close(int fd)
{
	close_fn real = get_close();
	if (!real) {
		errno = ENOSYS;
		return -1;
	}
	unsigned long long ino = fd >= 0 ? forget(fd) : 0;
	int ret = real(fd);
	if (ino) {
		int e = errno;
		close_hint(ino);
		errno = e;
	}
	return ret;
}
