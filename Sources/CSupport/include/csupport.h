#ifndef CSUPPORT_H
#define CSUPPORT_H

// The few libc pieces Swift cannot import (function-like macros, _GNU_SOURCE-only calls, variadic
// calls), wrapped once. Used by the runner and by the cluster implementation alike.

#include <stddef.h>
#include <sys/epoll.h>
#include <sys/types.h>

/// Flags of csupport_spawn.
enum {
    CSUPPORT_SPAWN_NEW_GROUP = 1,  ///< the child leads a new process group
};

/// Spawns `path` (searched in PATH when it has no slash) with `cwd` as working directory (NULL: inherit).
/// stdin/stdout/stderr become `stdio[0..2]`; `extra_src[i]` becomes descriptor `extra_dst[i]`; every other
/// descriptor is closed; the signal mask is emptied and common signals reset to default.
/// Returns 0 and sets `*pid`, or returns an errno value.
int csupport_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
                   const int stdio[3], const int *extra_src, const int *extra_dst, int n_extra, int flags);

/// Spawns like csupport_spawn, with the child's descriptors given as one list: `src[i]` becomes descriptor
/// `dst[i]`, and a `src[i]` of -1 opens /dev/null (read-write) at `dst[i]`. Every other descriptor is
/// closed in the child, including numbers below the highest `dst` that are not in the list (Node's
/// `'ignore'` at index 3 and up). Returns 0 and sets `*pid`, or returns an errno value.
int csupport_spawn_fds(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
                       const int *src, const int *dst, int n, int flags);

/// socketpair(AF_UNIX, SOCK_STREAM) with close-on-exec on both ends (what Node's stdio `'pipe'` is).
int csupport_stream_pair_cloexec(int fds[2]);

/// The descriptor's kind as a sender of a handle sees it: 1 a listening socket (SO_ACCEPTCONN), 2 a
/// connected stream socket, 3 anything else that is open; -1 with errno when it is not open.
int csupport_handle_kind(int fd);

int csupport_wifexited(int status);
int csupport_wexitstatus(int status);
int csupport_wifsignaled(int status);
int csupport_wtermsig(int status);

/// accept4 with SOCK_CLOEXEC, and SOCK_NONBLOCK when `nonblock` is set.
int csupport_accept(int fd, int nonblock);
/// accept4 with SOCK_CLOEXEC (blocking).
int csupport_accept_cloexec(int fd);

/// pipe2 with O_CLOEXEC on both ends.
int csupport_pipe_cloexec(int fds[2]);

/// An eventfd, close-on-exec and non-blocking.
int csupport_eventfd(void);

/// pidfd_open(2): a descriptor that becomes readable when the process exits.
int csupport_pidfd_open(pid_t pid);

/// prctl(PR_SET_PDEATHSIG, sig): the kernel sends `sig` when the parent dies.
int csupport_set_pdeathsig(int sig);

/// Sets process `pid`'s soft limit of open descriptors (prlimit RLIMIT_NOFILE); stores the previous soft
/// limit in `old_soft`. 0, or -1 with errno.
int csupport_set_descriptor_limit(pid_t pid, unsigned long soft, unsigned long *old_soft);

/// sendmsg of one datagram/packet with `nfds` descriptors attached (SCM_RIGHTS), MSG_NOSIGNAL.
/// Returns the bytes sent or -1 with errno.
ssize_t csupport_send_with_fds(int sock, const void *buf, size_t len, const int *fds, int nfds);

/// recvmsg of one packet and up to `max_fds` descriptors (close-on-exec). `*nfds` receives their count;
/// `*truncated` is set when data or descriptors did not fit (extra descriptors are closed).
/// Returns the bytes received, 0 at end of stream, or -1 with errno.
ssize_t csupport_recv_with_fds(int sock, void *buf, size_t len, int *fds, int max_fds, int *nfds, int *truncated);

/// memmem(3), a _GNU_SOURCE call: the first occurrence of `needle` in `haystack`, or NULL.
const void *csupport_memmem(const void *haystack, size_t haystack_len, const void *needle, size_t needle_len);

#endif
