#!/bin/bash
# A sync clone of a large tree against an async clone's background expander run to the end,
# on one image, the order alternating each run, each clone deleted after it (bench/README.md,
# "One million files again"). The image is made and filled on first use, then kept:
#
#   bash bench/syncbg.sh BUILD TREE IMAGE [RUNS]     # BUILD: a checkout whose bin/run.js to time
set -u
BUILD=$1; TREE=$2; IMG=$3; RUNS=${4:-3}
P="node $BUILD/bin/run.js"
if [ ! -f "$IMG" ]; then
  $P mkfs "$IMG" --size 16G --inodes 1500000 --force >/dev/null
  $P cp -r "$TREE/." root:/ -i "$IMG"
fi
sync
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
for r in $(seq 1 "$RUNS"); do
  if [ $((r % 2)) = 1 ]; then order="sync bg"; else order="bg sync"; fi
  for w in $order; do
    if [ "$w" = sync ]; then
      echo "run $r sync clone: $(secs $P clone root "s$r" --mode sync -i "$IMG") s"
      $P fileset delete "s$r" -i "$IMG" >/dev/null
    else
      $P clone root "a$r" --mode async --no-background -i "$IMG" >/dev/null
      echo "run $r background expander: $(secs $P expand --background -i "$IMG") s"
      $P fileset delete "a$r" -i "$IMG" >/dev/null
    fi
    sync
  done
done
