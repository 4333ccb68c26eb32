#define _GNU_SOURCE
#include "csupport.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int csupport_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[], const char *cwd,
                   const int stdio[3], const int *extra_src, const int *extra_dst, int n_extra) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int moved[3 + 64];
    int n_moved = 0;
    int max_dst = 2;
    int rc;

    if (n_extra > 64) return EINVAL;
    // Move every source out of the way first, so a dup2 onto a target number never clobbers a source
    // that has not been duplicated yet.
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

    posix_spawn_file_actions_init(&fa);
    for (int i = 0; i < 3; i++) posix_spawn_file_actions_adddup2(&fa, moved[i], i);
    for (int i = 0; i < n_extra; i++) posix_spawn_file_actions_adddup2(&fa, moved[3 + i], extra_dst[i]);
    posix_spawn_file_actions_addclosefrom_np(&fa, max_dst + 1);
    if (cwd) posix_spawn_file_actions_addchdir_np(&fa, cwd);

    posix_spawnattr_init(&attr);
    sigset_t empty, defaults;
    sigemptyset(&empty);
    sigemptyset(&defaults);
    int sigs[] = {SIGPIPE, SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&defaults, sigs[i]);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);

    rc = posix_spawnp(pid, path, &fa, &attr, argv, envp);

    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
undo:
    for (int i = 0; i < n_moved; i++) close(moved[i]);
    return rc;
}

int csupport_wifexited(int status) { return WIFEXITED(status); }
int csupport_wexitstatus(int status) { return WEXITSTATUS(status); }
int csupport_wifsignaled(int status) { return WIFSIGNALED(status); }
int csupport_wtermsig(int status) { return WTERMSIG(status); }

int csupport_accept_cloexec(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC); }

int csupport_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
