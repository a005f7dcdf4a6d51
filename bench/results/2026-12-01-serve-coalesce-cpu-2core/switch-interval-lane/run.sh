#!/bin/bash
# the final runtime (0294341, coalescing lane): GIL switch interval 0.5 ms (default) against 2 ms, alternating
set -u
B=/tmp/s11/ml-std
OUT=/tmp/s11/serve-ab7
mkdir -p $OUT
export PYTHONPATH=/tmp/s11/snap-final2 RECENGINE_GIT_REVISION=0294341 OPENBLAS_NUM_THREADS=1
for round in 1 2; do for w in 1 2; do for si in 0.0005 0.002; do
  echo "$(date -u +%H:%M:%S) si$si w$w round $round load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
  python -m recengine bench serve $B --workers $w --endpoints recommend_user --concurrency 8 --duration 15 \
    --requests 40000 --server-arg=--switch-interval --server-arg=$si --report $OUT/si$si-w$w-r$round --quiet >> $OUT/log.txt 2>&1
done; done; done
echo "$(date -u +%H:%M:%S) done load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
