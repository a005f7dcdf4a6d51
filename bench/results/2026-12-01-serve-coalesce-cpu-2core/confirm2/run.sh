#!/bin/bash
# the final code (0294341, lone queries on einsum): recommend by user id at c=1,8 with one and two workers, twice
set -u
B=/tmp/s11/ml-std
OUT=/tmp/s11/serve-confirm2
mkdir -p $OUT
export PYTHONPATH=/tmp/s11/snap-final2 RECENGINE_GIT_REVISION=0294341 OPENBLAS_NUM_THREADS=1
for round in 1 2; do for w in 1 2; do
  echo "$(date -u +%H:%M:%S) w$w round $round load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
  python -m recengine bench serve $B --workers $w --endpoints recommend_user --concurrency 1,8 --duration 15 \
    --requests 40000 --report $OUT/recommend-w$w-r$round --quiet >> $OUT/log.txt 2>&1
done; done
echo "$(date -u +%H:%M:%S) done load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
