#define _GNU_SOURCE
#include "csupport.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// The end both spawn functions share, once `fa` holds their descriptor moves: close everything above
// `max_dst`, change to `cwd`, give the child a clean signal state (the signal mask and SIG_IGN dispositions
// survive exec, so they are reset explicitly), optionally a process group of its own, then spawn. `fa` is
// destroyed on every path. Returns 0, or the errno value of the first call that failed.
static int spawn_with_actions(pid_t *pid, const char *path, posix_spawn_file_actions_t *fa, char *const argv[],
                              char *const envp[], int max_dst, const char *cwd, int flags) {
    posix_spawnattr_t attr;
    sigset_t empty, defaults;
    static const int sigs[] = {SIGPIPE, SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    short spawn_flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    int rc = posix_spawn_file_actions_addclosefrom_np(fa, max_dst + 1);
    if (rc == 0 && cwd) rc = posix_spawn_file_actions_addchdir_np(fa, cwd);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(fa);
        return rc;
    }
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(fa);
        return rc;
    }
    sigemptyset(&empty);
    sigemptyset(&defaults);
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&defaults, sigs[i]);
    if (flags & CSUPPORT_SPAWN_NEW_GROUP) spawn_flags |= POSIX_SPAWN_SETPGROUP;
    rc = posix_spawnattr_setsigmask(&attr, &empty);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &defaults);
    if (rc == 0 && (flags & CSUPPORT_SPAWN_NEW_GROUP)) rc = posix_spawnattr_setpgroup(&attr, 0);
    if (rc == 0) rc = posix_spawnattr_setflags(&attr, spawn_flags);
    if (rc == 0) rc = posix_spawnp(pid, path, fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(fa);
    posix_spawnattr_destroy(&attr);
    return rc;
}

int csupport_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
                   const int stdio[3], const int *extra_src, const int *extra_dst, int n_extra, int flags) {
    posix_spawn_file_actions_t fa;
    int moved[3 + 64];
    int n_moved = 0;
    int max_dst = 2;
    int rc;

    if (n_extra > 64) return EINVAL;
    // Move every source out of the way first, so a dup2 onto a target number never clobbers a source
    // that has not been duplicated yet (and so dup2 always clears close-on-exec: a dup2 of a descriptor
    // onto itself would not).
    for (int i = 0; i < 3; i++) {
        moved[n_moved] = fcntl(stdio[i], F_DUPFD_CLOEXEC, 100);
        if (moved[n_moved] < 0) { rc = errno; goto undo; }
        n_moved++;
    }
    for (int i = 0; i < n_extra; i++) {
        moved[n_moved] = fcntl(extra_src[i], F_DUPFD_CLOEXEC, 100);
        if (moved[n_moved] < 0) { rc = errno; goto undo; }
        n_moved++;
        if (extra_dst[i] > max_dst) max_dst = extra_dst[i];
    }

    rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) goto undo;
    for (int i = 0; i < 3 && rc == 0; i++) rc = posix_spawn_file_actions_adddup2(&fa, moved[i], i);
    for (int i = 0; i < n_extra && rc == 0; i++) rc = posix_spawn_file_actions_adddup2(&fa, moved[3 + i], extra_dst[i]);
    if (rc == 0) rc = spawn_with_actions(pid, path, &fa, argv, envp, max_dst, cwd, flags);  // destroys fa
    else posix_spawn_file_actions_destroy(&fa);
undo:
    for (int i = 0; i < n_moved; i++) close(moved[i]);
    return rc;
}

