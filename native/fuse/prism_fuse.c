// prism_fuse.c: Prism's FUSE binding, a small N-API addon over libfuse3's low-level,
// inode-based API (fuse_lowlevel.h), for libfuse 3.14 (Debian 12) and later.
//
// One native thread per mount runs libfuse's single-threaded session loop. Each request is
// copied (names, values and write data included) into a record that a threadsafe function
// hands to the JavaScript main thread. Once the main thread has answered it, it reads the
// next requests itself for a few milliseconds (direct reads, see struct mnt and direct_phase)
// while the loop thread waits; the loop thread never waits for JavaScript otherwise. JavaScript
// answers later, at any time, through the reply functions below, which take the request's
// handle. Kernel cache notifications run on a second native thread per mount, because the
// kernel may make them wait for a request that only the main thread can answer.
//
// It must never: block the loop thread on JavaScript (beyond a direct read, which ends as soon
// as a request is not answered during its call); keep the event loop waiting longer than
// DIRECT_BUDGET_NS; let a request go unanswered (a reply
// after another throws, a handle that is garbage-collected unanswered is answered EIO, and the
// requests still open when the loop ends are answered EIO); free the session while a reply or
// a notification can still use it; or touch the mount it serves (stat, open, ...) from any of
// its threads. src/fuse/ is the only caller and documents the rules for the filesystem.
#define FUSE_USE_VERSION 314
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

// Numbers cross into JavaScript as doubles: every inode number, file handle, offset and size
// must be an integer no larger than this (2^53 - 1). See ll_* for what happens to larger ones.
#define MAX_SAFE 9007199254740991.0
#define MAX_SAFE_U64 9007199254740991ULL

enum {
  OP_INIT, OP_END, OP_NOTIFY_DONE,
  OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR, OP_UNLINK,
  OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE, OP_FLUSH, OP_RELEASE,
  OP_FSYNC, OP_OPENDIR, OP_READDIR, OP_READDIRPLUS, OP_RELEASEDIR, OP_FSYNCDIR, OP_STATFS,
  OP_SETXATTR, OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR, OP_ACCESS, OP_CREATE, OP_FALLOCATE,
  OP_IOCTL, OP_LSEEK, OP_COPY_FILE_RANGE, OP_GETLK, OP_SETLK, OP_FLOCK, OP_INTERRUPT,
  OP_COUNT
};

static const char *const OP_NAMES[OP_COUNT] = {
  "init", "end", "notifyDone",
  "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink",
  "rmdir", "symlink", "rename", "link", "open", "read", "write", "flush", "release",
  "fsync", "opendir", "readdir", "readdirplus", "releasedir", "fsyncdir", "statfs",
  "setxattr", "getxattr", "listxattr", "removexattr", "access", "create", "fallocate",
  "ioctl", "lseek", "copyFileRange", "getlk", "setlk", "flock", "interrupt",
};

#define REC_MAGIC 0x50524d46u
#define MAXARGS 16
enum { ST_QUEUED, ST_PENDING, ST_REPLIED, ST_CANCELLED };
enum { M_MOUNTING, M_RUNNING, M_CLOSED };

struct mnt;

// One request (or event) on its way to JavaScript and back.
struct rec {
  uint32_t magic;
  int op;
  int state;
  struct mnt *m;
  fuse_req_t req;        // NULL for events (init, end, forget, notifyDone)
  struct rec *prev, *next; // the mount's list of requests JavaScript holds (main thread only)
  uint32_t uid, gid, pid, umask;
  int nargs;
  char kind[MAXARGS];    // 'n' number, 'u' undefined, 'b' boolean, '0'/'1' copy of buf[i], 'W' buf[0] handed over
  double num[MAXARGS];
  char *buf[2];
  size_t len[2];
  char *dir;             // readdir reply being filled
  size_t dirsize, dirlen;
  struct fuse_forget_data *forgets;
  size_t nforgets;
  uint64_t t0;           // when the loop thread read it (ns, CLOCK_MONOTONIC), with stats on
  int handoff;           // posted by the loop thread, which waits until the main thread has taken it
  struct rec *qnext;     // the main thread's own queue of requests it read itself
  int counted;           // counted in g_queued until the main thread takes it
};

struct note {
  struct note *next;
  int kind;              // 0 inval_inode, 1 inval_entry, 2 delete, 3 expire_entry
  double id;
  uint64_t a, b;
  int64_t off, len;
  char *name;
  size_t namelen;
};

struct config {
  unsigned max_write, max_read, max_readahead, max_background, congestion;
  int writeback, posix_acl, export_support, dont_mask, cache_symlinks, killpriv, readdirplus_auto;
};

// Node ids that JavaScript found to have no security.capability attribute. The kernel asks a
// FUSE filesystem for that attribute before every write (to drop file capabilities; FUSE sets
// no SB_NOSEC without HANDLE_KILLPRIV_V2, which libfuse 3.14 lacks), so a write-heavy workload
// would pay two round trips to JavaScript per write(2). ll_getxattr answers ENODATA from here
// instead. A lossy direct-mapped cache: a slot holds one node id, a collision only forgets.
// JavaScript fills and empties it (capCache: it empties a node's slot before any setxattr
// reaches the filesystem, when it invalidates the node, when it forgets it, and the whole
// cache while the image is lent to a command); the loop thread only reads it.
#define NOCAP_SLOTS 16384

struct mnt {
  _Atomic uint64_t nocap[NOCAP_SLOTS];
  // Set once a POSIX lock has been asked for through this mount (ll_setlk). Until then a flush
  // (a close) has no lock of its process to release, and the loop thread answers it alone.
  _Atomic int posix_used;
  struct mnt *gprev, *gnext; // all live mounts, for the exit handler (main thread only)
  int state;
  int js_released;
  char *mountpoint;
  char *options;
  int debug;
  struct config cfg;
  unsigned char implemented[OP_COUNT];
  struct fuse_lowlevel_ops ops;
  struct fuse_session *se;
  char err[1024];
  napi_threadsafe_function tsfn;
  napi_deferred deferred;
  napi_async_work work;
  pthread_t loop_thread;
  int loop_started;
  struct rec pending;    // list head
  pthread_t note_thread;
  int note_started;
  pthread_mutex_t note_lock;
  pthread_cond_t note_cond;
  struct note *note_head, *note_tail;
  int note_stop;
  int leaked; // finish_mount could not stop the notification thread: never freed
  // PRISM_FUSE_STATS: per operation, requests answered by JavaScript, ns from being read to
  // being answered, ns inside the JavaScript call that received them; and requests the loop
  // thread answered itself. Written to stderr when the session ends.
  int stats;
  uint64_t st_count[OP_COUNT], st_wait_ns[OP_COUNT], st_js_ns[OP_COUNT];
  _Atomic uint64_t st_loop[OP_COUNT];
  uint64_t st_direct;
  // Direct reads (on unless PRISM_FUSE_DIRECT=0): after the main thread has answered a request
  // the loop thread handed it, it reads the next requests from the device itself for a short
  // while (see direct_phase), so that a busy mount's requests reach JavaScript without a
  // thread switch and an event-loop turn each. Meanwhile the loop thread waits (handoff): one
  // reader of the device at a time, so requests are taken in the kernel's order.
  int direct;
  uint64_t spin_ns;
  pthread_mutex_t hand_lock;
  pthread_cond_t hand_cond;
  int handoff;
  struct fuse_buf mbuf;  // the main thread's read buffer
  struct rec *dq_head, *dq_tail;
};

static atomic_int g_exiting;
// Requests of every mount posted to the main thread and not yet taken by it: work that runs in
// slices on the main thread (a copy into a served image) ends its slice when one waits (queued()).
static atomic_int g_queued;
static struct mnt g_mounts = {.gprev = &g_mounts, .gnext = &g_mounts};
static int g_atexit_set;
static __thread struct mnt *tl_mnt; // the mount whose libfuse messages are being collected
static __thread struct mnt *tl_loop; // set on a mount's loop thread
static __thread struct mnt *tl_direct; // set on the main thread while it processes a request it read

// How long the main thread, having answered a request, waits for the next one on the device
// (idle: asleep in ppoll, after a busy poll of DIRECT_SPIN_US; PRISM_FUSE_SPIN_US overrides),
// and the most it keeps reading before it returns to the event loop (budget): timers, the
// command socket and promise continuations wait at most that long. The busy poll is off by
// default: it helps on an idle machine (the next request comes before a sleeping thread would
// wake), but on a loaded one the process making the requests may be waiting for the very CPU
// the poll holds (a 100-byte pwrite took twice as long as without it), and a sched_yield in
// the poll gave the CPU away for whole slices. So it runs only while the machine has a CPU to
// spare: the 1-minute load average (read at most once a second) under the CPUs online.
// Measured on an idle 2-core machine: untar 0.57x and git 0.59x fuse2fs with it, 1.21x and
// 1.00x without (bench/README.md).
#define DIRECT_IDLE_NS 500000
#define DIRECT_SPIN_US 50
#define DIRECT_BUDGET_NS 4000000

struct instance {
  napi_ref scratch_ref;
  double *scratch;
  size_t scratch_len;
};

// ---------------------------------------------------------------------------------------
// libfuse's messages: kept for the error of a failed mount, otherwise written to stderr.

static void log_func(enum fuse_log_level level, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  struct mnt *m = tl_mnt;
  if (m != NULL) {
    size_t used = strlen(m->err);
    if (used + 1 < sizeof m->err) snprintf(m->err + used, sizeof m->err - used, "%s", msg);
    return;
  }
  if (level <= FUSE_LOG_WARNING) fprintf(stderr, "prism: libfuse: %s", msg);
}

// ---------------------------------------------------------------------------------------
// Records: built on the loop thread, posted to the main thread.

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void rec_free(struct rec *r) {
  if (r == NULL) return;
  free(r->buf[0]);
  free(r->buf[1]);
  free(r->dir);
  free(r->forgets);
  r->magic = 0;
  free(r);
}

static struct rec *rec_new(fuse_req_t req, int op) {
  struct rec *r = calloc(1, sizeof *r);
  if (r == NULL) {
    if (req != NULL) fuse_reply_err(req, ENOMEM);
    return NULL;
  }
  r->magic = REC_MAGIC;
  r->op = op;
  r->req = req;
  r->state = ST_QUEUED;
  if (req != NULL) {
    r->m = fuse_req_userdata(req);
    if (r->m->stats) r->t0 = now_ns();
    const struct fuse_ctx *c = fuse_req_ctx(req);
    r->uid = c->uid;
    r->gid = c->gid;
    r->pid = c->pid;
    r->umask = c->umask;
  }
  return r;
}

