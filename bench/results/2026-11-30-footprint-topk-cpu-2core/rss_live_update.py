"""RSS after open + warm-up + 50 recommends, then after `add_items` of 10 items + a search.
Usage: python rss_live_update.py BUNDLE"""
import sys

import recengine


def rss() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


e = recengine.Engine.open(sys.argv[1], device="cpu", threads=1)
e.warmup()
for u in e.user_ids()[:50]:
    e.recommend(user_id=u, k=10)
steady = rss()
e.add_items([{"item_id": f"new-{i}", "title": f"A new film number {i}", "genres": "Drama"} for i in range(10)])
e.search("a new film", k=5)
print(sys.argv[1], f"steady {steady:.1f} MiB, after add_items+search {rss():.1f} MiB")
