#!/bin/bash
# serve A/B: runtime at e4a561d (union candidates) vs the working tree (whole-catalogue blend), same bundle,
# alternating rounds; recommend by user id at 1 and 8 clients
B=/tmp/s12/ml-std
for round in 1 2 3; do
  for side in old new; do
    if [ $side = old ]; then PP=/tmp/s13/snapOld; else PP=/work/main; fi
    echo "round $round $side $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    PYTHONPATH=$PP RECENGINE_GIT_REVISION=$side OPENBLAS_NUM_THREADS=1 python -m recengine bench serve $B --workers 1 --endpoints recommend_user --concurrency 1,8 --duration 15 --requests 40000 --report /tmp/s13/serve/$side-$round --quiet > /tmp/s13/serve/$side-$round.log 2>&1
  done
done
echo "done $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
