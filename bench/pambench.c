/*
 * pambench: drives PAM auth modules through the real libpam, one fresh handle
 * per login, and measures each login.
 *
 *   pambench [options] CONFDIR SERVICE USERS
 *
 * USERS is a text file, one enrolled user per line: "NAME HEXSECRET" (the TOTP
 * key, SHA1, 6 digits, 30 s). The driver computes the codes itself (a small
 * HMAC-SHA1 below, RFC 6238), so the module under test never helps.
 *
 * Every login: pam_start_confdir(SERVICE, user, conv, CONFDIR) ->
 * pam_set_item(PAM_RHOST) -> pam_authenticate() -> pam_end(). The time of that
 * whole sequence is one sample (the code is computed before the clock starts).
 * The application's fail delay is replaced by a no-op callback (a real server
 * sleeps ~2 s after a failure; that is not the module's cost).
 *
 * Options:
 *   -m valid|wrong   scenario (default valid)
 *       valid: users are taken in turn; each login presents, for its user, the
 *              oldest step in [now-1, now+1] that this run has not used for that
 *              user yet (now-1 only in the first 27 s of a step), so every code is presented for the first time (never a
 *              replay). When every user has used now+1 the driver waits (not
 *              timed) for the next step.
 *       wrong: users in turn, a 6-digit code that matches no step within
 *              +-1500 steps of now (so not even google-authenticator's clock-skew
 *              search finds it).
 *   -n N             logins (default 1000)
 *   -t SECONDS       stop after this much timed login work (default: no limit)
 *   -s FIRST         index of the first user (default 0)
 *   -u COUNT         use only the first COUNT users of the file (default all)
 *   -N NAME          label printed in the result line (default SERVICE)
 *   -C               callgrind: collect only inside the timed sections
 *                    (run under valgrind --tool=callgrind --collect-atstart=no)
 *   -r RHOST         PAM_RHOST (default 192.0.2.10)
 *   -F               wrong scenario: skip the +-1500-step search (for profiling the
 *                    driver out; the code then only avoids the +-1 window)
 *   -S FILE          keep the cursor (next user) and, per user, the highest step
 *                    presented in FILE across runs (created if missing), so that
 *                    several runs against one population never replay a code
 *   -o FILE          append every login's latency (ms, one per line) to FILE
 *   -R RATE          paced (open loop): login k starts at k / RATE seconds after the
 *                    first, waiting when ahead; a login that starts late because an
 *                    earlier one was slow counts its latency from its scheduled start
 *                    (so a slow stretch is not hidden by starting later)
 *   -A EPOCH         with -R: the first login is scheduled at this wall-clock time (unix
 *                    seconds, fractions allowed) plus a random part of one interval,
 *                    not at the driver's own start — several drivers started together
 *                    then begin once all are set up, each at its own phase
 *
 * Output: one line
 *   RESULT name=NAME scenario=S n=N ok=K unexpected=U secs=T rate=R p50_ms=A p99_ms=B
 *          mean_ms=M waited_s=W span_s=S
 * (span_s: from the first login's start to the last one's end, wall clock)
 * ok counts logins with the expected result (valid: PAM_SUCCESS; wrong: any
 * failure but PAM_SUCCESS/PAM_IGNORE); the first few unexpected results are
 * printed as UNEXPECTED lines. Exit status 0 when every login gave the expected
 * result, 1 otherwise, 2 on usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <security/pam_appl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <valgrind/callgrind.h>

/* ---- SHA-1 (FIPS 180-4) and HMAC-SHA1 (RFC 2104) -------------------------- */

typedef struct {
    uint32_t h[5];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
} sha1_ctx;

static uint32_t rol(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

static void sha1_block(sha1_ctx *c, const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & cc) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ cc ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & cc) | (b & d) | (cc & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ cc ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = cc;
        cc = rol(b, 30);
        b = a;
        a = t;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
}