static void put_num(struct rec *r, double v) {
  r->kind[r->nargs] = 'n';
  r->num[r->nargs++] = v;
}

static void put_undef(struct rec *r) {
  r->kind[r->nargs++] = 'u';
}

static void put_bool(struct rec *r, int v) {
  r->kind[r->nargs] = 'b';
  r->num[r->nargs++] = v ? 1 : 0;
}

// false when v does not fit a JavaScript number exactly
static int put_u64(struct rec *r, uint64_t v) {
  if (v > MAX_SAFE_U64) return 0;
  put_num(r, (double)v);
  return 1;
}

static int put_i64(struct rec *r, int64_t v) {
  if (v > (int64_t)MAX_SAFE_U64 || v < -(int64_t)MAX_SAFE_U64) return 0;
  put_num(r, (double)v);
  return 1;
}

static int put_bytes(struct rec *r, int slot, const char *p, size_t n, char kind) {
  r->buf[slot] = malloc(n ? n : 1);
  if (r->buf[slot] == NULL) return 0;
  if (n) memcpy(r->buf[slot], p, n);
  r->len[slot] = n;
  r->kind[r->nargs++] = kind;
  return 1;
}

static int put_name(struct rec *r, int slot, const char *name) {
  return put_bytes(r, slot, name, strlen(name), slot == 0 ? '0' : '1');
}

// The main thread is done reading: the loop thread takes the device back.
static void release_loop(struct mnt *m) {
  pthread_mutex_lock(&m->hand_lock);
  m->handoff = 0;
  pthread_cond_signal(&m->hand_cond);
  pthread_mutex_unlock(&m->hand_lock);
}

// Hands a record to the main thread. On failure the request is answered `err` here.
static void post(struct rec *r, int ok, int err) {
  if (!ok) {
    if (r->req != NULL) fuse_reply_err(r->req, err);
    rec_free(r);
    return;
  }
  struct mnt *m = r->m;
  if (tl_direct == m) { // read by the main thread itself: dispatched as soon as libfuse returns
    r->qnext = NULL;
    if (m->dq_tail) m->dq_tail->qnext = r;
    else m->dq_head = r;
    m->dq_tail = r;
    return;
  }
  int hand = r->req != NULL && tl_loop == m && m->direct;
  if (hand) {
    pthread_mutex_lock(&m->hand_lock);
    m->handoff = 1;
    pthread_mutex_unlock(&m->hand_lock);
    r->handoff = 1;
  }
  r->counted = r->req != NULL;
  if (r->counted) atomic_fetch_add(&g_queued, 1);
  if (atomic_load(&g_exiting) || napi_call_threadsafe_function(m->tsfn, r, napi_tsfn_nonblocking) != napi_ok) {
    if (r->counted) atomic_fetch_sub(&g_queued, 1);
    if (hand) release_loop(m);
    if (r->req != NULL) fuse_reply_err(r->req, EIO);
    rec_free(r);
  }
}

// A lock owner is an opaque 64-bit token (the kernel's hash of the owner): two numbers, the
// high and low 32 bits, joined into a string by src/fuse/libfuse.ts.
static void put_owner(struct rec *r, uint64_t owner) {
  put_num(r, (double)(owner >> 32));
  put_num(r, (double)(owner & 0xffffffffu));
}

static void put_fh(struct rec *r, struct fuse_file_info *fi, int *ok) {
  if (fi == NULL) put_undef(r);
  else *ok = *ok && put_u64(r, fi->fh);
}

// ---------------------------------------------------------------------------------------
// The low-level operations (loop thread). Each copies its arguments and posts them.

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  struct mnt *m = userdata;
  struct config *c = &m->cfg;
  if (c->max_write && c->max_write < conn->max_write) conn->max_write = c->max_write;
  conn->max_read = c->max_read;
  if (c->max_readahead && c->max_readahead < conn->max_readahead) conn->max_readahead = c->max_readahead;
  if (c->max_background) conn->max_background = c->max_background;
  if (c->congestion) conn->congestion_threshold = c->congestion;
  conn->time_gran = 1;
#define WANT(cond, cap) \
  do { \
    if ((cond) && (conn->capable & (cap))) conn->want |= (cap); \
    else conn->want &= ~(cap); \
  } while (0)
  WANT(c->writeback, FUSE_CAP_WRITEBACK_CACHE);
  WANT(c->posix_acl, FUSE_CAP_POSIX_ACL);
  WANT(c->export_support, FUSE_CAP_EXPORT_SUPPORT);
  WANT(c->dont_mask, FUSE_CAP_DONT_MASK);
  WANT(c->cache_symlinks, FUSE_CAP_CACHE_SYMLINKS);
  WANT(c->killpriv, FUSE_CAP_HANDLE_KILLPRIV);
  WANT(1, FUSE_CAP_ATOMIC_O_TRUNC);
  WANT(m->implemented[OP_READDIRPLUS], FUSE_CAP_READDIRPLUS);
  WANT(m->implemented[OP_READDIRPLUS] && m->implemented[OP_READDIR] && c->readdirplus_auto, FUSE_CAP_READDIRPLUS_AUTO);
  // Locks: kept by the filesystem (shared by every mount of it) instead of by this kernel
  // superblock alone. POSIX locks need getlk and setlk; flock(2) comes as setlk with
  // FUSE_LK_FLOCK, which libfuse hands to the flock op.
  WANT(m->implemented[OP_GETLK] && m->implemented[OP_SETLK], FUSE_CAP_POSIX_LOCKS);
  WANT(m->implemented[OP_FLOCK], FUSE_CAP_FLOCK_LOCKS);
  // ioctl on directories too (lsattr -d, chattr of a directory): without it libfuse answers
  // them ENOTTY itself.
  WANT(m->implemented[OP_IOCTL], FUSE_CAP_IOCTL_DIR);
  WANT(0, FUSE_CAP_SPLICE_READ);
  WANT(0, FUSE_CAP_SPLICE_WRITE);
  WANT(0, FUSE_CAP_SPLICE_MOVE);
#undef WANT
  struct rec *r = rec_new(NULL, OP_INIT);
  if (r == NULL) return;
  r->m = m;
  put_num(r, conn->proto_major);
  put_num(r, conn->proto_minor);
  put_num(r, conn->capable);
  put_num(r, conn->want);
  put_num(r, conn->max_write);
  put_num(r, conn->max_read);
  put_num(r, conn->max_readahead);
  put_num(r, conn->max_background);
  // libfuse fills in its default (3/4 of max_background) after init
  put_num(r, conn->congestion_threshold ? conn->congestion_threshold : conn->max_background * 3 / 4);
  put_num(r, conn->time_gran);
  post(r, 1, 0);
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  struct rec *r = rec_new(req, OP_LOOKUP);
  if (r == NULL) return;
  int ok = put_u64(r, parent);
  ok = ok && put_name(r, 0, name);
  post(r, ok, EIO);
}

static void post_forgets(fuse_req_t req, size_t count, struct fuse_forget_data *data) {
  struct mnt *m = fuse_req_userdata(req);
  fuse_reply_none(req);
  struct rec *r = rec_new(NULL, OP_FORGET);
  if (r == NULL) return;
  r->m = m;
  r->forgets = malloc(count * sizeof *data);
  if (r->forgets == NULL) {
    rec_free(r);
    return;
  }
  memcpy(r->forgets, data, count * sizeof *data);
  r->nforgets = count;
  post(r, 1, 0);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  struct fuse_forget_data d = {.ino = ino, .nlookup = nlookup};
  post_forgets(req, 1, &d);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  post_forgets(req, count, forgets);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct rec *r = rec_new(req, OP_GETATTR);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  post(r, ok, EIO);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  struct rec *r = rec_new(req, OP_SETATTR);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_num(r, to_set);
  put_num(r, attr->st_mode);
  put_num(r, attr->st_uid);
  put_num(r, attr->st_gid);
  if (to_set & FUSE_SET_ATTR_SIZE) {
    if (!put_i64(r, attr->st_size)) {
      post(r, 0, EFBIG);
      return;
    }
  } else {
    put_num(r, 0);
  }
  int tok = put_i64(r, attr->st_atim.tv_sec);
  put_num(r, attr->st_atim.tv_nsec);
  tok = tok && put_i64(r, attr->st_mtim.tv_sec);
  put_num(r, attr->st_mtim.tv_nsec);
  tok = tok && put_i64(r, attr->st_ctim.tv_sec);
  put_num(r, attr->st_ctim.tv_nsec);
  if (!tok) {
    post(r, 0, EINVAL);
    return;
  }
  put_fh(r, fi, &ok);
  post(r, ok, EIO);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  struct rec *r = rec_new(req, OP_READLINK);
  if (r == NULL) return;
  post(r, put_u64(r, ino), EIO);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  struct rec *r = rec_new(req, OP_MKNOD);
  if (r == NULL) return;
  int ok = put_u64(r, parent);
  ok = ok && put_name(r, 0, name);
  put_num(r, mode);
  ok = ok && put_u64(r, rdev);
  post(r, ok, EIO);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  struct rec *r = rec_new(req, OP_MKDIR);
  if (r == NULL) return;
  int ok = put_u64(r, parent);
  ok = ok && put_name(r, 0, name);
  put_num(r, mode);
  post(r, ok, EIO);
}

static void ll_unlink_like(fuse_req_t req, fuse_ino_t parent, const char *name, int op) {
  struct rec *r = rec_new(req, op);
  if (r == NULL) return;
  int ok = put_u64(r, parent);
  ok = ok && put_name(r, 0, name);
  post(r, ok, EIO);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  ll_unlink_like(req, parent, name, OP_UNLINK);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  ll_unlink_like(req, parent, name, OP_RMDIR);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  struct rec *r = rec_new(req, OP_SYMLINK);
  if (r == NULL) return;
  int ok = put_name(r, 1, link);
  ok = ok && put_u64(r, parent);
  ok = ok && put_name(r, 0, name);
  post(r, ok, EIO);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  struct rec *r = rec_new(req, OP_RENAME);
  if (r == NULL) return;
  int ok = put_u64(r, parent);
  ok = ok && put_name(r, 0, name);
  ok = ok && put_u64(r, newparent);
  ok = ok && put_name(r, 1, newname);
  put_num(r, flags);
  post(r, ok, EIO);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  struct rec *r = rec_new(req, OP_LINK);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  ok = ok && put_u64(r, newparent);
  ok = ok && put_name(r, 0, newname);
  post(r, ok, EIO);
}

