#!/usr/bin/env bash
# The demo of README's first command: make an image, import the bundled sample tree,
# list it, read a file back, check the image. Runs in a temporary directory.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prism() { node "$here/bin/run.js" "$@"; }
work=$(mktemp -d -t prism-demo-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
set -x
prism mkfs disk.img --size 1G
prism cp -r "$here/fixtures/sample-rootfs" root:/
prism ls -l root:/
prism ls -R root:/etc
prism cat root:/etc/hostname
echo "demo" | prism write root:/etc/motd
prism clone root sandbox --exclude /home --exclude /var/log   # async: usable at once
prism clone root scratch --mode lazy                            # expanded only on demand
prism ls root:/ sandbox:/
echo sandbox | prism write sandbox:/etc/hostname
prism cat root:/etc/hostname sandbox:/etc/hostname scratch:/etc/hostname
prism status
prism expand --all
prism fileset list
prism df -h
prism fsck
