#!/bin/sh
# ORT CPU memory policy of the sessions (issue 14): every measurement of README.md, in the order it was run.
# The bundle: /tmp/std-demo (standard export, all-MiniLM-L6-v2, all variants) -> CPU target with the export's
# drop_untargeted_variants -> the format-2.0 layout; written under $WORK (default /tmp/arena).
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
R=$HERE/..
W=${WORK:-/tmp/arena}
B=$W/std-cpu
mkdir -p "$W"
grep -o -w 'avx2\|avx512f\|avx512_vnni\|avx512_bf16\|amx_tile\|amx_int8' /proc/cpuinfo | sort | uniq -c > "$HERE/cpu_flags.txt"
grep -m1 "model name" /proc/cpuinfo >> "$HERE/cpu_flags.txt"
nice python "$R/2026-11-30-scale-cpu-2core-amd-epyc/footprint_derive.py" /tmp/std-demo cpu "$W/std-cpu-f1"
nice python "$R/2026-11-30-open-footprint-cpu-2core/to_format2.py" "$W/std-cpu-f1" "$B"
cd "$HERE"
export OMP_NUM_THREADS=1
# raw ORT per session (user tower / fusion arenas; the encoder's growth with and without the arena)
for m in user_tower fusion encoder; do for c in '{}' '{"arena":false}'; do
  echo "$m $c $(nice python per_session.py "$B" $m "$c")"; done; done > per_session.log
# first pass: every configuration (the checkout then released after every multi-row run)
nice python probe.py engine_probe.json "$B" --rounds 3
nice python sessions_probe.py sessions_probe.json "$B" --rounds 3
nice python latency.py latency.json "$B"
{ for p in release on; do for b in 8 16 32 64; do nice python batchsize.py peak "$B" $b $p; done; done
  for p in release on; do nice python batchsize.py speed "$B" $p; done; } > batchsize.log
nice python attribution.py "$B" > attribution.log
# final policy (release once per encode call): before vs checkout
nice python probe.py engine_probe_final.json "$B" --rounds 3 --configs before,checkout
nice python sessions_probe.py sessions_probe_final.json "$B" --rounds 3 --configs before,checkout
nice python addlatency.py addlatency.json "$B"
{ nice python batchsize.py speed "$B" release
  for b in 8 16 32 64; do nice python batchsize.py peak "$B" $b release; done; } > batchsize_final.log