static void ll_open_like(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op) {
  struct rec *r = rec_new(req, op);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_num(r, fi->flags);
  post(r, ok, EIO);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ll_open_like(req, ino, fi, OP_OPEN);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ll_open_like(req, ino, fi, OP_OPENDIR);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  if ((uint64_t)off > MAX_SAFE_U64) { // past the end of any file this binding can serve
    fuse_reply_buf(req, NULL, 0);
    return;
  }
  struct rec *r = rec_new(req, OP_READ);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  put_num(r, size);
  put_num(r, off);
  post(r, ok, EIO);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  if ((uint64_t)off > MAX_SAFE_U64 - size) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  struct rec *r = rec_new(req, OP_WRITE);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  ok = ok && put_bytes(r, 0, buf, size, 'W');
  put_num(r, off);
  put_num(r, fi->flags);
  put_bool(r, fi->writepage);
  post(r, ok, ok ? EIO : ENOMEM);
}

// Locks. A lock crosses as type, start, end (inclusive; -1: to the end of any file) and pid.
// A start beyond 2^53-1 is refused with EINVAL; an end beyond it is taken as "to the end".
static int put_lock(struct rec *r, const struct flock *l) {
  if (l->l_start < 0 || (uint64_t)l->l_start > MAX_SAFE_U64 || l->l_len < 0) return 0;
  put_num(r, l->l_type);
  put_num(r, (double)l->l_start);
  if (l->l_len == 0) put_num(r, -1);
  else if ((uint64_t)l->l_start + (uint64_t)l->l_len - 1 > MAX_SAFE_U64) put_num(r, -1);
  else put_num(r, (double)(l->l_start + l->l_len - 1));
  put_num(r, l->l_pid);
  return 1;
}

static _Atomic uint64_t g_lock_ids;

// FUSE_INTERRUPT of a lock request that waits (SETLKW, blocking flock): a signal, a killed
// waiter. Runs on whichever thread read the interrupt, with libfuse holding the request's lock
// (a reply meanwhile waits): posts an event naming the request by its id, never the record.
static void ll_interrupted(fuse_req_t req, void *data) {
  struct rec *r = rec_new(NULL, OP_INTERRUPT);
  if (r == NULL) return;
  r->m = fuse_req_userdata(req);
  put_num(r, (double)(uintptr_t)data);
  post(r, 1, 0);
}

// Posts a lock request that may wait; its interrupt callback is registered first (a request
// already interrupted calls it at once: JavaScript then sees the interrupt before the request).
static void post_waiting(fuse_req_t req, struct rec *r, int ok, int sleep) {
  uint64_t id = atomic_fetch_add(&g_lock_ids, 1) + 1;
  put_num(r, (double)id);
  if (ok && sleep) fuse_req_interrupt_func(req, ll_interrupted, (void *)(uintptr_t)id);
  post(r, ok, ok ? EIO : EINVAL);
}

static void ll_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock) {
  struct rec *r = rec_new(req, OP_GETLK);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  put_owner(r, fi->lock_owner);
  if (!put_lock(r, lock)) {
    post(r, 0, EINVAL);
    return;
  }
  post(r, ok, EIO);
}

static void ll_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock, int sleep) {
  struct rec *r = rec_new(req, OP_SETLK);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  put_owner(r, fi->lock_owner);
  if (!put_lock(r, lock)) {
    post(r, 0, EINVAL);
    return;
  }
  put_bool(r, sleep);
  // (before the request goes on: any flush of this owner's comes after it)
  if (lock->l_type != F_UNLCK) atomic_store(&((struct mnt *)fuse_req_userdata(req))->posix_used, 1);
  post_waiting(req, r, ok, sleep);
}

static void ll_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op) {
  struct rec *r = rec_new(req, OP_FLOCK);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  put_owner(r, fi->lock_owner);
  put_num(r, op);
  post_waiting(req, r, ok, !(op & LOCK_NB) && !(op & LOCK_UN));
}

static void ll_fh_op(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op) {
  struct rec *r = rec_new(req, op);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  if (op == OP_RELEASE) put_num(r, fi->flags);
  // the lock owner: flush's (POSIX locks of the closing process), release's with
  // FUSE_RELEASE_FLOCK_UNLOCK (the open file's flock); 'u' otherwise
  if (op == OP_FLUSH || (op == OP_RELEASE && fi->flock_release)) put_owner(r, fi->lock_owner);
  else if (op == OP_RELEASE) put_undef(r);
  post(r, ok, EIO);
}

// Every open is answered without noflush: a process may lock a file after opening it, and its
// close must then release the lock (a flush is the only word of a close that FUSE gives). While
// no POSIX lock was ever asked for through the mount, there is nothing to release, and the
// flush costs no trip to JavaScript.
static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct mnt *m = fuse_req_userdata(req);
  if (!atomic_load(&m->posix_used)) {
    if (m->stats) atomic_fetch_add(&m->st_loop[OP_FLUSH], 1);
    fuse_reply_err(req, 0);
    return;
  }
  ll_fh_op(req, ino, fi, OP_FLUSH);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ll_fh_op(req, ino, fi, OP_RELEASE);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ll_fh_op(req, ino, fi, OP_RELEASEDIR);
}

static void ll_sync_like(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi, int op) {
  struct rec *r = rec_new(req, op);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  put_bool(r, datasync);
  post(r, ok, EIO);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  ll_sync_like(req, ino, datasync, fi, OP_FSYNC);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  ll_sync_like(req, ino, datasync, fi, OP_FSYNCDIR);
}

static void ll_readdir_like(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi, int op) {
  if ((uint64_t)off > MAX_SAFE_U64) { // a cookie this binding never gave out: the end
    fuse_reply_buf(req, NULL, 0);
    return;
  }
  struct rec *r = rec_new(req, op);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  put_num(r, size);
  put_num(r, off);
  r->dirsize = size;
  post(r, ok, EIO);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_readdir_like(req, ino, size, off, fi, OP_READDIR);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_readdir_like(req, ino, size, off, fi, OP_READDIRPLUS);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  struct rec *r = rec_new(req, OP_STATFS);
  if (r == NULL) return;
  post(r, put_u64(r, ino), EIO);
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  struct rec *r = rec_new(req, OP_SETXATTR);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  ok = ok && put_name(r, 0, name);
  ok = ok && put_bytes(r, 1, value, size, '1');
  put_num(r, flags);
  post(r, ok, EIO);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  if (ino != 0 && strcmp(name, "security.capability") == 0) {
    struct mnt *m = fuse_req_userdata(req);
    if (atomic_load(&m->nocap[ino % NOCAP_SLOTS]) == ino) {
      if (m->stats) atomic_fetch_add(&m->st_loop[OP_GETXATTR], 1);
      fuse_reply_err(req, ENODATA);
      return;
    }
  }
  struct rec *r = rec_new(req, OP_GETXATTR);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  ok = ok && put_name(r, 0, name);
  put_num(r, size);
  post(r, ok, EIO);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  struct rec *r = rec_new(req, OP_LISTXATTR);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_num(r, size);
  post(r, ok, EIO);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  ll_unlink_like(req, ino, name, OP_REMOVEXATTR);
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  struct rec *r = rec_new(req, OP_ACCESS);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_num(r, mask);
  post(r, ok, EIO);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  struct rec *r = rec_new(req, OP_CREATE);
  if (r == NULL) return;
  int ok = put_u64(r, parent);
  ok = ok && put_name(r, 0, name);
  put_num(r, mode);
  put_num(r, fi->flags);
  post(r, ok, EIO);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
  if (offset < 0 || length <= 0 || (uint64_t)offset > MAX_SAFE_U64 - (uint64_t)length) {
    fuse_reply_err(req, offset < 0 || length <= 0 ? EINVAL : EFBIG);
    return;
  }
  struct rec *r = rec_new(req, OP_FALLOCATE);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  put_num(r, mode);
  put_num(r, offset);
  put_num(r, length);
  post(r, ok, EIO);
}

static void ll_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg, struct fuse_file_info *fi,
                     unsigned flags, const void *in_buf, size_t in_bufsz, size_t out_bufsz) {
  (void)arg;
  struct mnt *m = fuse_req_userdata(req);
  if (!m->implemented[OP_IOCTL]) {
    fuse_reply_err(req, ENOTTY);
    return;
  }
  struct rec *r = rec_new(req, OP_IOCTL);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  put_num(r, cmd);
  put_num(r, flags);
  ok = ok && put_bytes(r, 0, in_buf, in_buf ? in_bufsz : 0, '0');
  put_num(r, out_bufsz);
  post(r, ok, EIO);
}

static void ll_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
  if (off < 0 || (uint64_t)off > MAX_SAFE_U64) { // past the end of any file this binding serves
    fuse_reply_err(req, off < 0 ? EINVAL : ENXIO);
    return;
  }
  struct rec *r = rec_new(req, OP_LSEEK);
  if (r == NULL) return;
  int ok = put_u64(r, ino);
  put_fh(r, fi, &ok);
  put_num(r, off);
  put_num(r, whence);
  post(r, ok, EIO);
}

static void ll_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in,
                               fuse_ino_t ino_out, off_t off_out, struct fuse_file_info *fi_out, size_t len, int flags) {
  if ((uint64_t)off_in > MAX_SAFE_U64 || (uint64_t)off_out > MAX_SAFE_U64 - len) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  struct rec *r = rec_new(req, OP_COPY_FILE_RANGE);
  if (r == NULL) return;
  int ok = put_u64(r, ino_in);
  put_fh(r, fi_in, &ok);
  put_num(r, off_in);
  ok = ok && put_u64(r, ino_out);
  put_fh(r, fi_out, &ok);
  put_num(r, off_out);
  put_num(r, len);
  put_num(r, flags);
  post(r, ok, EIO);
}

// ---------------------------------------------------------------------------------------
// Main thread: handing records to JavaScript.

static void pending_add(struct mnt *m, struct rec *r) {
  r->next = m->pending.next;
  r->prev = &m->pending;
  m->pending.next->prev = r;
  m->pending.next = r;
}

static void pending_del(struct rec *r) {
  if (r->next == NULL) return;
  r->prev->next = r->next;
  r->next->prev = r->prev;
  r->next = r->prev = NULL;
}

// A request handle that JavaScript dropped without answering: answered EIO here.
static void rec_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct rec *r = data;
  if (r->state == ST_PENDING) {
    fuse_reply_err(r->req, EIO);
    r->state = ST_REPLIED;
    pending_del(r);
  }
  rec_free(r);
}

static void write_buf_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void free_note(struct note *n) {
  free(n->name);
  free(n);
}

static void g_del(struct mnt *m) {
  if (m->gnext == NULL) return;
  m->gprev->gnext = m->gnext;
  m->gnext->gprev = m->gprev;
  m->gnext = m->gprev = NULL;
}

