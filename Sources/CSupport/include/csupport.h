#ifndef CSUPPORT_H
#define CSUPPORT_H

#include <sys/types.h>

/// Spawns `path` in a new process group (pgid = its pid) with `cwd` as working directory.
/// stdin/stdout/stderr become `stdio[0..2]`; `extra_src[i]` becomes descriptor `extra_dst[i]`; every other
/// descriptor is closed; the signal mask is emptied and common signals reset to default.
/// Returns 0 and sets `*pid`, or returns an errno value.
int csupport_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
                   const int stdio[3], const int *extra_src, const int *extra_dst, int n_extra);

int csupport_wifexited(int status);
int csupport_wexitstatus(int status);
int csupport_wifsignaled(int status);
int csupport_wtermsig(int status);

/// accept4 with SOCK_CLOEXEC (not visible to Swift without _GNU_SOURCE).
int csupport_accept_cloexec(int fd);

/// pipe2 with O_CLOEXEC on both ends.
int csupport_pipe_cloexec(int fds[2]);

#endif
