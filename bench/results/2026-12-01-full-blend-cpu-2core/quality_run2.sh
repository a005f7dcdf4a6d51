#!/bin/bash
# quality bench of the working-tree snapshot (full-catalogue blend) on four data sets, one after another
export PYTHONPATH=/tmp/s13/snapW RECENGINE_GIT_REVISION=06e4e47 OPENBLAS_NUM_THREADS=1
for ds in bookcrossing ml100k movielens instacart; do
  if [ $ds = movielens ]; then D=""; else D=/tmp/data/$ds; fi
  echo "$ds start $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
  python -m recengine bench quality $D --models popularity,itemknn,ease,sasrec,recengine --variants fp32 --threads 1 --tune-budget 240 --jobs 2 --no-cold --workdir /tmp/s13/q2/$ds-w --report /tmp/s13/q2/$ds --quiet > /tmp/s13/q2/$ds.log 2>&1
  echo "$ds end $(date -u +%T) rc=$? $(cut -d' ' -f1-3 /proc/loadavg)"
done