static void mnt_free(struct mnt *m) {
  g_del(m);
  if (m->leaked) return;
  free(m->mountpoint);
  free(m->options);
  pthread_mutex_destroy(&m->note_lock);
  pthread_cond_destroy(&m->note_cond);
  pthread_mutex_destroy(&m->hand_lock);
  pthread_cond_destroy(&m->hand_cond);
  free(m->mbuf.mem);
  free(m);
}

// The loop has ended (unmounted, aborted, or failed): answer what is still open, stop the
// notification thread, release the device and the session. Requests still open are answered
// first, since a notification in progress may be waiting in the kernel for one of them.
static void print_stats(struct mnt *m) {
  uint64_t n = 0, w = 0, j = 0, l = 0;
  fprintf(stderr, "prism fuse stats %s: op, answered by JavaScript, mean us read->answered, mean us in the JS call; answered by the binding itself\n", m->mountpoint);
  for (int i = 0; i < OP_COUNT; i++) {
    uint64_t loop = atomic_load(&m->st_loop[i]);
    if (m->st_count[i] == 0 && loop == 0) continue;
    uint64_t c = m->st_count[i] ? m->st_count[i] : 1;
    fprintf(stderr, "  %-14s %9llu %8.1f %8.1f %9llu\n", OP_NAMES[i], (unsigned long long)m->st_count[i],
            m->st_wait_ns[i] / 1e3 / c, m->st_js_ns[i] / 1e3 / c, (unsigned long long)loop);
    n += m->st_count[i];
    w += m->st_wait_ns[i];
    j += m->st_js_ns[i];
    l += loop;
  }
  fprintf(stderr, "  %-14s %9llu %8.1f %8.1f %9llu\n", "all", (unsigned long long)n, n ? w / 1e3 / n : 0, n ? j / 1e3 / n : 0, (unsigned long long)l);
  fprintf(stderr, "  read by the main thread itself: %llu\n", (unsigned long long)m->st_direct);
}

static void finish_mount(struct mnt *m) {
  if (m->loop_started) pthread_join(m->loop_thread, NULL);
  if (m->stats) print_stats(m);
  m->loop_started = 0;
  fuse_session_exit(m->se); // replies to a dead connection are dropped quietly
  while (m->pending.next != &m->pending) {
    struct rec *r = m->pending.next;
    fuse_reply_err(r->req, EIO);
    r->state = ST_CANCELLED;
    pending_del(r);
  }
  int stuck = 0;
  if (m->note_started) {
    pthread_mutex_lock(&m->note_lock);
    m->note_stop = 1;
    pthread_cond_signal(&m->note_cond);
    pthread_mutex_unlock(&m->note_lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    if (pthread_timedjoin_np(m->note_thread, NULL, &until) != 0) {
      // A notification the kernel still holds (the loop died with the connection alive and
      // requests unread): keep the device open rather than let the thread write to a
      // closed descriptor. The session and the device are leaked; the mount is dead.
      stuck = 1;
      pthread_detach(m->note_thread);
      fprintf(stderr, "prism: libfuse: a cache notification did not finish; leaving %s to be unmounted\n", m->mountpoint);
    }
    m->note_started = 0;
  }
  if (!stuck) {
    for (struct note *n = m->note_head, *next; n != NULL; n = next) {
      next = n->next;
      free_note(n);
    }
    m->note_head = m->note_tail = NULL;
    fuse_session_unmount(m->se); // closes the device; lazily unmounts if still mounted
    fuse_session_destroy(m->se);
    m->se = NULL;
  }
  m->state = M_CLOSED;
  m->leaked = stuck;
  g_del(m);
}

static napi_value num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

// Hands one record to JavaScript. Returns 1 when it is done with (an event, or a request
// answered during the call), 0 when a request is left to be answered later or the dispatcher
// threw (the exception is pending: nothing more may be called before returning to Node).
static int dispatch(napi_env env, napi_value js_cb, struct rec *r) {
  napi_value undef, argv[6 + MAXARGS];
  napi_get_undefined(env, &undef);
  if (r->op == OP_FORGET) {
    for (size_t i = 0; i < r->nforgets; i++) {
      if (r->forgets[i].ino > MAX_SAFE_U64) continue;
      napi_value a[8] = {num(env, OP_FORGET), undef, num(env, 0), num(env, 0), num(env, 0), num(env, 0),
                         num(env, (double)r->forgets[i].ino), num(env, (double)r->forgets[i].nlookup)};
      if (napi_call_function(env, undef, js_cb, 8, a, NULL) != napi_ok) {
        rec_free(r);
        return 0;
      }
    }
    rec_free(r);
    return 1;
  }
  struct mnt *m = r->m;
  int is_request = r->req != NULL;
  if (r->op == OP_END) finish_mount(m);
  argv[0] = num(env, r->op);
  argv[1] = undef;
  if (is_request) {
    if (napi_create_external(env, r, rec_finalize, NULL, &argv[1]) != napi_ok) {
      fuse_reply_err(r->req, EIO);
      rec_free(r);
      return 0;
    }
    r->state = ST_PENDING;
    pending_add(m, r);
  }
  argv[2] = num(env, r->uid);
  argv[3] = num(env, r->gid);
  argv[4] = num(env, r->pid);
  argv[5] = num(env, r->umask);
  for (int i = 0; i < r->nargs; i++) {
    napi_value *v = &argv[6 + i];
    switch (r->kind[i]) {
    case 'n': *v = num(env, r->num[i]); break;
    case 'b': napi_get_boolean(env, r->num[i] != 0, v); break;
    case '0':
    case '1': {
      int s = r->kind[i] - '0';
      void *unused;
      napi_create_buffer_copy(env, r->len[s], r->buf[s], &unused, v);
      break;
    }
    case 'W':
      if (napi_create_external_buffer(env, r->len[0], r->buf[0], write_buf_finalize, NULL, v) == napi_ok) {
        r->buf[0] = NULL;
      } else {
        void *unused;
        napi_create_buffer_copy(env, r->len[0], r->buf[0], &unused, v);
      }
      break;
    default: *v = undef;
    }
  }
  free(r->buf[0]);
  free(r->buf[1]);
  r->buf[0] = r->buf[1] = NULL;
  uint64_t t1 = m->stats ? now_ns() : 0;
  napi_status st = napi_call_function(env, undef, js_cb, 6 + r->nargs, argv, NULL);
  if (m->stats) m->st_js_ns[r->op] += now_ns() - t1;
  if (is_request) {
    if (st != napi_ok && r->state == ST_PENDING) { // the dispatcher threw before answering
      fuse_reply_err(r->req, EIO);
      r->state = ST_REPLIED;
      pending_del(r);
    }
    // freed by rec_finalize, which cannot run before the caller's handle scope closes
    return st == napi_ok && r->state != ST_PENDING;
  }
  if (r->op == OP_END) {
    napi_release_threadsafe_function(m->tsfn, napi_tsfn_release);
    if (m->js_released) mnt_free(m);
  }
  rec_free(r);
  return st == napi_ok;
}

// The main thread reads requests itself (see struct mnt: direct reads), as long as each is
// answered during its call and one follows within DIRECT_IDLE_NS, for DIRECT_BUDGET_NS at
// most. A request whose answer waits (a promise) ends it at once, so that the event loop can
// run what it waits for. Any trouble with the device (the session ending) is left to the loop
// thread, which reads on once this returns.
// Whether a CPU is to spare for the busy poll (see DIRECT_SPIN_US).
static int spare_cpu(void) {
  static uint64_t checked_ns;
  static int spare = 1;
  uint64_t now = now_ns();
  if (now - checked_ns >= 1000000000ULL) {
    checked_ns = now;
    double load[1];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    spare = getloadavg(load, 1) == 1 && cpus > 0 ? load[0] < (double)cpus - 0.5 : 0;
  }
  return spare;
}

// FUSE_TMPFILE (opcode 51: open with O_TMPFILE, Linux 6.11 and later) reaches libfuse only
// from 3.17; 3.14 would answer ENOSYS, and the kernel would fail every O_TMPFILE with
// EOPNOTSUPP. Its request is a FUSE_CREATE's (fuse_create_in, then the name "/", which no
// directory entry can have) and so is its reply (an entry, then an open), so it is handed to
// libfuse as a create: src/fuse/libfuse.ts takes a create of "/" for a tmpfile.
#define PRISM_FUSE_CREATE 35
#define PRISM_FUSE_TMPFILE 51
static void tmpfile_as_create(struct fuse_buf *b) {
  if ((b->flags & FUSE_BUF_IS_FD) || b->mem == NULL || b->size < 40) return; // (fuse_in_header: 40 bytes)
  uint32_t opcode;
  memcpy(&opcode, (char *)b->mem + 4, sizeof opcode);
  if (opcode != PRISM_FUSE_TMPFILE) return;
  opcode = PRISM_FUSE_CREATE;
  memcpy((char *)b->mem + 4, &opcode, sizeof opcode);
}

static void direct_phase(napi_env env, napi_value js_cb, struct mnt *m) {
  if (m->state != M_RUNNING || m->se == NULL) return;
  int fd = fuse_session_fd(m->se);
  uint64_t deadline = now_ns() + DIRECT_BUDGET_NS;
  for (;;) {
    uint64_t now = now_ns();
    if (now >= deadline || fuse_session_exited(m->se) || atomic_load(&g_exiting)) return;
    uint64_t wait = deadline - now < DIRECT_IDLE_NS ? deadline - now : DIRECT_IDLE_NS;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    // first a busy poll, if asked for: the next request of a process that works through many
    // files usually comes within microseconds, and a thread asleep takes longer to wake
    int n = 0;
    for (uint64_t until = now + (m->spin_ns && spare_cpu() ? m->spin_ns : 0); n == 0 && now_ns() < until;) {
      struct timespec zero = {0, 0};
      n = ppoll(&p, 1, &zero, NULL);
      if (n < 0 && errno == EINTR) n = 0;
    }
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)wait};
    if (n == 0) n = ppoll(&p, 1, &ts, NULL);
    if (n == 0) return;
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p.revents & ~POLLIN) return;
    int res = fuse_session_receive_buf(m->se, &m->mbuf);
    if (res == -EAGAIN || res == -EINTR) continue;
    if (res <= 0) return;
    tl_direct = m;
    tmpfile_as_create(&m->mbuf);
    fuse_session_process_buf(m->se, &m->mbuf);
    tl_direct = NULL;
    int go_on = 1;
    while (m->dq_head != NULL) {
      struct rec *r = m->dq_head;
      m->dq_head = r->qnext;
      if (m->dq_head == NULL) m->dq_tail = NULL;
      if (m->stats) m->st_direct++;
      if (!go_on) { // cannot happen (one record per request); answered rather than lost
        if (r->req != NULL) fuse_reply_err(r->req, EIO);
        rec_free(r);
        continue;
      }
      napi_handle_scope scope;
      if (napi_open_handle_scope(env, &scope) != napi_ok) {
        if (r->req != NULL) fuse_reply_err(r->req, EIO);
        rec_free(r);
        go_on = 0;
        continue;
      }
      go_on = dispatch(env, js_cb, r);
      napi_close_handle_scope(env, scope);
    }
    if (!go_on) return;
  }
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  struct rec *r = data;
  struct mnt *m = r->m;
  int handoff = r->handoff;
  if (r->counted) atomic_fetch_sub(&g_queued, 1);
  if (env == NULL) { // the environment is going away
    if (r->req != NULL && r->state == ST_QUEUED) fuse_reply_err(r->req, EIO);
    rec_free(r);
    if (handoff) release_loop(m);
    return;
  }
  int done = dispatch(env, js_cb, r);
  if (handoff) {
    if (done) direct_phase(env, js_cb, m);
    release_loop(m);
  }
}

