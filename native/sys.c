/*
 * prism_sys: the few system calls Node does not offer, for src/sys.ts (its only user).
 * Today: catching SIGINT, SIGTERM and SIGHUP while the library runs synchronously.
 *
 * Prism's library is synchronous, so a JavaScript signal handler (process.on('SIGINT'))
 * never runs while it works. Here, sigaction handlers only record the signal in shared
 * memory that JavaScript polls cheaply at its consistent points (Atomics.load), and a
 * watchdog thread makes sure nothing hangs: if JavaScript has not taken the signal within
 * the grace time (the process is blocked where it does not poll: a read of stdin, a lock
 * wait), or a second signal comes (a quarter of a second or more after the first: see
 * SAME_REQUEST_NS), the signal's default action is restored and the signal raised again, so
 * the process ends as it would have without us.
 *
 * It must never do anything in a signal handler but async-signal-safe calls, and never
 * keep the process alive or change what happens to a process that did not ask for it.
 *
 * Also the file calls Node lacks or rounds, for copying a tree exactly: extended attributes of
 * a path without following a final symlink (l*xattr), with names and paths as bytes;
 * utimensat/futimens with nanoseconds; mknod for device nodes and FIFOs; the credentials
 * of a Unix socket's peer (SO_PEERCRED); and, for streaming a file to a pipe without copying
 * it through JavaScript, sendfile(2) and the bytes a pipe still holds unread (FIONREAD). Each throws an Error shaped as Node's own system
 * errors (code, errno, syscall, path), so callers treat them alike.
 *
 * And one computation: the CRC-32 of many equal-sized records of a buffer in one call (an
 * inode table's slots), with the zlib Node itself links and exports to addons.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include <time.h>
#include <unistd.h>

/* Shared with JavaScript (an Int32Array over this memory). */
enum { S_PENDING = 0, S_TAKEN = 1, S_COUNT = 2, S_WORDS = 4 };
static int32_t state[S_WORDS];

static sem_t wake;
static int installed = 0;
static int32_t grace_ms = 1500;
static int32_t after_taken_ms = 10000;
static const int caught[] = {SIGINT, SIGTERM, SIGHUP};

/*
 * Signals this close to the first are the same request, not a second one that would end the
 * process at once: GNU timeout sends its signal to the command and then to the command's
 * process group, which holds the command too, and a shell's Ctrl-C may reach a command and a
 * wrapper that passes it on. Two presses of Ctrl-C by a hand are further apart.
 */
#define SAME_REQUEST_NS (250LL * 1000 * 1000)
static int64_t first_ns = 0;

static void on_signal(int sig) {
  int saved = errno;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now); /* (async-signal-safe) */
  int64_t t = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
  if (t == 0) t = 1;
  int64_t first = 0;
  if (!__atomic_compare_exchange_n(&first_ns, &first, t, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST) && t - first < SAME_REQUEST_NS) {
    errno = saved;
    return;
  }
  int32_t none = 0;
  __atomic_compare_exchange_n(&state[S_PENDING], &none, sig, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  __atomic_add_fetch(&state[S_COUNT], 1, __ATOMIC_SEQ_CST);
  sem_post(&wake);
  errno = saved;
}

/* Ends the process by `sig` as if nobody had caught it. */
static void die(int sig) {
  for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++) signal(caught[i], SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  kill(getpid(), sig);
  /* Still here (the signal is blocked elsewhere, or ignored): leave with the shell's status. */
  struct timespec t = {0, 200 * 1000 * 1000};
  nanosleep(&t, NULL);
  _exit(128 + sig);
}

