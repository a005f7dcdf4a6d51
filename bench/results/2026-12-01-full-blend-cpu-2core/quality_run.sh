#!/bin/bash
# quality bench of a runtime snapshot on four data sets, one after another. Usage: quality_run.sh SNAPSHOT OUT REV
# (first run: snapshot of the working tree equal to 0d77d6c, OUT /tmp/s13/q, REV fullblend-wt; second: 06e4e47, /tmp/s13/q2)
SNAP=$1 OUT=$2
export PYTHONPATH=$SNAP RECENGINE_GIT_REVISION=$3 OPENBLAS_NUM_THREADS=1
for ds in bookcrossing ml100k movielens instacart; do
  if [ $ds = movielens ]; then D=""; else D=/tmp/data/$ds; fi
  echo "$ds start $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
  python -m recengine bench quality $D --models popularity,itemknn,ease,sasrec,recengine --variants fp32 --threads 1 \
    --tune-budget 240 --jobs 2 --no-cold --workdir $OUT/$ds-w --report $OUT/$ds --quiet > $OUT/$ds.log 2>&1
  echo "$ds end $(date -u +%T) rc=$? $(cut -d' ' -f1-3 /proc/loadavg)"
done