// ---------------------------------------------------------------------------------------
// Threads: the session loop and the notifications.

// Waits while the main thread reads the device (a request this thread handed it is pending).
static void wait_handoff(struct mnt *m) {
  pthread_mutex_lock(&m->hand_lock);
  while (m->handoff && !atomic_load(&g_exiting)) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 50000000;
    if (until.tv_nsec >= 1000000000) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&m->hand_cond, &m->hand_lock, &until);
  }
  pthread_mutex_unlock(&m->hand_lock);
}

// libfuse's fuse_session_loop, with the device non-blocking when the main thread may read it
// too (a request can be withdrawn between poll and read), and a pause after each request
// handed to the main thread until it is done reading.
static int session_loop(struct mnt *m) {
  struct fuse_session *se = m->se;
  int fd = fuse_session_fd(se);
  struct fuse_buf buf = {.mem = NULL};
  int res = 0;
  if (m->direct) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) m->direct = 0;
  }
  tl_loop = m;
  while (!fuse_session_exited(se)) {
    if (m->direct) {
      struct pollfd p = {.fd = fd, .events = POLLIN};
      if (poll(&p, 1, -1) < 0 && errno != EINTR) {
        res = -errno;
        break;
      }
    }
    res = fuse_session_receive_buf(se, &buf);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) break;
    tmpfile_as_create(&buf);
    fuse_session_process_buf(se, &buf);
    wait_handoff(m);
  }
  free(buf.mem);
  if (res > 0) res = 0;
  fuse_session_reset(se);
  return res;
}

static void *loop_main(void *arg) {
  struct mnt *m = arg;
  int res = session_loop(m);
  if (atomic_load(&g_exiting)) return NULL;
  struct rec *r = rec_new(NULL, OP_END);
  if (r == NULL) abort(); // without this record the mount can never be finished
  r->m = m;
  put_num(r, res);
  if (napi_call_threadsafe_function(m->tsfn, r, napi_tsfn_blocking) != napi_ok) rec_free(r);
  return NULL;
}

static void *note_main(void *arg) {
  struct mnt *m = arg;
  for (;;) {
    pthread_mutex_lock(&m->note_lock);
    while (!m->note_stop && m->note_head == NULL) pthread_cond_wait(&m->note_cond, &m->note_lock);
    if (m->note_stop) {
      pthread_mutex_unlock(&m->note_lock);
      return NULL;
    }
    struct note *n = m->note_head;
    m->note_head = n->next;
    if (m->note_head == NULL) m->note_tail = NULL;
    pthread_mutex_unlock(&m->note_lock);
    int res;
    switch (n->kind) {
    case 0: res = fuse_lowlevel_notify_inval_inode(m->se, n->a, n->off, n->len); break;
    case 1: res = fuse_lowlevel_notify_inval_entry(m->se, n->a, n->name, n->namelen); break;
    case 2: res = fuse_lowlevel_notify_delete(m->se, n->a, n->b, n->name, n->namelen); break;
    default: res = fuse_lowlevel_notify_expire_entry(m->se, n->a, n->name, n->namelen, FUSE_LL_EXPIRE_ONLY); break;
    }
    struct rec *r = rec_new(NULL, OP_NOTIFY_DONE);
    if (r != NULL) {
      r->m = m;
      put_num(r, n->id);
      put_num(r, res);
      if (atomic_load(&g_exiting) || napi_call_threadsafe_function(m->tsfn, r, napi_tsfn_nonblocking) != napi_ok) rec_free(r);
    }
    free_note(n);
  }
}

static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); // signals stay with Node's threads
  int e = pthread_create(t, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return e;
}

// At exit() (process.exit) with mounts still up: detach them, so that no dead mount is left
// behind. With writeback caching the kernel would write dirty pages back during the detach,
// to a server that can no longer answer, so those mounts are left for prism umount.
static void at_exit(void) {
  atomic_store(&g_exiting, 1);
  for (struct mnt *m = g_mounts.gnext; m != &g_mounts; m = m->gnext) {
    if (m->state == M_RUNNING && !m->cfg.writeback && m->mountpoint) umount2(m->mountpoint, MNT_DETACH);
  }
}

// ---------------------------------------------------------------------------------------
// N-API helpers.

#define CHECK(call) \
  do { \
    if ((call) != napi_ok) return throw_last(env); \
  } while (0)

static napi_value throw_last(napi_env env) {
  const napi_extended_error_info *info;
  bool pending;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    napi_get_last_error_info(env, &info);
    napi_throw_error(env, "EFUSE", info && info->error_message ? info->error_message : "N-API call failed");
  }
  return NULL;
}

static napi_value throw_range(napi_env env, const char *what) {
  char msg[160];
  snprintf(msg, sizeof msg, "prism fuse: %s", what);
  napi_throw_range_error(env, "ERANGE", msg);
  return NULL;
}

static int get_double(napi_env env, napi_value v, double *out) {
  return napi_get_value_double(env, v, out) == napi_ok;
}

static int get_bool_prop(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  bool b = false;
  if (napi_get_named_property(env, obj, name, &v) == napi_ok) napi_get_value_bool(env, v, &b);
  return b;
}

static unsigned get_uint_prop(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  uint32_t u = 0;
  if (napi_get_named_property(env, obj, name, &v) == napi_ok) napi_get_value_uint32(env, v, &u);
  return u;
}

static char *get_string(napi_env env, napi_value v) {
  size_t n;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) return NULL;
  char *s = malloc(n + 1);
  if (s == NULL) return NULL;
  napi_get_value_string_utf8(env, v, s, n + 1, &n);
  return s;
}

// an integer in [lo, hi], exactly representable
static int int_in(double v, double lo, double hi) {
  return v >= lo && v <= hi && v == floor(v);
}

static struct instance *get_instance(napi_env env) {
  struct instance *inst = NULL;
  napi_get_instance_data(env, (void **)&inst);
  return inst;
}

// The request behind a handle. Sets *cancelled (the session ended: the reply is dropped) or
// throws when the handle is not a request or was answered already.
static struct rec *get_rec(napi_env env, napi_value v, int *cancelled) {
  napi_valuetype t;
  struct rec *r = NULL;
  *cancelled = 0;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, (void **)&r) != napi_ok ||
      r == NULL || r->magic != REC_MAGIC) {
    napi_throw_type_error(env, "EINVAL", "prism fuse: not a request handle");
    return NULL;
  }
  if (r->state == ST_CANCELLED) {
    *cancelled = 1;
    return NULL;
  }
  if (r->state != ST_PENDING) {
    char msg[96];
    snprintf(msg, sizeof msg, "prism fuse: the %s request was answered already", OP_NAMES[r->op]);
    napi_throw_error(env, "EALREADY", msg);
    return NULL;
  }
  return r;
}

static void mark_replied(struct rec *r) {
  if (r->m->stats) {
    r->m->st_count[r->op]++;
    r->m->st_wait_ns[r->op] += now_ns() - r->t0;
  }
  r->state = ST_REPLIED;
  pending_del(r);
  free(r->dir);
  r->dir = NULL;
}

// Scratch slots (a Float64Array shared with src/fuse/session.ts) for attributes, entries and statfs.
enum {
  SC_INO, SC_MODE, SC_NLINK, SC_UID, SC_GID, SC_RDEV, SC_SIZE, SC_BLOCKS, SC_BLKSIZE,
  SC_ATIME, SC_ATIME_NS, SC_MTIME, SC_MTIME_NS, SC_CTIME, SC_CTIME_NS,
  SC_NODEID, SC_GENERATION, SC_ATTR_TIMEOUT, SC_ENTRY_TIMEOUT, SC_DIR_OFF, SC_COUNT
};

static int read_attr(napi_env env, struct stat *st) {
  struct instance *inst = get_instance(env);
  double *s = inst ? inst->scratch : NULL;
  if (s == NULL) {
    throw_range(env, "scratch array not set");
    return 0;
  }
  memset(st, 0, sizeof *st);
  const char *bad = NULL;
  if (!int_in(s[SC_INO], 0, MAX_SAFE)) bad = "attr.ino";
  else if (!int_in(s[SC_MODE], 0, 0xffffffff)) bad = "attr.mode";
  else if (!int_in(s[SC_NLINK], 0, 0xffffffff)) bad = "attr.nlink";
  else if (!int_in(s[SC_UID], 0, 0xffffffff)) bad = "attr.uid";
  else if (!int_in(s[SC_GID], 0, 0xffffffff)) bad = "attr.gid";
  else if (!int_in(s[SC_RDEV], 0, MAX_SAFE)) bad = "attr.rdev";
  else if (!int_in(s[SC_SIZE], 0, MAX_SAFE)) bad = "attr.size";
  else if (!int_in(s[SC_BLOCKS], 0, MAX_SAFE)) bad = "attr.blocks";
  else if (!int_in(s[SC_BLKSIZE], 0, 0x7fffffff)) bad = "attr.blksize";
  else if (!int_in(s[SC_ATIME], -MAX_SAFE, MAX_SAFE) || !int_in(s[SC_ATIME_NS], 0, 999999999)) bad = "attr.atime";
  else if (!int_in(s[SC_MTIME], -MAX_SAFE, MAX_SAFE) || !int_in(s[SC_MTIME_NS], 0, 999999999)) bad = "attr.mtime";
  else if (!int_in(s[SC_CTIME], -MAX_SAFE, MAX_SAFE) || !int_in(s[SC_CTIME_NS], 0, 999999999)) bad = "attr.ctime";
  if (bad != NULL) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s is not a valid value", bad);
    throw_range(env, msg);
    return 0;
  }
  st->st_ino = (ino_t)s[SC_INO];
  st->st_mode = (mode_t)s[SC_MODE];
  st->st_nlink = (nlink_t)s[SC_NLINK];
  st->st_uid = (uid_t)s[SC_UID];
  st->st_gid = (gid_t)s[SC_GID];
  st->st_rdev = (dev_t)s[SC_RDEV];
  st->st_size = (off_t)s[SC_SIZE];
  st->st_blocks = (blkcnt_t)s[SC_BLOCKS];
  st->st_blksize = (blksize_t)s[SC_BLKSIZE];
  st->st_atim.tv_sec = (time_t)s[SC_ATIME];
  st->st_atim.tv_nsec = (long)s[SC_ATIME_NS];
  st->st_mtim.tv_sec = (time_t)s[SC_MTIME];
  st->st_mtim.tv_nsec = (long)s[SC_MTIME_NS];
  st->st_ctim.tv_sec = (time_t)s[SC_CTIME];
  st->st_ctim.tv_nsec = (long)s[SC_CTIME_NS];
  return 1;
}

