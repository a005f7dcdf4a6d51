#!/bin/bash
# issue 13's target at the final runtime: recommend by user id at 8 clients, one worker, eight runs back to back
B=/tmp/s12/ml-std
for i in 1 2 3 4 5 6 7 8; do
  echo "run $i $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  OPENBLAS_NUM_THREADS=1 python -m recengine bench serve $B --workers 1 --endpoints recommend_user --concurrency 8 --duration 15 --requests 40000 --report /tmp/s13/serve2/run-$i --quiet > /tmp/s13/serve2/run-$i.log 2>&1
done
echo "done $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
