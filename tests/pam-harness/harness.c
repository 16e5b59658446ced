/*
 * harness: a tiny, independent PAM application for the PAM-level tests.
 *
 *   harness CONFDIR SERVICE USER
 *
 * Loads the stack CONFDIR/SERVICE through the real libpam (pam_start_confdir),
 * runs pam_authenticate() and, on success, pam_setcred(PAM_ESTABLISH_CRED).
 *
 * Conversation: every message is printed on stdout as one line per text line,
 *   PROMPT_ECHO_OFF:<text>   PROMPT_ECHO_ON:<text>   INFO:<text>   ERROR:<text>
 * Prompts are answered with the next line read from stdin (only the trailing
 * "\n" is removed; everything else is passed byte for byte). On EOF the
 * conversation returns PAM_CONV_ERR.
 *
 * At the end it prints
 *   SETCRED:<NAME> <code>      (only when pam_authenticate succeeded)
 *   RESULT:<NAME> <code>       (the result of pam_authenticate)
 * and exits 0. Usage errors exit 2; a failed pam_start prints START:<NAME> <code>
 * followed by RESULT:<NAME> <code> and exits 0.
 *
 * Optional environment:
 *   PAM_RHOST, PAM_TTY, PAM_RUSER  set the corresponding PAM items
 *   HARNESS_SETCRED=0              skip pam_setcred()
 *   HARNESS_TIME=1                 print ELAPSED_MS:<ms> (pam_authenticate's wall time,
 *                                  monotonic clock) before RESULT
 *   HARNESS_REAL_DELAY=1           let libpam sleep for pam_fail_delay() as a real
 *                                  application would; by default the harness installs
 *                                  a PAM_FAIL_DELAY callback that only prints
 *                                  FAIL_DELAY:<usec> so tests stay fast
 *
 * This program must not depend on the pam_totp crate: it is the independent
 * client that the tests use to drive the module through libpam.
 */
#define _GNU_SOURCE
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *pam_name(int code)
{
    switch (code) {
#define N(x) case x: return #x;
        N(PAM_SUCCESS)
        N(PAM_OPEN_ERR)
        N(PAM_SYMBOL_ERR)
        N(PAM_SERVICE_ERR)
        N(PAM_SYSTEM_ERR)
        N(PAM_BUF_ERR)
        N(PAM_PERM_DENIED)
        N(PAM_AUTH_ERR)
        N(PAM_CRED_INSUFFICIENT)
        N(PAM_AUTHINFO_UNAVAIL)
        N(PAM_USER_UNKNOWN)
        N(PAM_MAXTRIES)
        N(PAM_NEW_AUTHTOK_REQD)
        N(PAM_ACCT_EXPIRED)
        N(PAM_SESSION_ERR)
        N(PAM_CRED_UNAVAIL)
        N(PAM_CRED_EXPIRED)
        N(PAM_CRED_ERR)
        N(PAM_NO_MODULE_DATA)
        N(PAM_CONV_ERR)
        N(PAM_AUTHTOK_ERR)
        N(PAM_AUTHTOK_RECOVERY_ERR)
        N(PAM_AUTHTOK_LOCK_BUSY)
        N(PAM_AUTHTOK_DISABLE_AGING)
        N(PAM_TRY_AGAIN)
        N(PAM_IGNORE)
        N(PAM_ABORT)
        N(PAM_AUTHTOK_EXPIRED)
        N(PAM_MODULE_UNKNOWN)
        N(PAM_BAD_ITEM)
        N(PAM_CONV_AGAIN)
        N(PAM_INCOMPLETE)
#undef N
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "PAM_%d", code);
        return buf;
    }
    }
}

/* Print TEXT with PREFIX in front of every line; always ends with "\n". */
static void print_lines(const char *prefix, const char *text)
{
    if (text == NULL)
        text = "";
    const char *p = text;
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        fputs(prefix, stdout);
        fwrite(p, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        if (nl == NULL || nl[1] == '\0')
            break;
        p = nl + 1;
    }
}

static int conv(int num_msg, const struct pam_message **msg,
                struct pam_response **resp, void *appdata)
{
    (void)appdata;
    if (num_msg <= 0 || num_msg > PAM_MAX_NUM_MSG)
        return PAM_CONV_ERR;
    struct pam_response *r = calloc((size_t)num_msg, sizeof *r);
    if (r == NULL)
        return PAM_BUF_ERR;

