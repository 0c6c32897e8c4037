// Prism's FUSE floor: the interface a filesystem is served through (types.ts), its libfuse3
// binding (libfuse.ts, over the native addon in native/fuse) and the helpers for mounts left
// behind by a server that died (mounts.ts). The Prism adapter, the server and the mount
// commands build on this; nothing in the library below imports it.
//
// libfuse calls the binding uses (libfuse 3.14, Debian 12; FUSE_USE_VERSION 314):
// - session: fuse_session_new (options: default_permissions always, fsname, subtype, rw/ro,
//   nosuid/suid, nodev/dev, allow_other, max_read), fuse_session_mount (mount(2)
//   directly as root, fusermount3 otherwise), fuse_session_receive_buf and
//   fuse_session_process_buf (libfuse's single-threaded loop, one native thread per mount:
//   JavaScript is single-threaded, so more reader threads would only queue requests faster).
//   Direct reads: once the main thread has answered a request the loop thread handed it, it
//   reads the next requests from the device itself (up to 0.5 ms asleep between two; 4 ms in
//   all, and only while each request is answered during its call), so that a
//   busy mount's requests reach JavaScript without a thread switch and an event-loop turn each;
//   the loop thread waits meanwhile (one reader at a time: the kernel's order is kept). The
//   event loop then waits at most those 4 ms. PRISM_FUSE_DIRECT=0 turns this off,
//   a busy poll of 50 us comes first while the 1-minute load average is under the CPUs online
//   (on a loaded machine it would hold the CPU the caller needs); PRISM_FUSE_SPIN_US=N sets its
//   length (0: off). PRISM_FUSE_STATS=1 prints per-operation counts and
//   times when a session ends. fuse_session_exit,
//   fuse_session_unmount, fuse_session_destroy. FuseSession.unmount() calls umount2 on a
//   worker thread (the kernel may need this process to answer while it unmounts, e.g. to
//   write back cached pages); fuse_session_unmount runs once the loop has ended, since it
//   closes the device the loop thread reads and the replies are written to.
// - init negotiates: max_write (1 MiB; FUSE_MAX_PAGES, big writes always), max_read,
//   max_readahead, max_background, time_gran 1 ns, atomic O_TRUNC, readdirplus (and auto),
//   writeback cache, POSIX ACLs, export support, dont_mask, cached symlinks and
//   handle_killpriv on request; splice off. Async reads, parallel dirops, auto data
//   invalidation and async direct I/O stay as libfuse sets them.
// - every low-level operation a POSIX filesystem needs: lookup, forget, forget_multi, getattr,
//   setattr (every to_set bit, the fh of ftruncate), readlink, mknod, mkdir, unlink, rmdir,
//   symlink, rename (flags passed on: RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT),
//   link, open, read, write, flush, release, fsync, opendir, readdir, readdirplus, releasedir, fsyncdir, statfs, setxattr,
//   getxattr, listxattr, removexattr, access, create, fallocate, ioctl (ENOTTY unless
//   implemented; on directories too, FUSE_CAP_IOCTL_DIR), lseek (SEEK_DATA/SEEK_HOLE), copy_file_range; fuse_req_ctx for every request
//   and fuse_req_getgroups on demand. tmpfile (FUSE_TMPFILE, O_TMPFILE), which libfuse only has
//   from 3.17: the addon rewrites the request into a create of "/" (same request and reply
//   layout), and the binding calls the filesystem's tmpfile for that name.
// - locks: getlk, setlk and flock, with FUSE_CAP_POSIX_LOCKS (getlk and setlk implemented) and
//   FUSE_CAP_FLOCK_LOCKS (flock implemented) asked for at init, so that the filesystem, not the
//   kernel's superblock, keeps them (Prism: one table for every mount of an image); flush's
//   lock_owner and release's FUSE_RELEASE_FLOCK_UNLOCK owner are passed on. A lock request
//   that may wait (SETLKW, flock without LOCK_NB) registers fuse_req_interrupt_func: a
//   FUSE_INTERRUPT (a signal, a killed waiter, which the kernel would otherwise wait for
//   forever) aborts the AbortSignal its handler got, which answers EINTR.
// - one answer on the reading thread: getxattr("security.capability") of a node the filesystem
//   said has none (the kernel asks before every write), ENODATA from a cache JavaScript keeps:
//   filled by a getxattr answered ENODATA at once and by entries with noCapability
//   (FuseSession.forgetAnswers; a setxattr, an invalidation or a forget of the node empties it).
// - cache invalidation: fuse_lowlevel_notify_inval_inode, _inval_entry, _delete, on a native
//   thread of their own. Deadlock rules: the kernel may make a notification wait for a request
//   in flight (inval_entry takes the directory's lock, inval_inode locks the pages a read is
//   filling). So a notification is never sent from the loop thread nor synchronously from the
//   main thread (the only thread that answers), and a handler must not await a notification
//   about the directory or inode it is answering for before it answers.
//
// Deliberately absent: libfuse's auto_unmount (a fusermount3 process that unmounts when the
// server dies): in libfuse 3.14 its socket is inherited by every child the server spawns (not
// close-on-exec), its process is never reaped, and its check that the connection is dead (an
// open() expected to fail with ENOTCONN) races with the end of the connection and can leave
// the mount; recoverMount (mounts.ts) cleans up after a dead server instead. Also absent:
// poll, bmap (fuseblk only), write_buf/splice (write data is copied once, into a
// Buffer handed to JavaScript), notify_store/retrieve, and notify_expire_entry (the addon
// can send it, FuseSession does not offer it: it needs Linux 6.2).
// Not in libfuse 3.14's low-level API, so not here: tmpfile (newer kernels send FUSE_TMPFILE
// for open(O_TMPFILE); libfuse 3.14 answers ENOSYS and the kernel turns that into EOPNOTSUPP
// for the caller, as test/fuse-posix.test.ts checks), FUSE_CAP_HANDLE_KILLPRIV_V2 and
// setxattr_ext (the kernel clears setuid/setgid itself here, see handleKillpriv), passthrough,
// statx. The libfuse options `nonempty` (fuse3 mounts over non-empty directories anyway),
// `big_writes` (always on) and `use_ino` (high-level API only; the low-level API always gives
// the filesystem's inode numbers) are not options here.
export * from './types.js'
export {ADDON_PATH, type Availability, errnoOf, fuseAvailability, FuseUnavailableError, mount, requestsWaiting} from './libfuse.js'
export {abortConnection, fuseMountAt, lazyUnmount, listMounts, type MountInfo, type MountState, probeMount, recoverMount} from './mounts.js'
