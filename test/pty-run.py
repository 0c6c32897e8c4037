#!/usr/bin/env python3
# Runs a command on a pseudo-terminal of a given size, for tests of what prism draws on a
# terminal (test/signals.test.ts). Its output (stdout, and stderr unless --stderr FILE) is
# copied to this script's stdout. The command's pid is written to --pidfile; SIGUSR1 to this
# script types Ctrl-C on the terminal (the terminal sends SIGINT to the command, as a user's
# key would). After --timeout seconds the command's whole session is killed and the status
# is 124, so a command that hangs fails its test instead of hanging it.
# Usage: pty-run.py --cols N [--rows N] [--timeout S] [--pidfile F] [--stderr F] -- CMD...
import argparse, fcntl, os, select, signal, struct, subprocess, sys, termios, time

ap = argparse.ArgumentParser()
ap.add_argument('--cols', type=int, required=True)
ap.add_argument('--rows', type=int, default=24)
ap.add_argument('--timeout', type=float, default=60)
ap.add_argument('--pidfile')
ap.add_argument('--stderr')
ap.add_argument('cmd', nargs=argparse.REMAINDER)
a = ap.parse_args()
cmd = a.cmd[1:] if a.cmd and a.cmd[0] == '--' else a.cmd

master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', a.rows, a.cols, 0, 0))
err = open(a.stderr, 'wb') if a.stderr else slave

def child_setup():
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the pty is the command's controlling terminal

proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=err, start_new_session=True, preexec_fn=child_setup)
os.close(slave)
if a.pidfile:
    with open(a.pidfile + '.tmp', 'w') as f:
        f.write(str(proc.pid))
    os.rename(a.pidfile + '.tmp', a.pidfile)

def ctrl_c(signum, frame):
    os.write(master, termios.tcgetattr(master)[6][termios.VINTR])
signal.signal(signal.SIGUSR1, ctrl_c)

out = sys.stdout.buffer
deadline = time.monotonic() + a.timeout
status = None
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        status = 124
        break
    try:
        r, _, _ = select.select([master], [], [], min(left, 0.2))
    except InterruptedError:
        continue
    if r:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every holder of the terminal closed it
            data = b''
        if not data:
            proc.wait()
            break
        out.write(data)
        out.flush()
    elif proc.poll() is not None:
        break
if status is None:
    rc = proc.wait()
    status = 128 - rc if rc < 0 else rc  # killed by a signal: as a shell shows it
sys.exit(status)
