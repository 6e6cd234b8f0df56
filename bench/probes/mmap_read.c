/* bench/probes/mmap_read.c — how fast can a file in the page cache be read? (docs/benchmarks.md,
 * "A way past 80%"). Writes a file of MB megabytes at once, then sums its floats (the same
 * 32-lane kernel as concord-bench's bandwidth pass) from memory, through pread into a
 * buffer of WIN KiB, through one mapping of the whole file, and through a mapping per window
 * of WIN KiB starting SHIFT bytes into the file (unmapped after use), three times each.
 *
 *   cc -O2 -o /tmp/mmap_read bench/probes/mmap_read.c
 *   /tmp/mmap_read MB PATH WIN SHIFT      e.g. /tmp/mmap_read 400 build/probe.bin 4096 0
 *
 * PATH should be on the file system the coordinator's state dir lives on; it is removed at
 * the end. Percentages are of the in-memory sum measured in the same repetition. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double s_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

__attribute__((target("avx2"))) static float s_sum(const float *p, size_t n) {
    float acc[32] = {0}, s = 0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 32; j++) acc[j] += p[i + j];
    for (int j = 0; j < 32; j++) s += acc[j];
    return s;
}

/* Sums the windows [shift + k·win, … + win) that fit, each mapped (with MAP_POPULATE or
 * faulted in) and unmapped after. */
static float s_windows(int fd, size_t bytes, size_t win, size_t shift, int populate) {
    float s = 0;
    for (size_t o = shift; o + win <= bytes; o += win) {
        float *w = mmap(NULL, win, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, (off_t)o);
        if (w == MAP_FAILED) exit(1);
        s += s_sum(w, win / 4);
        munmap(w, win);
    }
    return s;
}

int main(int argc, char **argv) {
    if (argc != 5) return fprintf(stderr, "usage: %s MB PATH WIN_KIB SHIFT_BYTES\n", argv[0]), 2;
    size_t bytes = (size_t)atol(argv[1]) << 20, win = (size_t)atol(argv[3]) << 10, shift = (size_t)atol(argv[4]);
    const char *path = argv[2];
    float *mem = malloc(bytes), *buf = aligned_alloc(64, win);
    if (!mem || !buf || shift % 4096) return fprintf(stderr, "bad size or unaligned shift\n"), 2;
    for (size_t i = 0; i < bytes / 4; i++) mem[i] = (float)(i & 1023) * 1e-3f;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, mem, bytes) != (ssize_t)bytes || fsync(fd) != 0) return perror(path), 1;
    float sink = 0;
    double gb = (double)bytes / 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t = s_now();
        sink += s_sum(mem, bytes / 4);
        double t_mem = s_now() - t;
        t = s_now();
        for (size_t o = 0; o + win <= bytes; o += win) {
            if (pread(fd, buf, win, (off_t)o) != (ssize_t)win) return perror("pread"), 1;
            sink += s_sum(buf, win / 4);
        }
        double t_pread = s_now() - t;
        t = s_now();
        float *m = mmap(NULL, bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (m == MAP_FAILED) return perror("mmap"), 1;
        double t_populate = s_now() - t;
        sink += s_sum(m, bytes / 4);
        munmap(m, bytes);
        double t_whole = s_now() - t;
        t = s_now();
        sink += s_windows(fd, bytes, win, shift, 1);
        double t_win = s_now() - t;
        printf("memory %.1f GB/s | pread %zu KiB %.0f%% | whole file mapped %.0f%% (populate %.2f ms) | "
               "%zu KiB windows at +%zu B %.0f%%\n",
               gb / t_mem, win >> 10, 100 * t_mem / t_pread, 100 * t_mem / t_whole, t_populate * 1e3, win >> 10,
               shift, 100 * t_mem / t_win);
    }
    unlink(path);
    free(mem), free(buf);
    return sink == 12345.0f; /* keeps the sums */
}
