#!/bin/bash
set -u
B=/tmp/s11/ml-std
OUT=/tmp/s11/serve-ab4
mkdir -p $OUT
snap=/tmp/s11/snap-gc; rev=$(cd /work/main && git rev-parse --short HEAD)
for round in 1 2; do
for w in 1 2; do
for si in 0.0005 0.002; do
  echo "$(date -u +%H:%M:%S) si$si w$w round $round load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
  PYTHONPATH=$snap RECENGINE_GIT_REVISION=$rev OPENBLAS_NUM_THREADS=1 python -m recengine bench serve $B --workers $w \
    --endpoints recommend_user --concurrency 1,8 --duration 12 --requests 30000 --server-arg=--pool --server-arg=1 \
    --server-arg=--switch-interval --server-arg=$si --report $OUT/si$si-w$w-r$round --quiet >> $OUT/log.txt 2>&1
done; done; done
echo "$(date -u +%H:%M:%S) done load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