static void sleep_ms(int ms) {
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

/* Waits `ms` for the state to reach `until`; true if it did. */
static int wait_for(int ms, int (*until)(void)) {
  for (int waited = 0; waited < ms; waited += 10) {
    if (until()) return 1;
    sleep_ms(10);
  }
  return until();
}

static int taken(void) { return __atomic_load_n(&state[S_TAKEN], __ATOMIC_SEQ_CST) != 0; }
static int second(void) { return __atomic_load_n(&state[S_COUNT], __ATOMIC_SEQ_CST) > 1; }

static void *watchdog(void *arg) {
  (void)arg;
  for (;;) {
    while (sem_wait(&wake) != 0) {}
    int sig = __atomic_load_n(&state[S_PENDING], __ATOMIC_SEQ_CST);
    if (sig == 0) continue;
    if (second()) die(sig);
    /* JavaScript takes the signal at its next consistent point, or we end the process. */
    if (!wait_for(grace_ms, taken)) die(sig);
    /* Taken: the command is unwinding (its transaction dropped, one line printed). A second
       signal, or unwinding that never ends, ends the process at once. */
    while (sem_trywait(&wake) == 0) {}
    if (!wait_for(after_taken_ms, second)) die(sig);
    die(sig);
  }
  return NULL;
}

static napi_value throw_errno(napi_env env, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/*
 * catchSignals(graceMs, afterTakenMs) -> Int32Array [pending signal, taken, count, 0].
 * Installs the handlers once (later calls return the same memory). JavaScript reads
 * `pending`, and writes `taken` (non-zero) when it has begun to stop.
 */
static napi_value catch_signals(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc >= 1) napi_get_value_int32(env, argv[0], &grace_ms);
  if (argc >= 2) napi_get_value_int32(env, argv[1], &after_taken_ms);
  if (!installed) {
    if (sem_init(&wake, 0, 0) != 0) return throw_errno(env, "sem_init");
    /* The watchdog never takes these signals itself, so a handler runs on a Node thread. */
    sigset_t all, old;
    sigemptyset(&all);
    for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++) sigaddset(&all, caught[i]);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int rc = pthread_create(&t, &attr, watchdog, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) { errno = rc; return throw_errno(env, "pthread_create"); }
    for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++) {
      struct sigaction sa;
      memset(&sa, 0, sizeof sa);
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESTART;
      if (sigaction(caught[i], &sa, NULL) != 0) return throw_errno(env, "sigaction");
    }
    installed = 1;
  }
  napi_value ab, arr;
  if (napi_create_external_arraybuffer(env, state, sizeof state, NULL, NULL, &ab) != napi_ok) {
    napi_throw_error(env, NULL, "cannot share the signal state");
    return NULL;
  }
  napi_create_typedarray(env, napi_int32_array, S_WORDS, ab, 0, &arr);
  return arr;
}

/* ---------------------------------------------------------------- file calls */

static const char *errno_code(int e) {
  switch (e) {
    case EPERM: return "EPERM"; case ENOENT: return "ENOENT"; case EIO: return "EIO"; case EBADF: return "EBADF";
    case ENOMEM: return "ENOMEM"; case EACCES: return "EACCES"; case EEXIST: return "EEXIST"; case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR"; case EINVAL: return "EINVAL"; case ENOSPC: return "ENOSPC"; case EROFS: return "EROFS";
    case ERANGE: return "ERANGE"; case ENAMETOOLONG: return "ENAMETOOLONG"; case ELOOP: return "ELOOP";
    case ENODATA: return "ENODATA"; case EOPNOTSUPP: return "ENOTSUP"; case E2BIG: return "E2BIG"; case EDQUOT: return "EDQUOT";
    case ENOTSOCK: return "ENOTSOCK"; case EFAULT: return "EFAULT";
    default: return "EUNKNOWN";
  }
}

/* Throws an Error as Node's fs does: "CODE: message, syscall 'path'", with code, errno, syscall, path. */
static napi_value throw_sys(napi_env env, int e, const char *syscall, const char *path) {
  char msg[512];
  const char *code = errno_code(e);
  if (path) snprintf(msg, sizeof msg, "%s: %s, %s '%s'", code, strerror(e), syscall, path);
  else snprintf(msg, sizeof msg, "%s: %s, %s", code, strerror(e), syscall);
  napi_value m, c, err, v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &err);
  napi_set_named_property(env, err, "code", c);
  napi_create_int32(env, -e, &v);
  napi_set_named_property(env, err, "errno", v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, err, "syscall", v);
  if (path) {
    napi_create_string_latin1(env, path, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, err, "path", v);
  }
  napi_throw(env, err);
  return NULL;
}