static void sha1_init(sha1_ctx *c)
{
    static const uint32_t iv[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    memcpy(c->h, iv, sizeof iv);
    c->len = 0;
    c->n = 0;
}

static void sha1_update(sha1_ctx *c, const uint8_t *p, size_t len)
{
    c->len += len;
    while (len > 0) {
        size_t take = 64 - c->n < len ? 64 - c->n : len;
        memcpy(c->buf + c->n, p, take);
        c->n += take;
        p += take;
        len -= take;
        if (c->n == 64) {
            sha1_block(c, c->buf);
            c->n = 0;
        }
    }
}

static void sha1_final(sha1_ctx *c, uint8_t out[20])
{
    uint64_t bits = c->len * 8;
    uint8_t pad = 0x80, zero = 0, lenb[8];
    sha1_update(c, &pad, 1);
    while (c->n != 56)
        sha1_update(c, &zero, 1);
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_update(c, lenb, 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

static void hmac_sha1(const uint8_t *key, size_t klen, const uint8_t *msg, size_t mlen,
                      uint8_t out[20])
{
    uint8_t k[64] = {0}, ipad[64], opad[64], inner[20];
    sha1_ctx c;
    if (klen > 64) {
        sha1_init(&c);
        sha1_update(&c, key, klen);
        sha1_final(&c, k);
    } else {
        memcpy(k, key, klen);
    }
    for (int i = 0; i < 64; i++) {
        ipad[i] = k[i] ^ 0x36;
        opad[i] = k[i] ^ 0x5c;
    }
    sha1_init(&c);
    sha1_update(&c, ipad, 64);
    sha1_update(&c, msg, mlen);
    sha1_final(&c, inner);
    sha1_init(&c);
    sha1_update(&c, opad, 64);
    sha1_update(&c, inner, 20);
    sha1_final(&c, out);
}

/* RFC 4226 dynamic truncation, 6 digits. */
static unsigned totp6(const uint8_t *key, size_t klen, uint64_t step)
{
    uint8_t msg[8], mac[20];
    for (int i = 0; i < 8; i++)
        msg[i] = (uint8_t)(step >> (56 - 8 * i));
    hmac_sha1(key, klen, msg, 8, mac);
    int off = mac[19] & 0x0f;
    uint32_t bin = (uint32_t)(mac[off] & 0x7f) << 24 | (uint32_t)mac[off + 1] << 16 |
                   (uint32_t)mac[off + 2] << 8 | mac[off + 3];
    return bin % 1000000u;
}

/* RFC 6238 appendix B / RFC 4226 appendix D vectors for the self-test. */
static int selftest(void)
{
    const uint8_t *k = (const uint8_t *)"12345678901234567890";
    /* T = 59 s -> step 1 -> 94287082 (8 digits) -> 287082 (6 digits). */
    if (totp6(k, 20, 1) != 287082)
        return 0;
    /* T = 1111111109 -> step 37037036 -> 07081804 -> 081804. */
    if (totp6(k, 20, 37037036) != 81804)
        return 0;
    return 1;
}

/* ---- users ----------------------------------------------------------------- */

typedef struct {
    char *name;
    uint8_t key[64];
    size_t klen;
    uint64_t last; /* highest step this run presented (valid scenario) */
} user_t;

static int unhex(const char *s, uint8_t *out, size_t max, size_t *len)
{
    size_t n = strlen(s);
    if (n % 2 || n / 2 > max)
        return 0;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return 0;
        out[i] = (uint8_t)v;
    }
    *len = n / 2;
    return 1;
}

static user_t *load_users(const char *path, size_t *count)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "pambench: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    size_t cap = 1024, n = 0;
    user_t *u = calloc(cap, sizeof *u);
    char name[256], hex[256];
    while (fscanf(f, "%255s %255s", name, hex) == 2) {
        if (n == cap) {
            cap *= 2;
            u = realloc(u, cap * sizeof *u);
            memset(u + n, 0, (cap - n) * sizeof *u);
        }
        u[n].name = strdup(name);
        if (!unhex(hex, u[n].key, sizeof u[n].key, &u[n].klen)) {
            fprintf(stderr, "pambench: %s: bad hex secret for %s\n", path, name);
            exit(2);
        }
        n++;
    }
    fclose(f);
    *count = n;
    return u;
}

/* FILE: "next N" then "INDEX LAST" lines for users with a recorded step. */
static void load_cursor(const char *path, user_t *u, size_t n, size_t *next)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    unsigned long long a, b;
    if (fscanf(f, "next %llu", &a) == 1)
        *next = (size_t)(a % n);
    while (fscanf(f, "%llu %llu", &a, &b) == 2)
        if (a < n)
            u[a].last = b;
    fclose(f);
}

