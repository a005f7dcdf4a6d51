import json
import sys
from pathlib import Path

from recengine.bench.export_cost import ExportCostConfig, measure_encoder_rate
from recengine.bench.machine import load_average

before = load_average()
cfg = ExportCostConfig(rate_bundle=Path("/tmp/serve-demo"), rate_texts=int(sys.argv[1]),
                       rate_torch_texts=int(sys.argv[2]), rate_threads=2, quiet=True)
r = measure_encoder_rate(cfg)
r["load_average_before"], r["load_average_after"] = before, load_average()
Path("/tmp/ecost/rate.json").write_text(json.dumps(r, indent=1))
print(json.dumps(r, indent=1))
