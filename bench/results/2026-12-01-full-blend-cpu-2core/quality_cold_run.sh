#!/bin/bash
# the cold-item protocol on the embedded MovieLens at this session's runtime (whole-catalogue blend)
export PYTHONPATH=/tmp/s13/snapW RECENGINE_GIT_REVISION=06e4e47 OPENBLAS_NUM_THREADS=1
echo "start $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
python -m recengine bench quality --models itemknn,frozen_text,recengine --variants fp32 --threads 1 --tune-budget 240 --jobs 2 --workdir /tmp/s13/qc/ml-w --report /tmp/s13/qc/ml --quiet > /tmp/s13/qc/ml.log 2>&1
echo "end $(date -u +%T) rc=$? $(cut -d' ' -f1-3 /proc/loadavg)"
