"""Quick-profile fit on the embedded MovieLens: metrics to compare code versions (one thread, seed 0)."""
import json
import sys
import tempfile
import time
from pathlib import Path

from recengine.data import load_dataset
from recengine.export.adapt import adapt_to_data
from recengine.export.align import resolve_source
from recengine.export.config import ExportConfig
from recengine.export.fit import fit, graph_only_metrics
from recengine.split import leave_last_out

cfg = ExportConfig.from_profile("quick")
cfg.quiet = True
ds = load_dataset(None)
split = leave_last_out(ds.interactions, ds.n_users, ds.n_items, seed=cfg.seed)
with tempfile.TemporaryDirectory() as tmp:
    source = resolve_source(cfg.encoder, Path(tmp), cfg.seed)
    cfg, adapted = adapt_to_data(cfg, ds, split, source, None)
    t = time.process_time()
    fitted = fit(ds, split, cfg, workdir=Path(tmp), text_source=source)
    cpu = time.process_time() - t
out = {"config_user_loss": cfg.user.loss, "metrics": fitted.metrics, "use_fusion": fitted.use_fusion,
       "valid": fitted.evaluate("valid"), "valid_nofusion": fitted.evaluate("valid", use_fusion=False),
       "test": fitted.evaluate("test"), "graph_only": graph_only_metrics(fitted.graph, split, "valid"),
       "timings": fitted.timings, "fit_cpu_s": cpu}
json.dump(out, open(sys.argv[1], "w"), indent=1, default=float)
print(json.dumps(out, default=float)[:3000])
