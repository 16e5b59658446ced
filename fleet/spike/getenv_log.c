/* LD_PRELOAD shim: logs every getenv/secure_getenv name to fd 2 (which variables a client reads). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <unistd.h>
static void say(const char *k, const char *n) { write(2, k, strlen(k)); write(2, n, strlen(n)); write(2, "\n", 1); }
char *getenv(const char *n) { static char *(*r)(const char *); if (!r) r = dlsym(RTLD_NEXT, "getenv"); say("getenv ", n); return r(n); }
char *secure_getenv(const char *n) { static char *(*r)(const char *); if (!r) r = dlsym(RTLD_NEXT, "secure_getenv"); say("secure_getenv ", n); return r(n); }
