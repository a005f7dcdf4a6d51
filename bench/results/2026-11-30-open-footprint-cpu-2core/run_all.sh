#!/bin/sh
# Before/after open time and RSS, interleaved per bundle (each probe: 3 fresh processes, median).
# BEFORE: a `git archive` of the runtime at aa27aa5 laid out as the package `recengine` (PYTHONPATH);
# AFTER: this checkout. Bundles under /tmp/openfp (see README.md for how each was made).
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
B=/tmp/openfp
grep -o -w 'avx2\|avx512f\|avx512_vnni\|amx_tile' /proc/cpuinfo | sort | uniq -c > "$HERE/cpu_flags.txt"
for pair in b110k=$B/b110k std_cpu=$B/std-cpu-before serve_cpu=$B/serve-cpu-before std_all=/tmp/std-demo; do
  name=${pair%%=*}
  PYTHONPATH=$B/before nice python "$HERE/probe_open.py" "$HERE/before_$name.json" "$pair"
  nice python "$HERE/probe_open.py" "$HERE/after_$name.json" "$pair"
done
for pair in b110k_f2=$B/b110k-f2 std_cpu_f2=$B/std-cpu-f2 serve_cpu_f2=$B/serve-cpu-f2; do
  name=${pair%%=*}
  nice python "$HERE/probe_open.py" "$HERE/after_$name.json" "$pair"
done
