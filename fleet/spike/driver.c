/* driver SO DIR ADDRS PER_MS TOTAL_MS [diag]: dlopen the module as libpam does (RTLD_NOW), call
 * spike_login once, print load_us call_us threads_before threads_after rc message on stdout;
 * with "diag", also on stderr the open file descriptors before/after and which TLS/client
 * libraries are still mapped after the call. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
static int threads(void) { int n = 0; DIR *d = opendir("/proc/self/task"); struct dirent *e;
  while ((e = readdir(d))) { if (e->d_name[0] != '.') n++; }
  closedir(d); return n; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static int fds(void) { int n = 0; DIR *d = opendir("/proc/self/fd"); struct dirent *e;
  while ((e = readdir(d))) { if (e->d_name[0] != '.') n++; }
  closedir(d); return n - 1; }
static void mapped(void) { const char *libs[] = {"libpq.so", "libssl.so", "libcrypto.so", "libgnutls.so", "libkrb5.so", NULL};
  char line[4096]; fprintf(stderr, "mapped after the call:");
  for (int i = 0; libs[i]; i++) { int n = 0; FILE *f = fopen("/proc/self/maps", "r");
    while (fgets(line, sizeof line, f)) if (strstr(line, libs[i])) n++;
    fclose(f); fprintf(stderr, " %s=%s", libs[i], n ? "yes" : "no"); }
  fprintf(stderr, "\n"); }
int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) return 2;
  int tb = threads(), fb = fds(); double t0 = now();
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) { fprintf(stderr, "%s\n", dlerror()); return 2; }
  int (*f)(const char *, const char *, int, int, char *, size_t) = dlsym(h, "spike_login");
  double t1 = now(); char out[2048];
  int rc = f(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), out, sizeof out);
  double t2 = now(); int ta = threads(), fa = fds();
  printf("%.0f %.0f %d %d %d %s\n", t1 - t0, t2 - t1, tb, ta, rc, out);
  if (argc == 7) { fprintf(stderr, "open fds before=%d after=%d; ", fb, fa); mapped(); }
  return 0; }