static void save_cursor(const char *path, const user_t *u, size_t n, size_t next)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "pambench: %s: %s\n", tmp, strerror(errno));
        exit(2);
    }
    fprintf(f, "next %zu\n", next);
    for (size_t i = 0; i < n; i++)
        if (u[i].last)
            fprintf(f, "%zu %llu\n", i, (unsigned long long)u[i].last);
    fclose(f);
    rename(tmp, path);
}

/* ---- PAM ------------------------------------------------------------------- */

static char current_answer[16];

static int conv(int num_msg, const struct pam_message **msg, struct pam_response **resp,
                void *appdata)
{
    (void)appdata;
    if (num_msg <= 0 || num_msg > PAM_MAX_NUM_MSG)
        return PAM_CONV_ERR;
    struct pam_response *r = calloc((size_t)num_msg, sizeof *r);
    if (!r)
        return PAM_BUF_ERR;
    for (int i = 0; i < num_msg; i++) {
        int style = msg[i]->msg_style;
        if (style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON)
            r[i].resp = strdup(current_answer);
    }
    *resp = r;
    return PAM_SUCCESS;
}

static void no_delay(int retval, unsigned usec, void *appdata)
{
    (void)retval;
    (void)usec;
    (void)appdata;
}

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t step_now(void) { return (uint64_t)time(NULL) / 30; }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i];
}