int csupport_spawn_fds(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
                       const int *src, const int *dst, int n, int flags) {
    posix_spawn_file_actions_t fa;
    int moved[64];
    int n_moved = 0;
    int max_dst = -1;
    int rc;

    if (n > 64) return EINVAL;
    for (int i = 0; i < n; i++) {
        if (dst[i] < 0 || dst[i] >= 100) return EINVAL;  // sources move to 100 and up
        if (dst[i] > max_dst) max_dst = dst[i];
    }
    // As in csupport_spawn: sources move out of the way first, so no dup2 clobbers a source not yet
    // duplicated, and every dup2 clears close-on-exec.
    for (int i = 0; i < n; i++) {
        moved[i] = -1;
        if (src[i] < 0) continue;
        moved[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 100);
        if (moved[i] < 0) { rc = errno; n_moved = i; goto undo; }
    }
    n_moved = n;

    rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) goto undo;
    for (int i = 0; i < n && rc == 0; i++) {
        if (moved[i] >= 0) rc = posix_spawn_file_actions_adddup2(&fa, moved[i], dst[i]);
        else rc = posix_spawn_file_actions_addopen(&fa, dst[i], "/dev/null", O_RDWR, 0);
    }
    // Numbers below the highest target that are not targets: whatever the parent has there (a descriptor
    // without close-on-exec) must not leak in. Opening /dev/null first makes the close valid either way.
    for (int fd = 0; fd < max_dst && rc == 0; fd++) {
        int listed = 0;
        for (int i = 0; i < n; i++) if (dst[i] == fd) listed = 1;
        if (listed) continue;
        rc = posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", O_RDONLY, 0);
        if (rc == 0) rc = posix_spawn_file_actions_addclose(&fa, fd);
    }
    if (rc == 0) rc = spawn_with_actions(pid, path, &fa, argv, envp, max_dst, cwd, flags);  // destroys fa
    else posix_spawn_file_actions_destroy(&fa);
undo:
    for (int i = 0; i < n_moved; i++) if (moved[i] >= 0) close(moved[i]);
    return rc;
}

int csupport_stream_pair_cloexec(int fds[2]) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }

int csupport_handle_kind(int fd) {
    if (fcntl(fd, F_GETFD) < 0) return -1;
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) == 0 && value) return 1;
    len = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &len) == 0 && value == SOCK_STREAM) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0) return 2;
    }
    return 3;
}

int csupport_wifexited(int status) { return WIFEXITED(status); }
int csupport_wexitstatus(int status) { return WEXITSTATUS(status); }
int csupport_wifsignaled(int status) { return WIFSIGNALED(status); }
int csupport_wtermsig(int status) { return WTERMSIG(status); }

int csupport_accept(int fd, int nonblock) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0));
}
int csupport_accept_cloexec(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

int csupport_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int csupport_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int csupport_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int csupport_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

ssize_t csupport_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } control;
    if (nfds > 8) { errno = EINVAL; return -1; }
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        mh.msg_control = control.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do { n = sendmsg(sock, &mh, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t csupport_recv_with_fds(int sock, void *buf, size_t len, int *fds, int max_fds, int *nfds, int *truncated) {
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr mh;
    union {
        char buf[CMSG_SPACE(sizeof(int) * 16)];
        struct cmsghdr align;
    } control;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.buf;
    mh.msg_controllen = sizeof control.buf;
    *nfds = 0;
    *truncated = 0;
    ssize_t n;
    do { n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) *truncated = 1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *data = (int *)CMSG_DATA(c);
        for (int i = 0; i < count; i++) {
            if (*nfds < max_fds) fds[(*nfds)++] = data[i];
            else { close(data[i]); *truncated = 1; }
        }
    }
    return n;
}

int csupport_set_descriptor_limit(pid_t pid, unsigned long soft, unsigned long *old_soft) {
    struct rlimit old;
    if (prlimit(pid, RLIMIT_NOFILE, NULL, &old) != 0) return -1;
    struct rlimit new_limit = { .rlim_cur = soft, .rlim_max = old.rlim_max };
    if (prlimit(pid, RLIMIT_NOFILE, &new_limit, NULL) != 0) return -1;
    *old_soft = old.rlim_cur;
    return 0;
}

const void *csupport_memmem(const void *haystack, size_t haystack_len, const void *needle, size_t needle_len) {
    return memmem(haystack, haystack_len, needle, needle_len);
}