/* A NUL-terminated copy of a Buffer argument (a path or an attribute name, as bytes); NULL
   after throwing if it is not a Buffer or holds a NUL. The caller frees it. */
static char *bytes_arg(napi_env env, napi_value v, const char *what) {
  bool is;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) { napi_throw_type_error(env, NULL, what); return NULL; }
  void *data;
  size_t len;
  napi_get_buffer_info(env, v, &data, &len);
  if (memchr(data, 0, len)) { napi_throw_type_error(env, NULL, what); return NULL; }
  char *out = malloc(len + 1);
  if (!out) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  memcpy(out, data, len);
  out[len] = 0;
  return out;
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

/*
 * The size of the first try at a list or a value: most paths have no attributes or a few short
 * ones, which then take one system call instead of two (a size query, then the read). An
 * import asks every path of a tree (117,000 under /usr), so that call is worth saving.
 */
#define XATTR_FIRST 4096

/* llistxattr(path) -> Buffer[] (names, without their NULs) */
static napi_value js_llistxattr(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char *path = bytes_arg(env, argv[0], "path must be a Buffer without NUL");
  if (!path) return NULL;
  char first[XATTR_FIRST];
  char *list = first;
  ssize_t n = llistxattr(path, first, sizeof first);
  /* Longer than the first try (ERANGE): ask the size, then read, until they agree. */
  while (n < 0 && errno == ERANGE) {
    n = llistxattr(path, NULL, 0);
    if (n < 0) break;
    if (list != first) free(list);
    list = malloc(n > 0 ? (size_t)n : 1);
    if (!list) { free(path); napi_throw_error(env, NULL, "out of memory"); return NULL; }
    n = llistxattr(path, list, (size_t)n);
  }
  if (n < 0) {
    int e = errno;
    if (list != first) free(list);
    napi_value r = throw_sys(env, e, "llistxattr", path);
    free(path);
    return r;
  }
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t k = 0;
  for (ssize_t i = 0; i < n;) {
    size_t len = strnlen(list + i, (size_t)(n - i));
    if (len > 0) {
      napi_value b;
      void *dst;
      napi_create_buffer_copy(env, len, list + i, &dst, &b);
      napi_set_element(env, arr, k++, b);
    }
    i += (ssize_t)len + 1;
  }
  if (list != first) free(list);
  free(path);
  return arr;
}

/* lgetxattr(path, name) -> Buffer, or null when the attribute is not there */
static napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char *path = bytes_arg(env, argv[0], "path must be a Buffer without NUL");
  if (!path) return NULL;
  char *name = bytes_arg(env, argv[1], "name must be a Buffer without NUL");
  if (!name) { free(path); return NULL; }
  char first[XATTR_FIRST];
  char *val = first;
  ssize_t n = lgetxattr(path, name, first, sizeof first);
  /* Longer than the first try (ERANGE): ask the size, then read, until they agree. */
  while (n < 0 && errno == ERANGE) {
    n = lgetxattr(path, name, NULL, 0);
    if (n < 0) break;
    if (val != first) free(val);
    val = malloc(n > 0 ? (size_t)n : 1);
    if (!val) { n = -1; errno = ENOMEM; break; }
    n = lgetxattr(path, name, val, (size_t)n);
  }
  napi_value r;
  if (n < 0) {
    int e = errno;
    if (e == ENODATA) napi_get_null(env, &r);
    else r = throw_sys(env, e, "lgetxattr", path);
  } else {
    void *dst;
    napi_create_buffer_copy(env, (size_t)n, val, &dst, &r);
  }
  if (val != first) free(val);
  free(name);
  free(path);
  return r;
}