static void usage(void)
{
    fprintf(stderr, "usage: pambench [-m valid|wrong] [-n N] [-t SECONDS] [-s FIRST] "
                    "[-u COUNT] [-N NAME] [-C] [-r RHOST] [-S FILE] [-o FILE] [-F] [-R RATE] [-A EPOCH] "
                    "CONFDIR SERVICE USERS\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *mode = "valid", *name = NULL, *rhost = "192.0.2.10";
    long n = 1000, first = 0, limit_users = 0;
    double time_limit = 0, rate = 0, start_at = 0;
    int callgrind = 0, fast_wrong = 0, opt;
    const char *statefile = NULL, *rawfile = NULL;
    while ((opt = getopt(argc, argv, "m:n:t:s:u:N:Cr:S:o:FR:A:")) != -1) {
        switch (opt) {
        case 'm': mode = optarg; break;
        case 'n': n = atol(optarg); break;
        case 't': time_limit = atof(optarg); break;
        case 's': first = atol(optarg); break;
        case 'u': limit_users = atol(optarg); break;
        case 'N': name = optarg; break;
        case 'C': callgrind = 1; break;
        case 'r': rhost = optarg; break;
        case 'S': statefile = optarg; break;
        case 'o': rawfile = optarg; break;
        case 'F': fast_wrong = 1; break;
        case 'R': rate = atof(optarg); break;
        case 'A': start_at = atof(optarg); break;
        default: usage();
        }
    }
    if (argc - optind != 3 || n <= 0 || first < 0)
        usage();
    int valid = strcmp(mode, "valid") == 0;
    if (!valid && strcmp(mode, "wrong") != 0)
        usage();
    if (!selftest()) {
        fprintf(stderr, "pambench: HMAC-SHA1/TOTP self-test failed\n");
        return 2;
    }
    const char *confdir = argv[optind], *service = argv[optind + 1];
    size_t nusers;
    user_t *users = load_users(argv[optind + 2], &nusers);
    if (limit_users > 0 && (size_t)limit_users < nusers)
        nusers = (size_t)limit_users;
    if (nusers == 0) {
        fprintf(stderr, "pambench: no users\n");
        return 2;
    }
    if (!name)
        name = service;

    double *lat = calloc((size_t)n, sizeof *lat);
    long done = 0, ok = 0, unexpected = 0;
    double total = 0, waited = 0;
    size_t next = (size_t)first % nusers;
    if (statefile)
        load_cursor(statefile, users, nusers, &next);
    size_t exhausted = 0; /* consecutive users with no fresh step left */
    double paced_from = 0;  /* -R: when the first login was scheduled */
    double first_start = 0, last_end = 0; /* span_s: first login's start to last's end */
    struct pam_conv pc = {conv, NULL};

    while (done < n && (time_limit <= 0 || total < time_limit)) {
        user_t *u = &users[next];
        next = (next + 1) % nusers;
        time_t wall = time(NULL);
        uint64_t now = (uint64_t)wall / 30;
        if (valid) {
            /* now-1 only while more than 3 s of the step remain: a code must still be
             * inside every module's +-1 window when the module reads the clock. */
            uint64_t lo = wall % 30 < 27 ? now - 1 : now;
            uint64_t s = u->last + 1 > lo ? u->last + 1 : lo;
            if (s > now + 1) {
                if (++exhausted >= nusers) {
                    /* Every user used now+1: wait for the next step (not timed). */
                    double t0 = mono();
                    while (step_now() == now)
                        usleep(20000);
                    waited += mono() - t0;
                    exhausted = 0;
                }
                continue;
            }
            exhausted = 0;
            u->last = s;
            snprintf(current_answer, sizeof current_answer, "%06u", totp6(u->key, u->klen, s));
        } else {
            /* A code that no step within +-1500 of now produces. */
            unsigned c = (totp6(u->key, u->klen, now) + 500000u + (unsigned)done * 7919u) % 1000000u;
            for (;;) {
                int hit = 0;
                int64_t span = fast_wrong ? 2 : 1501;
                for (int64_t d = -span; d <= span && !hit; d++)
                    hit = totp6(u->key, u->klen, (uint64_t)((int64_t)now + d)) == c;
                if (!hit)
                    break;
                c = (c + 1) % 1000000u;
            }
            snprintf(current_answer, sizeof current_answer, "%06u", c);
        }

        double sched = 0;
        if (rate > 0) {
            if (paced_from == 0) {
                paced_from = mono();
                if (start_at > 0) {
                    struct timespec w;
                    clock_gettime(CLOCK_REALTIME, &w);
                    srand48((long)getpid() ^ (long)w.tv_nsec);
                    paced_from += start_at - ((double)w.tv_sec + w.tv_nsec / 1e9) + drand48() / rate;
                }
            }
            sched = paced_from + (double)done / rate;
            double ahead = sched - mono();
            if (ahead > 0)
                usleep((useconds_t)(ahead * 1e6));
        }
        if (callgrind)
            CALLGRIND_TOGGLE_COLLECT;
        double t0 = mono();
        double from = rate > 0 && sched < t0 ? sched : t0;
        if (first_start == 0)
            first_start = t0;
        pam_handle_t *h = NULL;
        int rc = pam_start_confdir(service, u->name, &pc, confdir, &h);
        if (rc == PAM_SUCCESS) {
            pam_set_item(h, PAM_RHOST, rhost);
            pam_set_item(h, PAM_FAIL_DELAY, (const void *)no_delay);
            rc = pam_authenticate(h, 0);
            pam_end(h, rc);
        }
        last_end = mono();
        double dt = last_end - from;
        if (callgrind)
            CALLGRIND_TOGGLE_COLLECT;

        lat[done++] = dt;
        total += dt;
        int good = valid ? rc == PAM_SUCCESS : (rc != PAM_SUCCESS && rc != PAM_IGNORE);
        if (good) {
            ok++;
        } else if (unexpected++ < 5) {
            printf("UNEXPECTED user=%s code=%s rc=%d (%s)\n", u->name, current_answer, rc,
                   pam_strerror(NULL, rc));
        }
    }

    if (statefile)
        save_cursor(statefile, users, nusers, next);
    if (rawfile) {
        FILE *f = fopen(rawfile, "a");
        if (!f) {
            fprintf(stderr, "pambench: %s: %s\n", rawfile, strerror(errno));
            return 2;
        }
        for (long i = 0; i < done; i++)
            fprintf(f, "%.4f\n", lat[i] * 1e3);
        fclose(f);
    }
    qsort(lat, (size_t)done, sizeof *lat, cmp_double);
    printf("RESULT name=%s scenario=%s n=%ld ok=%ld unexpected=%ld secs=%.4f rate=%.1f "
           "p50_ms=%.3f p99_ms=%.3f mean_ms=%.3f waited_s=%.1f span_s=%.3f\n",
           name, mode, done, ok, unexpected, total, total > 0 ? (double)done / total : 0,
           percentile(lat, (size_t)done, 0.50) * 1e3, percentile(lat, (size_t)done, 0.99) * 1e3,
           done ? total / (double)done * 1e3 : 0, waited, last_end - first_start);
    return unexpected ? 1 : 0;
}
