/*
 * crashkill: runs a command and SIGKILLs it after a random delay.
 *
 *   crashkill [-m MIN_US] [-d MAX_US] [-s SEED] [-i IN] [-o OUT] -- CMD [ARG...]
 *
 * The child gets IN as stdin (default /dev/null) and OUT as stdout and stderr
 * (default /dev/null). After a delay drawn uniformly from [MIN_US, MAX_US]
 * microseconds the child is killed with SIGKILL, unless it has already exited.
 * With -d 0 it is never killed (calibration: how long does a run take?).
 *
 * Prints one line:
 *   KILLED delay_us=D             the child was still running and was killed
 *   EXITED status=S elapsed_us=E  the child had exited by itself (S: exit code,
 *                                 or 128+signal)
 * Exit status 0, or 2 on usage/system errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

int main(int argc, char **argv)
{
    long long min_us = 0, max_us = 0;
    unsigned seed = (unsigned)(now_us() ^ getpid());
    const char *in = "/dev/null", *out = "/dev/null";
    int opt;
    while ((opt = getopt(argc, argv, "+m:d:s:i:o:")) != -1) {
        switch (opt) {
        case 'm': min_us = atoll(optarg); break;
        case 'd': max_us = atoll(optarg); break;
        case 's': seed = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        default:
            fprintf(stderr, "usage: crashkill [-m MIN_US] [-d MAX_US] [-s SEED] [-i IN] [-o OUT] -- CMD...\n");
            return 2;
        }
    }
    if (optind >= argc || min_us < 0 || max_us < 0 || (max_us && min_us > max_us)) {
        fprintf(stderr, "crashkill: no command or bad delays\n");
        return 2;
    }
    srandom(seed);
    long long delay = max_us ? min_us + (long long)(random() % (max_us - min_us + 1)) : 0;

    int fin = open(in, O_RDONLY | O_CLOEXEC);
    int fout = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fin < 0 || fout < 0) {
        fprintf(stderr, "crashkill: %s: %s\n", fin < 0 ? in : out, strerror(errno));
        return 2;
    }
    long long t0 = now_us();
    pid_t pid = fork();
    if (pid < 0) {
        perror("crashkill: fork");
        return 2;
    }
    if (pid == 0) {
        dup2(fin, 0);
        dup2(fout, 1);
        dup2(fout, 2);
        execvp(argv[optind], argv + optind);
        _exit(127);
    }
    close(fin);
    close(fout);

    int st;
    if (delay > 0) {
        long long deadline = t0 + delay;
        for (;;) {
            pid_t r = waitpid(pid, &st, WNOHANG);
            if (r == pid) {
                printf("EXITED status=%d elapsed_us=%lld\n", status_code(st), now_us() - t0);
                return 0;
            }
            long long left = deadline - now_us();
            if (left <= 0)
                break;
            /* Short naps near the deadline keep the kill point precise. */
            struct timespec ts = {0, (left > 200 ? 100 : left) * 1000};
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
            printf("KILLED delay_us=%lld\n", delay);
            return 0;
        }
        printf("EXITED status=%d elapsed_us=%lld\n", status_code(st), now_us() - t0);
        return 0;
    }
    waitpid(pid, &st, 0);
    printf("EXITED status=%d elapsed_us=%lld\n", status_code(st), now_us() - t0);
    return 0;
}