static int read_entry(napi_env env, struct fuse_entry_param *e, int with_attr) {
  struct instance *inst = get_instance(env);
  double *s = inst ? inst->scratch : NULL;
  memset(e, 0, sizeof *e);
  if (s == NULL) {
    throw_range(env, "scratch array not set");
    return 0;
  }
  if (!int_in(s[SC_NODEID], 0, MAX_SAFE)) return throw_range(env, "entry.ino is not a valid value") != NULL;
  if (!int_in(s[SC_GENERATION], 0, MAX_SAFE)) return throw_range(env, "entry.generation is not a valid value") != NULL;
  if (!(s[SC_ATTR_TIMEOUT] >= 0) || !(s[SC_ENTRY_TIMEOUT] >= 0)) return throw_range(env, "a timeout is negative or not a number") != NULL;
  e->ino = (fuse_ino_t)s[SC_NODEID];
  e->generation = (uint64_t)s[SC_GENERATION];
  e->attr_timeout = s[SC_ATTR_TIMEOUT];
  e->entry_timeout = s[SC_ENTRY_TIMEOUT];
  if (with_attr && e->ino != 0) return read_attr(env, &e->attr);
  return 1;
}

static napi_value result(napi_env env, int res) {
  return num(env, res);
}

// Functions taking (req, ...): each answers the request once and returns libfuse's result
// (0, or -errno when the kernel no longer waits for it, e.g. -ENOENT after an interrupt), or
// -ECANCELED when the session had already ended and the reply was dropped.
#define REQ_ARGS(n) \
  size_t argc = n; \
  napi_value argv[n > 0 ? n : 1]; \
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL)); \
  if (argc < 1) return throw_range(env, "missing request handle"); \
  int cancelled; \
  struct rec *r = get_rec(env, argv[0], &cancelled); \
  if (cancelled) return result(env, -ECANCELED); \
  if (r == NULL) return NULL;

static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  REQ_ARGS(2);
  double e = 0;
  if (argc < 2 || !get_double(env, argv[1], &e) || !int_in(e, 0, 4095)) return throw_range(env, "errno must be an integer 0..4095");
  int res = fuse_reply_err(r->req, (int)e);
  mark_replied(r);
  return result(env, res);
}

static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  REQ_ARGS(1);
  struct fuse_entry_param e;
  if (!read_entry(env, &e, 1)) return NULL;
  int res = fuse_reply_entry(r->req, &e);
  mark_replied(r);
  return result(env, res);
}

static int read_open(napi_env env, napi_value fhv, napi_value flagsv, struct fuse_file_info *fi) {
  double fh = 0, flags = 0;
  memset(fi, 0, sizeof *fi);
  if (!get_double(env, fhv, &fh) || !int_in(fh, 0, MAX_SAFE)) return throw_range(env, "fh must be an integer 0..2^53-1") != NULL;
  get_double(env, flagsv, &flags);
  unsigned f = (unsigned)flags;
  fi->fh = (uint64_t)fh;
  fi->direct_io = !!(f & 1);
  fi->keep_cache = !!(f & 2);
  fi->nonseekable = !!(f & 4);
  fi->cache_readdir = !!(f & 8);
  fi->noflush = !!(f & 16);
  return 1;
}

static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  REQ_ARGS(3);
  struct fuse_entry_param e;
  struct fuse_file_info fi;
  if (argc < 3 || !read_open(env, argv[1], argv[2], &fi) || !read_entry(env, &e, 1)) return NULL;
  int res = fuse_reply_create(r->req, &e, &fi);
  mark_replied(r);
  return result(env, res);
}

static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  REQ_ARGS(2);
  struct stat st;
  double timeout = 0;
  if (argc < 2 || !get_double(env, argv[1], &timeout) || !(timeout >= 0)) return throw_range(env, "attribute timeout must be >= 0");
  if (!read_attr(env, &st)) return NULL;
  int res = fuse_reply_attr(r->req, &st, timeout);
  mark_replied(r);
  return result(env, res);
}

static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  REQ_ARGS(3);
  struct fuse_file_info fi;
  if (argc < 3 || !read_open(env, argv[1], argv[2], &fi)) return NULL;
  int res = fuse_reply_open(r->req, &fi);
  mark_replied(r);
  return result(env, res);
}

static int get_buffer(napi_env env, napi_value v, char **data, size_t *len) {
  bool is;
  *data = NULL;
  *len = 0;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is) return 0;
  return napi_get_buffer_info(env, v, (void **)data, len) == napi_ok;
}

static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  REQ_ARGS(2);
  char *data;
  size_t len;
  if (argc < 2 || !get_buffer(env, argv[1], &data, &len)) return throw_range(env, "reply data must be a Buffer");
  int res = fuse_reply_buf(r->req, data, len);
  mark_replied(r);
  return result(env, res);
}

// readlink: the target's bytes (no NUL inside) are sent NUL-terminated
static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  REQ_ARGS(2);
  char *data;
  size_t len;
  if (argc < 2 || !get_buffer(env, argv[1], &data, &len)) return throw_range(env, "a symlink target must be a Buffer");
  if (len == 0 || memchr(data, 0, len) != NULL) return throw_range(env, "a symlink target must be non-empty and hold no NUL byte");
  char *s = malloc(len + 1);
  if (s == NULL) return throw_range(env, "out of memory");
  memcpy(s, data, len);
  s[len] = 0;
  int res = fuse_reply_readlink(r->req, s);
  free(s);
  mark_replied(r);
  return result(env, res);
}

static napi_value js_reply_count(napi_env env, napi_callback_info info, int which) {
  REQ_ARGS(2);
  double n = 0;
  if (argc < 2 || !get_double(env, argv[1], &n) || !int_in(n, 0, MAX_SAFE)) return throw_range(env, "count must be an integer 0..2^53-1");
  int res = which == 0 ? fuse_reply_write(r->req, (size_t)n) : which == 1 ? fuse_reply_xattr(r->req, (size_t)n) : fuse_reply_lseek(r->req, (off_t)n);
  mark_replied(r);
  return result(env, res);
}

static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  return js_reply_count(env, info, 0);
}

static napi_value js_reply_xattr(napi_env env, napi_callback_info info) {
  return js_reply_count(env, info, 1);
}

static napi_value js_reply_lseek(napi_env env, napi_callback_info info) {
  return js_reply_count(env, info, 2);
}

// (req, type, start, end, pid): end -1 is "to the end of the file"
static napi_value js_reply_lock(napi_env env, napi_callback_info info) {
  REQ_ARGS(5);
  double t = 0, start = 0, end = 0, pid = 0;
  if (argc < 5 || !get_double(env, argv[1], &t) || !get_double(env, argv[2], &start) || !get_double(env, argv[3], &end) ||
      !get_double(env, argv[4], &pid) || !int_in(t, 0, 2) || !int_in(start, 0, MAX_SAFE) || !int_in(end, -1, MAX_SAFE) ||
      (end >= 0 && end < start) || !int_in(pid, 0, 2147483647.0))
    return throw_range(env, "lock must be type 0..2, 0 <= start <= end (or -1), pid");
  struct flock l;
  memset(&l, 0, sizeof l);
  l.l_type = (short)t;
  l.l_whence = SEEK_SET;
  l.l_start = (off_t)start;
  l.l_len = end < 0 ? 0 : (off_t)(end - start + 1);
  l.l_pid = (pid_t)pid;
  int res = fuse_reply_lock(r->req, &l);
  mark_replied(r);
  return result(env, res);
}

static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  REQ_ARGS(1);
  struct instance *inst = get_instance(env);
  double *s = inst ? inst->scratch : NULL;
  if (s == NULL) return throw_range(env, "scratch array not set");
  for (int i = 0; i < 11; i++)
    if (!int_in(s[i], 0, MAX_SAFE)) return throw_range(env, "statfs values must be integers 0..2^53-1");
  struct statvfs v;
  memset(&v, 0, sizeof v);
  v.f_bsize = (unsigned long)s[0];
  v.f_frsize = (unsigned long)s[1];
  v.f_blocks = (fsblkcnt_t)s[2];
  v.f_bfree = (fsblkcnt_t)s[3];
  v.f_bavail = (fsblkcnt_t)s[4];
  v.f_files = (fsfilcnt_t)s[5];
  v.f_ffree = (fsfilcnt_t)s[6];
  v.f_favail = (fsfilcnt_t)s[7];
  v.f_fsid = (unsigned long)s[8];
  v.f_flag = (unsigned long)s[9];
  v.f_namemax = (unsigned long)s[10];
  int res = fuse_reply_statfs(r->req, &v);
  mark_replied(r);
  return result(env, res);
}

static napi_value js_reply_ioctl(napi_env env, napi_callback_info info) {
  REQ_ARGS(3);
  double res_v = 0;
  char *data = NULL;
  size_t len = 0;
  if (argc < 3 || !get_double(env, argv[1], &res_v) || !int_in(res_v, -2147483648.0, 2147483647.0)) return throw_range(env, "ioctl result must be an int");
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t != napi_undefined && t != napi_null && !get_buffer(env, argv[2], &data, &len)) return throw_range(env, "ioctl data must be a Buffer");
  int res = fuse_reply_ioctl(r->req, (int)res_v, data, len);
  mark_replied(r);
  return result(env, res);
}

