import json, subprocess, sys, os, time
B='/tmp/me/s1m-work/synthetic-1000000'
code=("import json, sys; from recengine.bench.synthetic import open_probe; "
      "print('PROBE ' + json.dumps(open_probe(sys.argv[1], 'int8', 1, 50)))")
out={'before':[], 'after':[]}
for r in range(3):
    for tag, pp in (('before','/tmp/me/snap1m'),('after','/tmp/me/snapafter')):
        env={**os.environ,'PYTHONPATH':pp,'OMP_NUM_THREADS':'1','OPENBLAS_NUM_THREADS':'1'}
        p=subprocess.run([sys.executable,'-c',code,B],capture_output=True,text=True,env=env)
        line=[l for l in p.stdout.splitlines() if l.startswith('PROBE ')]
        if not line: print(p.stderr[-2000:]); sys.exit(1)
        d=json.loads(line[0][6:]); d['load']=os.getloadavg(); out[tag].append(d)
        print(tag, {k:d[k] for k in d if k in ('open_s','warmup_s','rss_mib_after_open','rss_mib_steady','rss_mib_peak')}, d['load'], flush=True)
json.dump(out, open('/tmp/me/openab.json','w'), indent=1)