/* lsetxattr(path, name, value, flags) */
static napi_value js_lsetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char *path = bytes_arg(env, argv[0], "path must be a Buffer without NUL");
  if (!path) return NULL;
  char *name = bytes_arg(env, argv[1], "name must be a Buffer without NUL");
  if (!name) { free(path); return NULL; }
  void *data;
  size_t len;
  bool is;
  if (napi_is_buffer(env, argv[2], &is) != napi_ok || !is) { free(name); free(path); napi_throw_type_error(env, NULL, "value must be a Buffer"); return NULL; }
  napi_get_buffer_info(env, argv[2], &data, &len);
  int32_t flags = 0;
  if (argc >= 4) napi_get_value_int32(env, argv[3], &flags);
  napi_value r = undefined(env);
  if (lsetxattr(path, name, data, len, flags) != 0) r = throw_sys(env, errno, "lsetxattr", path);
  free(name);
  free(path);
  return r;
}

/* lremovexattr(path, name) */
static napi_value js_lremovexattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char *path = bytes_arg(env, argv[0], "path must be a Buffer without NUL");
  if (!path) return NULL;
  char *name = bytes_arg(env, argv[1], "name must be a Buffer without NUL");
  if (!name) { free(path); return NULL; }
  napi_value r = undefined(env);
  if (lremovexattr(path, name) != 0) r = throw_sys(env, errno, "lremovexattr", path);
  free(name);
  free(path);
  return r;
}

static int get_times(napi_env env, napi_value *argv, struct timespec ts[2]) {
  int64_t v[4];
  for (int i = 0; i < 4; i++) if (napi_get_value_int64(env, argv[i], &v[i]) != napi_ok) return -1;
  ts[0].tv_sec = (time_t)v[0]; ts[0].tv_nsec = (long)v[1];
  ts[1].tv_sec = (time_t)v[2]; ts[1].tv_nsec = (long)v[3];
  return 0;
}

/* utimensat(path, atimeS, atimeNs, mtimeS, mtimeNs, nofollow): nanoseconds, a symlink itself with nofollow */
static napi_value js_utimensat(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char *path = bytes_arg(env, argv[0], "path must be a Buffer without NUL");
  if (!path) return NULL;
  struct timespec ts[2];
  if (get_times(env, argv + 1, ts) != 0) { free(path); napi_throw_type_error(env, NULL, "times must be integers"); return NULL; }
  bool nofollow = false;
  if (argc >= 6) napi_get_value_bool(env, argv[5], &nofollow);
  napi_value r = undefined(env);
  if (utimensat(AT_FDCWD, path, ts, nofollow ? AT_SYMLINK_NOFOLLOW : 0) != 0) r = throw_sys(env, errno, "utimensat", path);
  free(path);
  return r;
}

/* futimens(fd, atimeS, atimeNs, mtimeS, mtimeNs) */
static napi_value js_futimens(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  struct timespec ts[2];
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || get_times(env, argv + 1, ts) != 0) {
    napi_throw_type_error(env, NULL, "futimens(fd, atimeS, atimeNs, mtimeS, mtimeNs)");
    return NULL;
  }
  if (futimens(fd, ts) != 0) return throw_sys(env, errno, "futimens", NULL);
  return undefined(env);
}

/* syncfs(fd): writes back what the kernel holds dirty of the filesystem `fd` is on (pages a
 * program changed through a shared mapping of a file on a FUSE mount, not yet sent). */
static napi_value js_syncfs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "syncfs(fd)");
    return NULL;
  }
  if (syncfs(fd) != 0) return throw_sys(env, errno, "syncfs", NULL);
  return undefined(env);
}

/* mknod(path, mode, major, minor): a device node, FIFO or socket (mode carries the type) */
/* Grows a pipe's buffer to at least `bytes` (Linux fcntl F_GETPIPE_SZ / F_SETPIPE_SZ; never
 * shrinks it): returns the size it has, or -errno (the caller goes on with the pipe as it is). */
static napi_value js_set_pipe_size(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, bytes;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &bytes) != napi_ok) {
    napi_throw_type_error(env, NULL, "setPipeSize(fd, bytes)");
    return NULL;
  }
#ifdef F_SETPIPE_SZ
  int rc = fcntl(fd, F_GETPIPE_SZ);
  if (rc >= 0 && rc < bytes) rc = fcntl(fd, F_SETPIPE_SZ, bytes);
  if (rc < 0) rc = -errno;
