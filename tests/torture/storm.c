/*
 * storm: many PAM logins released at the same instant.
 *
 *   storm [-t TIMEOUT_MS] [-H] HARNESS CONFDIR SERVICE  < lines "USER ANSWER"
 *
 * Starts one `HARNESS CONFDIR SERVICE USER` (tests/pam-harness/harness.c) per
 * input line and waits until every one of them shows its prompt
 * (PROMPT_ECHO_OFF:/PROMPT_ECHO_ON:), i.e. sits inside pam_authenticate waiting
 * for the answer. Then it writes every ANSWER back to back and measures, per
 * login, the time from the release to its RESULT line.
 *
 * With -H ("hold") the first line's login is never answered: it stays at its
 * prompt until all the others finished (shows that a login waiting for its user
 * holds no lock).
 *
 * Output: one line per login
 *   LOGIN i=I user=U result=PAM_X ms=T
 * and a summary
 *   SUMMARY n=N success=S other=O max_ms=M p50_ms=P
 * Exit status 0; 2 on usage/system errors; 3 when a login timed out (default
 * 60 s) or never showed a prompt.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXN 1024

typedef struct {
    char user[256];
    char answer[4096];
    pid_t pid;
    int in, out;
    char buf[65536];
    size_t len;
    int prompted, eof;
    double done_ms;
    char result[64];
} login_t;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Reads what is available; returns 0 at EOF. */
static int pump(login_t *l)
{
    if (l->len >= sizeof l->buf - 1)
        l->len = 0; /* absurdly long output: keep only the tail */
    ssize_t n = read(l->out, l->buf + l->len, sizeof l->buf - 1 - l->len);
    if (n <= 0)
        return 0;
    l->len += (size_t)n;
    l->buf[l->len] = '\0';
    if (strstr(l->buf, "PROMPT_ECHO_OFF:") || strstr(l->buf, "PROMPT_ECHO_ON:"))
        l->prompted = 1;
    return 1;
}

int main(int argc, char **argv)
{
    int timeout_ms = 60000, hold = 0, opt;
    while ((opt = getopt(argc, argv, "t:H")) != -1) {
        if (opt == 't')
            timeout_ms = atoi(optarg);
        else if (opt == 'H')
            hold = 1;
        else
            return 2;
    }
    if (argc - optind != 3) {
        fprintf(stderr, "usage: storm [-t MS] [-H] HARNESS CONFDIR SERVICE < 'USER ANSWER' lines\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    static login_t L[MAXN];
    int n = 0;
    char line[8192];
    while (n < MAXN && fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        char *sp = strchr(line, ' ');
        if (!sp)
            continue;
        *sp = '\0';
        if (strlen(line) >= sizeof L[n].user || strlen(sp + 1) >= sizeof L[n].answer) {
            fprintf(stderr, "storm: input line too long\n");
            return 2;
        }
        memcpy(L[n].user, line, strlen(line) + 1);
        memcpy(L[n].answer, sp + 1, strlen(sp + 1) + 1);
        n++;
    }
    for (int i = 0; i < n; i++) {
        int pin[2], pout[2];
        if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC)) {
            perror("storm: pipe");
            return 2;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("storm: fork");
            return 2;
        }
        if (pid == 0) {
            dup2(pin[0], 0);
            dup2(pout[1], 1);
            execl(argv[optind], argv[optind], argv[optind + 1], argv[optind + 2], L[i].user,
                  (char *)NULL);
            _exit(127);
        }
        close(pin[0]);
        close(pout[1]);
        L[i].pid = pid;
        L[i].in = pin[1];
        L[i].out = pout[0];
    }
    /* Wait until every login shows its prompt. */
    double start = now_ms();
    int ready = 0;
    while (ready < n) {
        struct pollfd p[MAXN];
        int map[MAXN], k = 0;
        for (int i = 0; i < n; i++)
            if (!L[i].prompted && !L[i].eof) {
                p[k].fd = L[i].out;
                p[k].events = POLLIN;
                map[k++] = i;
            }
        if (k == 0)
            break;
        if (now_ms() - start > timeout_ms)
            break;
        poll(p, (nfds_t)k, 100);
        for (int j = 0; j < k; j++)
            if (p[j].revents) {
                login_t *l = &L[map[j]];
                if (!pump(l))
                    l->eof = 1;
                if (l->prompted || l->eof)
                    ready++;
            }
    }
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (!L[i].prompted) {
            fprintf(stderr, "storm: login %d (%s) showed no prompt:\n%s\n", i, L[i].user, L[i].buf);
            bad = 1;
        }
    /* Release. */
    double t0 = now_ms();
    for (int i = hold ? 1 : 0; i < n; i++) {
        char a[sizeof L[i].answer + 1];
        size_t len = strlen(L[i].answer);
        memcpy(a, L[i].answer, len);
        a[len++] = '\n';
        if (write(L[i].in, a, len) < 0) { /* the login may be gone */
        }
        close(L[i].in);
        L[i].in = -1;
    }
    int open_n = 0;
    for (int i = hold ? 1 : 0; i < n; i++)
        if (!L[i].eof)
            open_n++;
        else
            L[i].done_ms = 0;
    while (open_n > 0 && now_ms() - t0 < timeout_ms) {
        struct pollfd p[MAXN];
        int map[MAXN], k = 0;
        for (int i = hold ? 1 : 0; i < n; i++)
            if (!L[i].eof) {
                p[k].fd = L[i].out;
                p[k].events = POLLIN;
                map[k++] = i;
            }
        poll(p, (nfds_t)k, 100);
        for (int j = 0; j < k; j++)
            if (p[j].revents) {
                login_t *l = &L[map[j]];
                if (!pump(l)) {
                    l->eof = 1;
                    l->done_ms = now_ms() - t0;
                    open_n--;
                }
            }
    }
    if (open_n > 0) {
        fprintf(stderr, "storm: %d logins did not finish within %d ms\n", open_n, timeout_ms);
        bad = 1;
    }
    if (hold) {
        /* Now let the held login go (empty answer) and collect it. */
        if (write(L[0].in, "\n", 1) < 0) {
        }
        close(L[0].in);
        double th = now_ms();
        while (!L[0].eof && now_ms() - th < timeout_ms) {
            struct pollfd p = {L[0].out, POLLIN, 0};
            poll(&p, 1, 100);
            if (p.revents && !pump(&L[0]))
                L[0].eof = 1;
        }
        L[0].done_ms = -1;
    }
    int success = 0, other = 0;
    double lat[MAXN];
    int nl = 0;
    for (int i = 0; i < n; i++) {
        char *r = strstr(L[i].buf, "RESULT:");
        if (r) {
            sscanf(r + 7, "%63s", L[i].result);
        } else {
            snprintf(L[i].result, sizeof L[i].result, "NONE");
        }
        if (L[i].pid > 0) {
            kill(L[i].pid, SIGKILL);
            waitpid(L[i].pid, NULL, 0);
        }
        printf("LOGIN i=%d user=%s result=%s ms=%.2f\n", i, L[i].user, L[i].result, L[i].done_ms);
        if (hold && i == 0)
            continue;
        if (strcmp(L[i].result, "PAM_SUCCESS") == 0)
            success++;
        else
            other++;
        lat[nl++] = L[i].done_ms;
    }
    qsort(lat, (size_t)nl, sizeof *lat, cmpd);
    printf("SUMMARY n=%d success=%d other=%d max_ms=%.2f p50_ms=%.2f\n", nl, success, other,
           nl ? lat[nl - 1] : 0, nl ? lat[nl / 2] : 0);
    return bad ? 3 : 0;
}
