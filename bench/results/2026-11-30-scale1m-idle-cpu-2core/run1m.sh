#!/bin/bash
export PYTHONPATH=/tmp/me/snap1m OPENBLAS_NUM_THREADS=1
cd /tmp/me
uptime > /tmp/me/s1m.uptime
python -m recengine export --profile quick --out /tmp/me/scale-src --force > /tmp/me/s1m-export.log 2>&1 || exit 1
uptime >> /tmp/me/s1m.uptime
python -m recengine bench latency /tmp/me/scale-src --synthetic-items 1000000 --variants int8 --batch 1 --stages e2e,retrieve,recommend --requests 500 --duration 5 --no-torch --no-reference --index-m 16 --index-ef-construction 200 --open-runs 3 --workdir /tmp/me/s1m-work --report /tmp/me/s1m-report > /tmp/me/s1m.log 2>&1
echo "rc=$?" >> /tmp/me/s1m.log
uptime >> /tmp/me/s1m.uptime