#else
  int rc = -ENOSYS;
#endif
  napi_value out;
  napi_create_int32(env, rc, &out);
  return out;
}

static int64_t int64_arg(napi_env env, napi_value v) {
  int64_t x = -1;
  if (napi_get_value_int64(env, v, &x) != napi_ok) return -1;
  return x;
}

/* The call's first four arguments as integers into out[0..3]; -1 for one missing or not a number. */
static void four_int64_args(napi_env env, napi_callback_info info, int64_t out[4]) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  for (size_t i = 0; i < 4; i++) out[i] = argc >= 4 ? int64_arg(env, argv[i]) : -1;
}

/* sendFile(outFd, inFd, pos, count): one sendfile(2) of at most `count` bytes of inFd from
 * byte `pos` to outFd. Returns the bytes sent (0 at inFd's end), or -errno (EAGAIN from a
 * non-blocking output, EPIPE, EINVAL where sendfile cannot go: the caller reads and writes). */
static napi_value js_sendfile(napi_env env, napi_callback_info info) {
  int64_t a[4];
  four_int64_args(env, info, a);
  int64_t out = a[0], in = a[1], pos = a[2], count = a[3];
  if (out < 0 || in < 0 || pos < 0 || count < 0 || out > INT32_MAX || in > INT32_MAX) {
    napi_throw_type_error(env, NULL, "sendFile(outFd, inFd, pos, count)");
    return NULL;
  }
  off_t o = (off_t)pos;
  if (count > 0x7ffff000) count = 0x7ffff000;
  ssize_t n = sendfile((int)out, (int)in, &o, (size_t)count);
  napi_value r;
  napi_create_int64(env, n < 0 ? -(int64_t)errno : (int64_t)n, &r);
  return r;
}

/* fallocate(fd, mode, offset, length): fallocate(2) of a range of an open file (the modes of
 * <linux/falloc.h>: the caller asks for FALLOC_FL_ZERO_RANGE to make blocks read as zero
 * without writing them). Returns 0, or -errno (EOPNOTSUPP where the file system cannot: the
 * caller writes zeros instead). */
static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  int64_t a[4];
  four_int64_args(env, info, a);
  int64_t fd = a[0], mode = a[1], off = a[2], len = a[3];
  if (fd < 0 || fd > INT32_MAX || mode < 0 || mode > INT32_MAX || off < 0 || len <= 0) {
    napi_throw_type_error(env, NULL, "fallocate(fd, mode, offset, length)");
    return NULL;
  }
  int rc;
  do rc = fallocate((int)fd, (int)mode, (off_t)off, (off_t)len); while (rc != 0 && errno == EINTR);
  napi_value r;
  napi_create_int32(env, rc == 0 ? 0 : -errno, &r);
  return r;
}

/* pipeUnread(fd): the bytes the pipe at fd holds that its reader has not read yet (FIONREAD),
 * -EPIPE when no reader has it open any more, or -errno. */
static napi_value js_pipe_unread(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) { napi_throw_type_error(env, NULL, "pipeUnread(fd)"); return NULL; }
  int rc;
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  if (poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP | POLLNVAL))) rc = p.revents & POLLNVAL ? -EBADF : -EPIPE;
  else {
    int n = 0;
    rc = ioctl(fd, FIONREAD, &n) == 0 ? n : -errno;
  }
  napi_value r;
  napi_create_int32(env, rc, &r);
  return r;
}

static napi_value js_mknod(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char *path = bytes_arg(env, argv[0], "path must be a Buffer without NUL");
  if (!path) return NULL;
  uint32_t mode = 0, major = 0, minor = 0;
  napi_get_value_uint32(env, argv[1], &mode);
  if (argc >= 3) napi_get_value_uint32(env, argv[2], &major);
  if (argc >= 4) napi_get_value_uint32(env, argv[3], &minor);
  napi_value r = undefined(env);
  if (mknod(path, (mode_t)mode, makedev(major, minor)) != 0) r = throw_sys(env, errno, "mknod", path);
  free(path);
  return r;
}

