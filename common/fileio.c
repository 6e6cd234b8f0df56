/* fileio.c — see fileio.h for the durability invariants FILEIO-1..3. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fileio_fault_fail_sync_after = 0;

static int s_fault_fires(void) {
    if (fileio_fault_fail_sync_after <= 0) return 0;
    if (--fileio_fault_fail_sync_after == 0) {
        errno = ENOSPC;
        return 1;
    }
    return 0;
}

static void s_release(fileio_atomic_t *f) {
    free(f->path);
    free(f->tmp_path);
    f->path = f->tmp_path = NULL;
    f->fp = NULL;
}

int fileio_atomic_open(fileio_atomic_t *f, const char *path, cc_err_t *err) {
    memset(f, 0, sizeof *f);
    size_t n = strlen(path) + 32;
    f->path = cc_xstrdup(path);
    f->tmp_path = cc_xmalloc(n);
    snprintf(f->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        int e = errno;
        cc_err_set(err, CC_ERR_IO, "%s: cannot create: %s", f->tmp_path, strerror(e));
        s_release(f);
        return CC_ERR_IO;
    }
    return 0;
}

int fileio_pread_all(int fd, void *buf, size_t n, uint64_t off) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return -1;
        if (got == 0) return 1;
        p += got, n -= (size_t)got, off += (uint64_t)got;
    }
    return 0;
}

int fileio_fsync_dir(const char *path) {
    char *copy = cc_xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno; /* close must not hide why fsync failed */
    close(fd);
    errno = e;
    return rc;
}

int fileio_atomic_commit(fileio_atomic_t *f, cc_err_t *err) {
    const char *what = "write";
    int failed = ferror(f->fp);
    if (!failed && (s_fault_fires() || fflush(f->fp) != 0)) failed = 1, what = "flush";
    if (!failed && (s_fault_fires() || fsync(fileno(f->fp)) != 0)) failed = 1, what = "fsync";
    int e = errno;
    if (fclose(f->fp) != 0 && !failed) failed = 1, what = "close", e = errno;
    f->fp = NULL;
    if (!failed && rename(f->tmp_path, f->path) != 0) failed = 1, what = "rename", e = errno;
    if (failed) {
        cc_err_set(err, CC_ERR_IO, "%s: %s failed: %s", f->path, what, strerror(e ? e : EIO));
        unlink(f->tmp_path); /* FILEIO-3 */
        s_release(f);
        return CC_ERR_IO;
    }
    if (fileio_fsync_dir(f->path) != 0) { /* FILEIO-2 */
        e = errno;
        cc_err_set(err, CC_ERR_IO, "%s: fsync of directory failed: %s", f->path, strerror(e));
        s_release(f);
        return CC_ERR_IO;
    }
    s_release(f);
    return 0;
}

void fileio_atomic_abort(fileio_atomic_t *f) {
    if (f->fp) fclose(f->fp);
    if (f->tmp_path) unlink(f->tmp_path);
    s_release(f);
}

int fileio_write_atomic(const char *path, const void *buf, size_t len, cc_err_t *err) {
    fileio_atomic_t f;
    int rc = fileio_atomic_open(&f, path, err);
    if (rc) return rc;
    if (len && fwrite(buf, 1, len, f.fp) != len) {
        int e = errno;
        fileio_atomic_abort(&f);
        return cc_err_set(err, CC_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return fileio_atomic_commit(&f, err);
}

int fileio_read_all(const char *path, size_t max_len, char **buf, size_t *len, cc_err_t *err) {
    *buf = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return cc_err_set(err, CC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *p = cc_xmalloc(cap + 1);
    for (;;) {
        size_t got = fread(p + n, 1, cap - n, fp);
        n += got;
        if (n > max_len) {
            free(p);
            fclose(fp);
            return cc_err_set(err, CC_ERR_FORMAT, "%s: larger than the limit of %zu bytes",
                              path, max_len);
        }
        if (got == 0) break;
        if (n == cap) {
            cap *= 2;
            p = cc_xrealloc(p, cap + 1);
        }
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(p);
        return cc_err_set(err, CC_ERR_IO, "%s: read failed", path);
    }
    p[n] = '\0';
    *buf = p;
    *len = n;
    return 0;
}
