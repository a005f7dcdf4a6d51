#!/bin/bash
set -u
B=/tmp/s11/ml-std
OUT=/tmp/s11/serve-ab5
mkdir -p $OUT
snap=/tmp/s11/snap-lane; rev=44ecd73
for round in 1 2; do
for w in 1 2; do
for co in 16 4; do
  echo "$(date -u +%H:%M:%S) co$co w$w round $round load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
  PYTHONPATH=$snap RECENGINE_GIT_REVISION=$rev OPENBLAS_NUM_THREADS=1 python -m recengine bench serve $B --workers $w \
    --endpoints recommend_user --concurrency 8 --duration 15 --requests 40000 --server-arg=--coalesce --server-arg=$co \
    --report $OUT/co$co-w$w-r$round --quiet >> $OUT/log.txt 2>&1
done; done; done
echo "$(date -u +%H:%M:%S) done load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