/* peerCred(fd) -> {pid, uid, gid} of a connected Unix socket's other end (SO_PEERCRED) */
static napi_value js_peercred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) { napi_throw_type_error(env, NULL, "peerCred(fd)"); return NULL; }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_sys(env, errno, "getsockopt", NULL);
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_int32(env, cred.pid, &v);
  napi_set_named_property(env, o, "pid", v);
  napi_create_uint32(env, cred.uid, &v);
  napi_set_named_property(env, o, "uid", v);
  napi_create_uint32(env, cred.gid, &v);
  napi_set_named_property(env, o, "gid", v);
  return o;
}

/* The CRC-32 of zlib (reflected polynomial 0xedb88320, inverted before and after) of len
 * bytes, len >= 64, folding 64 bytes at a time with carry-less multiplication, then a Barrett
 * reduction (Gopal et al., "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
 * Instruction", Intel, 2009; the same constants as zlib's crc32_simd.c, which the zlib Node
 * links does not use on this path). The bytes past the last multiple of 16 go through zlib. */
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("pclmul,sse4.1")))
static uint32_t crc32_clmul(uint32_t crc, const unsigned char *buf, size_t len) {
  static const uint64_t __attribute__((aligned(16))) k1k2[] = {0x0154442bd4, 0x01c6e41596};
  static const uint64_t __attribute__((aligned(16))) k3k4[] = {0x01751997d0, 0x00ccaa009e};
  static const uint64_t __attribute__((aligned(16))) k5k0[] = {0x0163cd6124, 0x0000000000};
  static const uint64_t __attribute__((aligned(16))) poly[] = {0x01db710641, 0x01f7011641};
  const unsigned char *end = buf + len;
  __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8;
  x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
  x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
  x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
  x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
  x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)~crc));
  x0 = _mm_load_si128((const __m128i *)k1k2);
  buf += 64;
  while (end - buf >= 64) {
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
    x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
    x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
    x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(buf + 0x00)));
    x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(buf + 0x10)));
    x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(buf + 0x20)));
    x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(buf + 0x30)));
    buf += 64;
  }
  /* Fold the four lanes into one, then 16 bytes at a time. */
  x0 = _mm_load_si128((const __m128i *)k3k4);
  x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
  x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x2), x5);
  x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
  x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x3), x5);
  x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
  x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), x4), x5);
  while (end - buf >= 16) {
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, x0, 0x11), _mm_loadu_si128((const __m128i *)buf)), x5);
    buf += 16;
  }
  /* 128 bits to 64, then the Barrett reduction to 32. */
  x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
  x3 = _mm_setr_epi32(~0, 0, ~0, 0);
  x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
  x0 = _mm_loadl_epi64((const __m128i *)k5k0);
  x2 = _mm_srli_si128(x1, 4);
  x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, x3), x0, 0x00), x2);
  x0 = _mm_load_si128((const __m128i *)poly);
  x2 = _mm_clmulepi64_si128(_mm_and_si128(x1, x3), x0, 0x10);
  x2 = _mm_clmulepi64_si128(_mm_and_si128(x2, x3), x0, 0x00);
  crc = ~(uint32_t)_mm_extract_epi32(_mm_xor_si128(x1, x2), 1);
  return end > buf ? (uint32_t)crc32(crc, buf, (uInt)(end - buf)) : crc;
}
#endif

/* The CRC-32 of buf[0, len) continuing from crc (0 to start): with carry-less multiplication
 * where the processor has it (checked once), else zlib's. */
static uint32_t crc32_of(uint32_t crc, const unsigned char *buf, size_t len) {
#if defined(__x86_64__)
  static int clmul = -1;
  if (clmul < 0) clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  if (clmul && len >= 64) return crc32_clmul(crc, buf, len);
#endif
  return (uint32_t)crc32(crc, buf, (uInt)len);
}

/* crc32Many(buf, count, stride, len, out): out[k] = the CRC-32 (zlib's, as zlib.crc32) of
 * buf[k * stride, k * stride + len) for every k < count. A call from JavaScript costs more
 * than the checksum of a 252-byte inode: this makes one call of a table's thousands. */
