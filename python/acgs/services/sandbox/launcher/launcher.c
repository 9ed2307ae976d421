/* The warm pool's launcher: the command a pre-started bubblewrap sandbox runs while it waits.
 *
 * bwrap has built the namespaces and mounts, dropped every capability and loaded the seccomp
 * filter before exec'ing this program, exactly as it would before exec'ing an agent's command.
 * The launcher then waits on its control socket for the run it is given (one per sandbox, never
 * more), sets that run's rlimits (only ever lowering them), puts the run's stdin in place,
 * closes its own descriptors and execs the command with the environment bwrap set. What the
 * command sees is what it would see had bwrap exec'd it directly.
 *
 * Usage (inside the sandbox): acgs-launcher CONTROL_FD SELF_FD
 *   CONTROL_FD  a SOCK_SEQPACKET socket to the controller
 *   SELF_FD     the descriptor this program was exec'd through (closed before the command runs)
 *
 * Protocol. The launcher writes one byte ("R") when it is ready. The controller sends one
 * packet with the run's stdin as SCM_RIGHTS and this body (little-endian):
 *   u32 n_rlimits, n_rlimits x (u32 resource, u64 value), u32 argc, argc NUL-terminated strings
 * EOF instead (the controller discarded the sandbox) ends the launcher with status 125.
 * A failed exec prints what bwrap prints for one and exits 1, as bwrap does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_MESSAGE (1 << 20)
#define MAX_ARGS 4096
#define MAX_RLIMITS 16

static char message[MAX_MESSAGE];

static int fail(const char *what) {
    /* Only the controller's own malformed messages land here; the run gets status 126. */
    dprintf(2, "acgs-launcher: %s\n", what);
    return 126;
}

static int take_u32(size_t *at, size_t len, uint32_t *out) {
    if (len - *at < 4) return -1;
    memcpy(out, message + *at, 4);
    *at += 4;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) return fail("usage: acgs-launcher CONTROL_FD SELF_FD");
    int control = atoi(argv[1]);
    int self = atoi(argv[2]);
    if (write(control, "R", 1) != 1) return fail("cannot signal readiness");

    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = message, .iov_len = sizeof(message)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    ssize_t got;
    do {
        got = recvmsg(control, &msg, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    if (got == 0) return 125; /* discarded unused */
    if (got < 0) return fail("cannot read the run");
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) return fail("the run's message is too large");

    int stdin_fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int))) {
            memcpy(&stdin_fd, CMSG_DATA(c), sizeof(int));
        }
    }
    if (stdin_fd < 0) return fail("the run came without its stdin");

    size_t len = (size_t)got, at = 0;
    uint32_t n;
    if (take_u32(&at, len, &n) != 0 || n > MAX_RLIMITS) return fail("bad rlimits");
    for (uint32_t i = 0; i < n; i++) {
        uint32_t resource;
        uint64_t value;
        if (take_u32(&at, len, &resource) != 0 || len - at < 8) return fail("bad rlimit");
        memcpy(&value, message + at, 8);
        at += 8;
        struct rlimit rl = {.rlim_cur = (rlim_t)value, .rlim_max = (rlim_t)value};
        if (setrlimit((int)resource, &rl) != 0) return fail("setrlimit failed");
    }
    uint32_t nargs;
    if (take_u32(&at, len, &nargs) != 0 || nargs == 0 || nargs > MAX_ARGS) return fail("bad argv");
    static char *args[MAX_ARGS + 1];
    for (uint32_t i = 0; i < nargs; i++) {
        char *end = memchr(message + at, '\0', len - at);
        if (end == NULL) return fail("bad argv");
        args[i] = message + at;
        at = (size_t)(end - message) + 1;
    }
    args[nargs] = NULL;
    if (at != len) return fail("trailing bytes after argv");

    if (dup2(stdin_fd, 0) != 0) return fail("cannot set stdin");
    close(stdin_fd);
    close(control);
    close(self);
    execvp(args[0], args);
    /* As bwrap reports a command it cannot run. */
    dprintf(2, "bwrap: execvp %s: %s\n", args[0], strerror(errno));
    return 1;
}