// dirAdd(req, name): adds one entry to a readdir/readdirplus reply (attributes and the next
// offset from the scratch array); false when it does not fit, and nothing was added.
static napi_value js_dir_add(napi_env env, napi_callback_info info) {
  REQ_ARGS(2);
  if (r->op != OP_READDIR && r->op != OP_READDIRPLUS) return throw_range(env, "dirAdd on a request that is not readdir");
  char *data;
  size_t len;
  if (argc < 2 || !get_buffer(env, argv[1], &data, &len)) return throw_range(env, "a name must be a Buffer");
  if (len == 0 || len > 1024 || memchr(data, 0, len) != NULL || memchr(data, '/', len) != NULL)
    return throw_range(env, "a directory entry name must be 1..1024 bytes without NUL or '/'");
  struct instance *inst = get_instance(env);
  double *s = inst ? inst->scratch : NULL;
  if (s == NULL) return throw_range(env, "scratch array not set");
  if (!int_in(s[SC_DIR_OFF], 1, MAX_SAFE)) return throw_range(env, "a directory entry's next offset must be an integer 1..2^53-1");
  if (r->dir == NULL) {
    r->dir = malloc(r->dirsize ? r->dirsize : 1);
    if (r->dir == NULL) return throw_range(env, "out of memory");
    r->dirlen = 0;
  }
  char name[1025];
  memcpy(name, data, len);
  name[len] = 0;
  size_t room = r->dirsize - r->dirlen, need;
  off_t off = (off_t)s[SC_DIR_OFF];
  if (r->op == OP_READDIRPLUS) {
    struct fuse_entry_param e;
    if (!read_entry(env, &e, 0)) return NULL;
    // an entry without a node id (".", "..", or one the filesystem does not want to
    // instantiate) still needs its inode number and type
    if (!read_attr(env, &e.attr)) return NULL;
    need = fuse_add_direntry_plus(r->req, r->dir + r->dirlen, room, name, &e, off);
  } else {
    struct stat st;
    memset(&st, 0, sizeof st);
    if (!int_in(s[SC_INO], 0, MAX_SAFE) || !int_in(s[SC_MODE], 0, 0xffffffff)) return throw_range(env, "entry ino/mode invalid");
    st.st_ino = (ino_t)s[SC_INO];
    st.st_mode = (mode_t)s[SC_MODE];
    need = fuse_add_direntry(r->req, r->dir + r->dirlen, room, name, &st, off);
  }
  napi_value out;
  if (need > room) {
    napi_get_boolean(env, false, &out);
    return out;
  }
  r->dirlen += need;
  napi_get_boolean(env, true, &out);
  return out;
}

static napi_value js_dir_reply(napi_env env, napi_callback_info info) {
  REQ_ARGS(1);
  if (r->op != OP_READDIR && r->op != OP_READDIRPLUS) return throw_range(env, "dirReply on a request that is not readdir");
  int res = fuse_reply_buf(r->req, r->dir, r->dir ? r->dirlen : 0);
  mark_replied(r);
  return result(env, res);
}

// groups(req): the caller's supplementary groups (read from /proc by libfuse), or [] if unknown
static napi_value js_groups(napi_env env, napi_callback_info info) {
  REQ_ARGS(1);
  gid_t list[256];
  int n = fuse_req_getgroups(r->req, 256, list);
  napi_value arr;
  CHECK(napi_create_array(env, &arr));
  for (int i = 0; i < n && i < 256; i++) napi_set_element(env, arr, i, num(env, list[i]));
  return arr;
}

// ---------------------------------------------------------------------------------------
// mount(mountpoint, options, config, implemented[], dispatch) -> Promise<session handle>

static void mnt_handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct mnt *m = data;
  if (m->state == M_CLOSED) mnt_free(m);
  else m->js_released = 1;
}

static void mount_execute(napi_env env, void *data) {
  (void)env;
  struct mnt *m = data;
  tl_mnt = m;
  char *argv[5] = {"prism-fuse", "-o", m->options, NULL, NULL};
  int argc = 3;
  if (m->debug) argv[argc++] = "-d";
  struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
  m->se = fuse_session_new(&args, &m->ops, sizeof m->ops, m);
  fuse_opt_free_args(&args);
  if (m->se != NULL && fuse_session_mount(m->se, m->mountpoint) != 0) {
    fuse_session_destroy(m->se);
    m->se = NULL;
  }
  if (m->se == NULL && m->err[0] == 0) snprintf(m->err, sizeof m->err, "fuse: mount failed");
  tl_mnt = NULL;
}

static void mount_complete(napi_env env, napi_status status, void *data) {
  struct mnt *m = data;
  napi_delete_async_work(env, m->work);
  if (status == napi_ok && m->se != NULL) {
    if (start_thread(&m->note_thread, note_main, m) == 0) m->note_started = 1;
    if (m->note_started && start_thread(&m->loop_thread, loop_main, m) == 0) {
      m->loop_started = 1;
      m->state = M_RUNNING;
      m->gnext = g_mounts.gnext;
      m->gprev = &g_mounts;
      g_mounts.gnext->gprev = m;
      g_mounts.gnext = m;
      napi_value handle;
      napi_create_external(env, m, mnt_handle_finalize, NULL, &handle);
      napi_resolve_deferred(env, m->deferred, handle);
      return;
    }
    snprintf(m->err, sizeof m->err, "fuse: cannot start a thread");
    finish_mount(m);
  }
  size_t n = strlen(m->err);
  while (n > 0 && (m->err[n - 1] == '\n' || m->err[n - 1] == ' ')) m->err[--n] = 0;
  napi_value msg, code, err;
  napi_create_string_utf8(env, m->err, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, "EFUSEMOUNT", NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &err);
  napi_reject_deferred(env, m->deferred, err);
  napi_release_threadsafe_function(m->tsfn, napi_tsfn_release);
  mnt_free(m);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
}

static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) return throw_range(env, "mount(mountpoint, options, config, implemented, dispatch)");
  struct mnt *m = calloc(1, sizeof *m);
  if (m == NULL) return throw_range(env, "out of memory");
  m->pending.next = m->pending.prev = &m->pending;
  pthread_mutex_init(&m->note_lock, NULL);
  pthread_cond_init(&m->note_cond, NULL);
  pthread_mutex_init(&m->hand_lock, NULL);
  pthread_cond_init(&m->hand_cond, NULL);
  m->mountpoint = get_string(env, argv[0]);
  m->options = get_string(env, argv[1]);
  if (m->mountpoint == NULL || m->options == NULL) {
    mnt_free(m);
    return throw_range(env, "mountpoint and options must be strings");
  }
  napi_value cfg = argv[2];
  m->cfg.max_write = get_uint_prop(env, cfg, "maxWrite");
  m->cfg.max_read = get_uint_prop(env, cfg, "maxRead");
  m->cfg.max_readahead = get_uint_prop(env, cfg, "maxReadahead");
  m->cfg.max_background = get_uint_prop(env, cfg, "maxBackground");
  m->cfg.congestion = get_uint_prop(env, cfg, "congestionThreshold");
  m->cfg.writeback = get_bool_prop(env, cfg, "writebackCache");
  m->cfg.posix_acl = get_bool_prop(env, cfg, "posixAcl");
  m->cfg.export_support = get_bool_prop(env, cfg, "exportSupport");
  m->cfg.dont_mask = get_bool_prop(env, cfg, "dontMask");
  m->cfg.cache_symlinks = get_bool_prop(env, cfg, "cacheSymlinks");
  m->cfg.killpriv = get_bool_prop(env, cfg, "handleKillpriv");
  m->cfg.readdirplus_auto = get_bool_prop(env, cfg, "readdirplusAuto");
  m->debug = get_bool_prop(env, cfg, "debug");
  const char *stats = getenv("PRISM_FUSE_STATS");
  m->stats = stats != NULL && *stats != 0 && strcmp(stats, "0") != 0;
  const char *direct = getenv("PRISM_FUSE_DIRECT");
  m->direct = direct == NULL || strcmp(direct, "0") != 0;
  const char *spin = getenv("PRISM_FUSE_SPIN_US");
  m->spin_ns = (uint64_t)(spin != NULL && atoi(spin) >= 0 ? atoi(spin) : DIRECT_SPIN_US) * 1000;
  uint32_t n = 0;
  napi_get_array_length(env, argv[3], &n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    uint32_t op = 0;
    if (napi_get_element(env, argv[3], i, &v) == napi_ok && napi_get_value_uint32(env, v, &op) == napi_ok && op < OP_COUNT)
      m->implemented[op] = 1;
  }
  struct fuse_lowlevel_ops *o = &m->ops;
  o->init = ll_init;
#define SET(op, field, fn) \
  if (m->implemented[op]) o->field = fn
  SET(OP_LOOKUP, lookup, ll_lookup);
  SET(OP_FORGET, forget, ll_forget);
  SET(OP_FORGET, forget_multi, ll_forget_multi);
  SET(OP_GETATTR, getattr, ll_getattr);
  SET(OP_SETATTR, setattr, ll_setattr);
  SET(OP_READLINK, readlink, ll_readlink);
  SET(OP_MKNOD, mknod, ll_mknod);
  SET(OP_MKDIR, mkdir, ll_mkdir);
  SET(OP_UNLINK, unlink, ll_unlink);
  SET(OP_RMDIR, rmdir, ll_rmdir);
  SET(OP_SYMLINK, symlink, ll_symlink);
  SET(OP_RENAME, rename, ll_rename);
  SET(OP_LINK, link, ll_link);
  SET(OP_OPEN, open, ll_open);
  SET(OP_READ, read, ll_read);
  SET(OP_WRITE, write, ll_write);
  SET(OP_FLUSH, flush, ll_flush);
  SET(OP_RELEASE, release, ll_release);
  SET(OP_FSYNC, fsync, ll_fsync);
  SET(OP_OPENDIR, opendir, ll_opendir);
  SET(OP_READDIR, readdir, ll_readdir);
  SET(OP_READDIRPLUS, readdirplus, ll_readdirplus);
  SET(OP_RELEASEDIR, releasedir, ll_releasedir);
  SET(OP_FSYNCDIR, fsyncdir, ll_fsyncdir);
  SET(OP_STATFS, statfs, ll_statfs);
  SET(OP_SETXATTR, setxattr, ll_setxattr);
  SET(OP_GETXATTR, getxattr, ll_getxattr);
  SET(OP_LISTXATTR, listxattr, ll_listxattr);
  SET(OP_REMOVEXATTR, removexattr, ll_removexattr);
  SET(OP_ACCESS, access, ll_access);
  SET(OP_CREATE, create, ll_create);
  SET(OP_FALLOCATE, fallocate, ll_fallocate);
  SET(OP_LSEEK, lseek, ll_lseek);
  SET(OP_COPY_FILE_RANGE, copy_file_range, ll_copy_file_range);
  SET(OP_GETLK, getlk, ll_getlk);
  SET(OP_SETLK, setlk, ll_setlk);
  SET(OP_FLOCK, flock, ll_flock);