static napi_value js_crc32_many(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_typedarray_type bt, ot;
  size_t blen = 0, olen = 0;
  void *bdata = NULL, *odata = NULL;
  uint32_t count = 0, stride = 0, len = 0;
  if (argc < 5 || napi_get_typedarray_info(env, argv[0], &bt, &blen, &bdata, NULL, NULL) != napi_ok || bt != napi_uint8_array ||
      napi_get_value_uint32(env, argv[1], &count) != napi_ok || napi_get_value_uint32(env, argv[2], &stride) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &len) != napi_ok ||
      napi_get_typedarray_info(env, argv[4], &ot, &olen, &odata, NULL, NULL) != napi_ok || ot != napi_uint32_array ||
      olen < count || len > stride || (count > 0 && (uint64_t)(count - 1) * stride + len > blen)) {
    napi_throw_type_error(env, NULL, "crc32Many(buf: Uint8Array, count, stride, len, out: Uint32Array)");
    return NULL;
  }
  const unsigned char *p = bdata;
  uint32_t *out = odata;
  for (uint32_t k = 0; k < count; k++) out[k] = crc32_of(0, p + (size_t)k * stride, len);
  return undefined(env);
}

/* crc32(buf, start, end, seed): the CRC-32 of buf[start, end) continuing from seed (as
 * zlib.crc32(buf.subarray(start, end), seed)), folded as crc32Many's: a 4 KiB block takes a
 * quarter of the time zlib's takes. */
static napi_value js_crc32(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_typedarray_type bt;
  size_t blen = 0;
  void *bdata = NULL;
  uint32_t start = 0, end = 0, seed = 0;
  if (argc < 4 || napi_get_typedarray_info(env, argv[0], &bt, &blen, &bdata, NULL, NULL) != napi_ok || bt != napi_uint8_array ||
      napi_get_value_uint32(env, argv[1], &start) != napi_ok || napi_get_value_uint32(env, argv[2], &end) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &seed) != napi_ok || start > end || end > blen) {
    napi_throw_type_error(env, NULL, "crc32(buf: Uint8Array, start, end, seed)");
    return NULL;
  }
  napi_value r;
  napi_create_uint32(env, crc32_of(seed, (const unsigned char *)bdata + start, end - start), &r);
  return r;
}

/*
 * realtime(out: Float64Array): out[0] = seconds, out[1] = nanoseconds of CLOCK_REALTIME, the
 * clock the kernel stamps files with; Node's Date.now() has only milliseconds, and a stamp
 * taken with it can fall before one the kernel set a moment earlier.
 */
static napi_value js_realtime(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_typedarray_type t;
  size_t len = 0;
  void *data = NULL;
  if (argc < 1 || napi_get_typedarray_info(env, argv[0], &t, &len, &data, NULL, NULL) != napi_ok || t != napi_float64_array || len < 2) {
    napi_throw_type_error(env, NULL, "realtime(out: Float64Array of 2)");
    return NULL;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ((double *)data)[0] = (double)ts.tv_sec;
  ((double *)data)[1] = (double)ts.tv_nsec;
  return NULL;
}

NAPI_MODULE_INIT() {
  static const struct {const char *name; napi_callback cb;} fns[] = {
    {"catchSignals", catch_signals}, {"llistxattr", js_llistxattr}, {"lgetxattr", js_lgetxattr}, {"lsetxattr", js_lsetxattr},
    {"lremovexattr", js_lremovexattr}, {"utimensat", js_utimensat}, {"futimens", js_futimens}, {"syncfs", js_syncfs}, {"mknod", js_mknod}, {"setPipeSize", js_set_pipe_size},
    {"peerCred", js_peercred}, {"sendFile", js_sendfile}, {"pipeUnread", js_pipe_unread}, {"fallocate", js_fallocate},
    {"crc32Many", js_crc32_many}, {"crc32", js_crc32}, {"realtime", js_realtime},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn);
    napi_set_named_property(env, exports, fns[i].name, fn);
  }
  return exports;
}
