/*
 * prism_sys: the few system calls Node does not offer, for src/sys.ts (its only user).
 * Today: catching SIGINT, SIGTERM and SIGHUP while the library runs synchronously.
 *
 * Prism's library is synchronous, so a JavaScript signal handler (process.on('SIGINT'))
 * never runs while it works. Here, sigaction handlers only record the signal in shared
 * memory that JavaScript polls cheaply at its consistent points (Atomics.load), and a
 * watchdog thread makes sure nothing hangs: if JavaScript has not taken the signal within
 * the grace time (the process is blocked where it does not poll: a read of stdin, a lock
 * wait), or a second signal comes, the signal's default action is restored and the signal
 * raised again, so the process ends as it would have without us.
 *
 * It must never do anything in a signal handler but async-signal-safe calls, and never
 * keep the process alive or change what happens to a process that did not ask for it.
 */
#include <node_api.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
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

static void on_signal(int sig) {
  int saved = errno;
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

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "catchSignals", NAPI_AUTO_LENGTH, catch_signals, NULL, &fn);
  napi_set_named_property(env, exports, "catchSignals", fn);
  return exports;
}
