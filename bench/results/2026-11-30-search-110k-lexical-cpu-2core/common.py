"""The 110k synthetic bundle and the four query families of ../2026-11-30-search-110k-cpu-2core, shared by the
scripts here. The bundle: `recengine.bench.synthetic.build_synthetic_bundle(MovieLens CPU bundle, OUT, 100000)`
(texts "{parent text} #i", as `bench latency --synthetic-items` and the earlier add_items run write them)."""
import numpy as np

from recengine import Engine


def open_families(bundle: str) -> tuple[Engine, dict[str, list[str]]]:
    eng = Engine.open(bundle, device="cpu", threads=1)
    eng.warmup()
    eng.search("warm up", k=10)
    texts = eng._state.catalogue.texts  # noqa: SLF001 - queries drawn from the catalogue's own texts
    picks = np.random.default_rng(0).integers(0, len(texts), 64).tolist()
    families = {
        "latency_bench": [" ".join(texts[i].splitlines()[0].split()[:6]) for i in picks],
        "title_lower": [texts[i].splitlines()[0].split(": ", 1)[1].split(" (")[0].lower() for i in picks],
        "descriptive": ["funny animated movie for kids about toys", "space adventure with robots",
                        "romantic comedy in paris", "dark psychological thriller", "documentary about music",
                        "war drama", "horror movie with zombies", "animated children fantasy"],
        "one_common_word": ["comedy", "drama", "action", "thriller"],
    }
    return eng, families