    for (int i = 0; i < num_msg; i++) {
        const struct pam_message *m = msg[i];
        int prompt = 0;
        switch (m->msg_style) {
        case PAM_PROMPT_ECHO_OFF:
            print_lines("PROMPT_ECHO_OFF:", m->msg);
            prompt = 1;
            break;
        case PAM_PROMPT_ECHO_ON:
            print_lines("PROMPT_ECHO_ON:", m->msg);
            prompt = 1;
            break;
        case PAM_TEXT_INFO:
            print_lines("INFO:", m->msg);
            break;
        case PAM_ERROR_MSG:
            print_lines("ERROR:", m->msg);
            break;
        default: {
            char prefix[48];
            snprintf(prefix, sizeof prefix, "STYLE_%d:", m->msg_style);
            print_lines(prefix, m->msg);
            break;
        }
        }
        if (!prompt)
            continue;

        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) {
            free(line);
            printf("CONV:EOF\n");
            fflush(stdout);
            for (int j = 0; j < i; j++) {
                if (r[j].resp) {
                    explicit_bzero(r[j].resp, strlen(r[j].resp));
                    free(r[j].resp);
                }
            }
            free(r);
            return PAM_CONV_ERR;
        }
        if (n > 0 && line[n - 1] == '\n')
            line[n - 1] = '\0';
        r[i].resp = line; /* freed by the module / libpam */
        r[i].resp_retcode = 0;
    }
    *resp = r;
    return PAM_SUCCESS;
}

static void fake_delay(int retval, unsigned usec_delay, void *appdata)
{
    (void)appdata;
    if (usec_delay == 0)
        return;
    printf("FAIL_DELAY:%u %s\n", usec_delay, pam_name(retval));
    fflush(stdout);
}

static void set_item_from_env(pam_handle_t *h, int item, const char *var)
{
    const char *v = getenv(var);
    if (v != NULL) {
        int rc = pam_set_item(h, item, v);
        if (rc != PAM_SUCCESS) {
            printf("SET_ITEM:%s %s %d\n", var, pam_name(rc), rc);
            fflush(stdout);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s CONFDIR SERVICE USER\n", argv[0]);
        return 2;
    }
    const char *confdir = argv[1], *service = argv[2], *user = argv[3];
    struct pam_conv pc = { conv, NULL };
    pam_handle_t *h = NULL;

    int rc = pam_start_confdir(service, user, &pc, confdir, &h);
    if (rc != PAM_SUCCESS) {
        printf("START:%s %d\n", pam_name(rc), rc);
        printf("RESULT:%s %d\n", pam_name(rc), rc);
        fflush(stdout);
        return 0;
    }

    set_item_from_env(h, PAM_RHOST, "PAM_RHOST");
    set_item_from_env(h, PAM_TTY, "PAM_TTY");
    set_item_from_env(h, PAM_RUSER, "PAM_RUSER");

    const char *real_delay = getenv("HARNESS_REAL_DELAY");
    if (real_delay == NULL || strcmp(real_delay, "1") != 0) {
        void (*fn)(int, unsigned, void *) = fake_delay;
        pam_set_item(h, PAM_FAIL_DELAY, (const void *)fn);
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = pam_authenticate(h, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const char *timed = getenv("HARNESS_TIME");
    if (timed != NULL && strcmp(timed, "1") == 0) {
        long long ms = (long long)(t1.tv_sec - t0.tv_sec) * 1000 +
                       (t1.tv_nsec - t0.tv_nsec) / 1000000;
        printf("ELAPSED_MS:%lld\n", ms);
    }
    if (rc == PAM_SUCCESS) {
        const char *sc = getenv("HARNESS_SETCRED");
        if (sc == NULL || strcmp(sc, "0") != 0) {
            int src = pam_setcred(h, PAM_ESTABLISH_CRED);
            printf("SETCRED:%s %d\n", pam_name(src), src);
        }
    }
    printf("RESULT:%s %d\n", pam_name(rc), rc);
    fflush(stdout);
    pam_end(h, rc);
    return 0;
}