#undef SET
  o->ioctl = ll_ioctl; // ENOTTY unless implemented
  napi_value name, promise;
  napi_create_string_utf8(env, "prism-fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[4], NULL, name, 0, 1, NULL, tsfn_finalize, m, call_js, &m->tsfn) != napi_ok) {
    mnt_free(m);
    return throw_last(env);
  }
  if (napi_create_promise(env, &m->deferred, &promise) != napi_ok ||
      napi_create_async_work(env, NULL, name, mount_execute, mount_complete, m, &m->work) != napi_ok ||
      napi_queue_async_work(env, m->work) != napi_ok) {
    napi_release_threadsafe_function(m->tsfn, napi_tsfn_release);
    mnt_free(m);
    return throw_last(env);
  }
  if (!g_atexit_set) {
    atexit(at_exit);
    g_atexit_set = 1;
  }
  return promise;
}

static struct mnt *get_mnt(napi_env env, napi_value v) {
  napi_valuetype t;
  struct mnt *m = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, (void **)&m) != napi_ok || m == NULL) {
    napi_throw_type_error(env, "EINVAL", "prism fuse: not a session handle");
    return NULL;
  }
  return m;
}

// notify(session, kind, id, a, b, off, len, name?) -> false when the session is not running
// (nothing queued); otherwise the result comes later as a notifyDone event with `id`.
static napi_value js_notify(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7) return throw_range(env, "notify(session, kind, id, a, b, off, len, name)");
  struct mnt *m = get_mnt(env, argv[0]);
  if (m == NULL) return NULL;
  double kind, id, a, b, off, len;
  if (!get_double(env, argv[1], &kind) || !get_double(env, argv[2], &id) || !get_double(env, argv[3], &a) ||
      !get_double(env, argv[4], &b) || !get_double(env, argv[5], &off) || !get_double(env, argv[6], &len))
    return throw_range(env, "notify arguments must be numbers");
  if (!int_in(kind, 0, 3) || !int_in(a, 0, MAX_SAFE) || !int_in(b, 0, MAX_SAFE) || !int_in(off, -MAX_SAFE, MAX_SAFE) || !int_in(len, 0, MAX_SAFE))
    return throw_range(env, "notify arguments out of range");
  napi_value out;
  if (m->state != M_RUNNING) {
    napi_get_boolean(env, false, &out);
    return out;
  }
  struct note *n = calloc(1, sizeof *n);
  if (n == NULL) return throw_range(env, "out of memory");
  n->kind = (int)kind;
  n->id = id;
  n->a = (uint64_t)a;
  n->b = (uint64_t)b;
  n->off = (int64_t)off;
  n->len = (int64_t)len;
  if (n->kind != 0) {
    char *data;
    size_t nl;
    if (argc < 8 || !get_buffer(env, argv[7], &data, &nl) || nl == 0 || nl > 1024 || memchr(data, 0, nl) != NULL) {
      free(n);
      return throw_range(env, "a name must be a Buffer of 1..1024 bytes without NUL");
    }
    n->name = malloc(nl + 1);
    if (n->name == NULL) {
      free(n);
      return throw_range(env, "out of memory");
    }
    memcpy(n->name, data, nl);
    n->name[nl] = 0;
    n->namelen = nl;
  }
  pthread_mutex_lock(&m->note_lock);
  if (m->note_tail) m->note_tail->next = n;
  else m->note_head = n;
  m->note_tail = n;
  pthread_cond_signal(&m->note_cond);
  pthread_mutex_unlock(&m->note_lock);
  napi_get_boolean(env, true, &out);
  return out;
}

// ---------------------------------------------------------------------------------------
// umount(path, lazy) -> Promise<errno>: umount2() on a worker thread, never the main thread,
// because an unmount can make the kernel wait for this process to answer (writeback).

struct umount_work {
  char *path;
  int flags;
  int err;
  napi_deferred deferred;
  napi_async_work work;
};

static void umount_execute(napi_env env, void *data) {
  (void)env;
  struct umount_work *w = data;
  w->err = umount2(w->path, w->flags) == 0 ? 0 : errno;
}

static void umount_complete(napi_env env, napi_status status, void *data) {
  (void)status;
  struct umount_work *w = data;
  napi_resolve_deferred(env, w->deferred, num(env, w->err));
  napi_delete_async_work(env, w->work);
  free(w->path);
  free(w);
}

static napi_value js_umount(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], promise, name;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct umount_work *w = calloc(1, sizeof *w);
  if (w == NULL) return throw_range(env, "out of memory");
  w->path = argc > 0 ? get_string(env, argv[0]) : NULL;
  if (w->path == NULL) {
    free(w);
    return throw_range(env, "umount(path, lazy)");
  }
  bool lazy = false;
  if (argc > 1) napi_get_value_bool(env, argv[1], &lazy);
  w->flags = lazy ? MNT_DETACH : 0;
  napi_create_string_utf8(env, "prism-fuse-umount", NAPI_AUTO_LENGTH, &name);
  CHECK(napi_create_promise(env, &w->deferred, &promise));
  CHECK(napi_create_async_work(env, NULL, name, umount_execute, umount_complete, w, &w->work));
  CHECK(napi_queue_async_work(env, w->work));
  return promise;
}

// ---------------------------------------------------------------------------------------

static void instance_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  struct instance *inst = data;
  if (inst->scratch_ref) napi_delete_reference(env, inst->scratch_ref);
  free(inst);
}

// setScratch(Float64Array): the array reply functions read attributes from
// capCache(session, op, ino): op 1 records that node `ino` has no security.capability,
// op 0 forgets node `ino`, op 2 forgets every node.
static napi_value js_cap_cache(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) return throw_range(env, "capCache(session, op, ino)");
  struct mnt *m = get_mnt(env, argv[0]);
  if (m == NULL) return NULL;
  double op, ino;
  if (!get_double(env, argv[1], &op) || !get_double(env, argv[2], &ino) || !int_in(op, 0, 2) || !int_in(ino, 0, MAX_SAFE))
    return throw_range(env, "capCache arguments out of range");
  uint64_t i = (uint64_t)ino;
  if (op == 2) {
    for (size_t k = 0; k < NOCAP_SLOTS; k++) atomic_store(&m->nocap[k], 0);
  } else if (op == 1) {
    if (i != 0) atomic_store(&m->nocap[i % NOCAP_SLOTS], i);
  } else {
    uint64_t want = i;
    atomic_compare_exchange_strong(&m->nocap[i % NOCAP_SLOTS], &want, 0);
  }
  return NULL;
}

// queued(): the number of requests (of every mount) waiting for the main thread.
static napi_value js_queued(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(napi_create_int32(env, atomic_load(&g_queued), &out));
  return out;
}

static napi_value js_set_scratch(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_typedarray_type type;
  size_t length;
  void *data;
  bool is;
  if (argc < 1 || napi_is_typedarray(env, argv[0], &is) != napi_ok || !is) return throw_range(env, "setScratch needs a Float64Array");
  CHECK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL));
  if (type != napi_float64_array || length < SC_COUNT) return throw_range(env, "setScratch needs a Float64Array of 20 or more");
  struct instance *inst = get_instance(env);
  if (inst->scratch_ref) napi_delete_reference(env, inst->scratch_ref);
  CHECK(napi_create_reference(env, argv[0], 1, &inst->scratch_ref));
  inst->scratch = data;
  inst->scratch_len = length;
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  struct instance *inst = calloc(1, sizeof *inst);
  if (inst == NULL) return NULL;
  napi_set_instance_data(env, inst, instance_finalize, NULL);
  fuse_set_log_func(log_func);
  napi_property_descriptor fns[] = {
    {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
    {"umount", NULL, js_umount, NULL, NULL, NULL, napi_default, NULL},
    {"notify", NULL, js_notify, NULL, NULL, NULL, napi_default, NULL},
    {"setScratch", NULL, js_set_scratch, NULL, NULL, NULL, napi_default, NULL},
    {"replyErr", NULL, js_reply_err, NULL, NULL, NULL, napi_default, NULL},
    {"replyEntry", NULL, js_reply_entry, NULL, NULL, NULL, napi_default, NULL},
    {"replyCreate", NULL, js_reply_create, NULL, NULL, NULL, napi_default, NULL},
    {"replyAttr", NULL, js_reply_attr, NULL, NULL, NULL, napi_default, NULL},
    {"replyOpen", NULL, js_reply_open, NULL, NULL, NULL, napi_default, NULL},
    {"replyBuf", NULL, js_reply_buf, NULL, NULL, NULL, napi_default, NULL},
    {"replyReadlink", NULL, js_reply_readlink, NULL, NULL, NULL, napi_default, NULL},
    {"replyWrite", NULL, js_reply_write, NULL, NULL, NULL, napi_default, NULL},
    {"replyXattr", NULL, js_reply_xattr, NULL, NULL, NULL, napi_default, NULL},
    {"replyLseek", NULL, js_reply_lseek, NULL, NULL, NULL, napi_default, NULL},
    {"replyStatfs", NULL, js_reply_statfs, NULL, NULL, NULL, napi_default, NULL},
    {"replyLock", NULL, js_reply_lock, NULL, NULL, NULL, napi_default, NULL},
    {"replyIoctl", NULL, js_reply_ioctl, NULL, NULL, NULL, napi_default, NULL},
    {"dirAdd", NULL, js_dir_add, NULL, NULL, NULL, napi_default, NULL},
    {"dirReply", NULL, js_dir_reply, NULL, NULL, NULL, napi_default, NULL},
    {"groups", NULL, js_groups, NULL, NULL, NULL, napi_default, NULL},
    {"capCache", NULL, js_cap_cache, NULL, NULL, NULL, napi_default, NULL},
    {"queued", NULL, js_queued, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
  napi_value ops, version;
  napi_create_object(env, &ops);
  for (int i = 0; i < OP_COUNT; i++) napi_set_named_property(env, ops, OP_NAMES[i], num(env, i));
  napi_set_named_property(env, exports, "OPS", ops);
  napi_create_string_utf8(env, fuse_pkgversion(), NAPI_AUTO_LENGTH, &version);
  napi_set_named_property(env, exports, "libfuseVersion", version);
  return exports;
}

NAPI_MODULE_INIT() {
  return init(env, exports);
}
