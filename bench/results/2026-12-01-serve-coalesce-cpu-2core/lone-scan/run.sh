#!/bin/bash
# dd6c830 (lone queries on the Gemm) against 0294341 (lone queries on einsum), alternating, one worker
set -u
B=/tmp/s11/ml-std
OUT=/tmp/s11/serve-ab6
mkdir -p $OUT
for round in 1 2; do
for side in lonegemm loneeinsum; do
  snap=/tmp/s11/snap-final; rev=dd6c830
  [ $side = loneeinsum ] && snap=/tmp/s11/snap-final2 && rev=0294341
  echo "$(date -u +%H:%M:%S) $side round $round load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
  PYTHONPATH=$snap RECENGINE_GIT_REVISION=$rev OPENBLAS_NUM_THREADS=1 python -m recengine bench serve $B --workers 1 \
    --endpoints recommend_user --concurrency 1,8 --duration 15 --requests 40000 --report $OUT/$side-w1-r$round --quiet >> $OUT/log.txt 2>&1
done; done
echo "$(date -u +%H:%M:%S) done load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/log.txt
