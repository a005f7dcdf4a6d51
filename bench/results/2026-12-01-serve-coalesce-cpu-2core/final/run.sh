#!/bin/bash
# recommend by stored user id at c=1 and c=8: 68500ae (before this session) against 44ecd73 (Gemm scan,
# coalescing lane, heap freeze), alternating, 3 rounds, 1 and 2 workers, the same bundle
set -u
B=/tmp/s11/ml-std
OUT=/tmp/s11/serve-final
mkdir -p $OUT
for round in 1 2 3; do
for w in 1 2; do
for side in before after; do
  snap=/tmp/s11/snap; rev=68500ae
  [ $side = after ] && snap=/tmp/s11/snap-lane && rev=44ecd73
  echo "$(date -u +%H:%M:%S) $side w$w round $round load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
  PYTHONPATH=$snap RECENGINE_GIT_REVISION=$rev OPENBLAS_NUM_THREADS=1 python -m recengine bench serve $B --workers $w \
    --endpoints recommend_user --concurrency 1,8 --duration 15 --requests 40000 --report $OUT/$side-w$w-r$round --quiet >> $OUT/log.txt 2>&1
done; done; done
echo "$(date -u +%H:%M:%S) done load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
