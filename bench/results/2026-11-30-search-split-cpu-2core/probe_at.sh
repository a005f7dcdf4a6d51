#!/bin/bash
# probe_at.sh COMMIT BUNDLE: probe_rss.py with the runtime of COMMIT (today's bench code beside it)
d=/tmp/probe-$1
if [ ! -d $d ]; then mkdir -p $d; (cd "$(git rev-parse --show-toplevel)" && git archive $1 runtime | tar -x -C $d)
  mv $d/runtime $d/recengine; cp -r "$(git rev-parse --show-toplevel)/bench" $d/recengine/bench; rm -rf $d/recengine/bench/results; fi
PYTHONPATH=$d python "$(dirname "$0")/probe_rss.py" $2
