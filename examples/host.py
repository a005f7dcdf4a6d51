"""A ten-line host program: open a bundle, then recommend, find similar items, search and update live."""
import sys

import recengine

engine = recengine.Engine.open(sys.argv[1] if len(sys.argv) > 1 else "demo")  # CPU: INT8 models; exact scan or HNSW
user = engine.user_ids()[0]
print("recommend:", [(r.item_id, round(r.score, 3)) for r in engine.recommend(user_id=user, k=5)])
print("similar:  ", [r.item_id for r in engine.similar_items(engine.item_ids()[0], k=5)])
print("search:   ", [r.item_id for r in engine.search("space adventure with robots", k=5)])
first = (engine.manifest["data"].get("text_columns") or ["text"])[0]  # "title" on MovieLens
engine.add_items([{"item_id": "new-1", first: "Robots in Space (2031)"}])
engine.update_user(user, ["new-1"])  # the user's vector is refreshed at once
print("after update:", [r.item_id for r in engine.recommend(user_id=user, k=5, explain=True)])
