#!/bin/bash
set -u
B=/tmp/s11/ml-std
OUT=/tmp/s11/serve-ab3
mkdir -p $OUT
snap=/tmp/s11/snap-gc; rev=$(cd /work/main && git rev-parse --short HEAD)
for round in 1 2; do
for w in 1 2; do
for pool in 2 1; do
  echo "$(date -u +%H:%M:%S) pool$pool w$w round $round load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
  PYTHONPATH=$snap RECENGINE_GIT_REVISION=$rev OPENBLAS_NUM_THREADS=1 python -m recengine bench serve $B --workers $w \
    --endpoints recommend_user --concurrency 1,8 --duration 12 --requests 30000 --server-arg=--pool --server-arg=$pool \
    --report $OUT/pool$pool-w$w-r$round --quiet >> $OUT/log.txt 2>&1
done; done; done
echo "$(date -u +%H:%M:%S) done load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
