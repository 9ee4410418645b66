"""Clusterers that keep people together, compared where recall is lost: low-resolution faces (issue 16, item 5).

Protocol. Dev sets from bench/review_devsets.py: LFW people with >= 6 photos downscaled to 20 and 16 px, split
by identity (``lfw_split``) into train and test, and glint-sample at 20 and 16 px. Every setting of every method
is chosen on the LFW *train* split only: per resolution on lfw<px>_train, and once more as one setting for both
resolutions (mean over lfw20_train and lfw16_train: a product does not know a photo's resolution). The test
split and glint are clustered once with the chosen settings and never used to choose. One exact k=30 kNN graph
per set, shared by every method. Selection: the best mean of pairwise F and BCubed F on train among settings
whose pairwise and BCubed precision are not below tuned Infomap's on every train set used (Infomap itself:
best mean F over its threshold). ``fces+attach`` is tuned in two stages: attachment on top of the 10 best
``fces`` settings with precision kept and the 10 best without, on each train set. Held-out differences against
tuned Infomap come with the share of 200 random halves of the people on which the method still beats it on both
F (a measure of spread, not a significance test).

Methods: ``infomap`` (the product default; threshold = cosine floor, 0.5 in the product, tuned here);
``infomap-recall`` (shared-neighbour weights ``power``, singleton attachment by face-to-centroid cosine);
``fces`` (neighbour-overlap edge probabilities with early stopping, then Infomap; our version of the FC-ES
idea, arXiv 2408.13431); ``infomap-attach`` (Infomap, then clusters of <= ``max_size`` faces join the cluster
whose centroid is clearly closest); ``fces+attach`` (both); ``density-peak`` (each face links to its most
similar denser kNN neighbour, density diffused over the graph, similarity = overlap of neighbour
distributions; our version of arXiv 2207.11895's idea). See pipeline/clustering/neighbour_edges.py and
diffusion.py.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/clustering_recall_hard.py
writes bench/results/clustering_recall_hard.{json,md}.
"""
from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness
from bench.review_devsets import CACHE, load
from pipeline.clustering.diffusion import density_peak_links, diffused_density, knn_similarities
from pipeline.clustering.infomap_edges import infomap_on_edges
from pipeline.clustering.knn import build_knn
from pipeline.clustering.methods import METHODS, cluster
from pipeline.clustering.metrics import evaluate_clustering
from pipeline.clustering.neighbour_edges import _singletons, attach_small_clusters, early_stopped_edges
from pipeline.clustering.recall import attach_singletons, reweight_edges
from pipeline.features import load_features

K = 30
RESOLUTIONS = (20, 16)
PRODUCT_INFOMAP = {"threshold": 0.5}
KEYS = ("pairwise_precision", "pairwise_recall", "pairwise_f", "bcubed_precision", "bcubed_recall", "bcubed_f",
        "clusters", "true_clusters", "singletons")


def grid(**axes) -> list[dict]:
    names = list(axes)
    return [dict(zip(names, v)) for v in itertools.product(*(axes[n] for n in names))]


def steps(a: float, b: float, s: float) -> list[float]:
    return [round(float(x), 3) for x in np.arange(a, b + s / 2, s)]


def _infomap(g, p):
    src, dst, w = reweight_edges(g, p["threshold"], p.get("power", 0.0))
    return _singletons(infomap_on_edges(g.n, src, dst, w))


def _fces(g, p):
    src, dst, w = early_stopped_edges(g, tau=p["tau"], min_prob=p["min_prob"], threshold=p["threshold"],
                                      early_stop=p["early_stop"], weight=p["weight"])
    return _singletons(infomap_on_edges(g.n, src, dst, w))


def _attach_faces(lab, emb, g, q):
    return attach_singletons(lab, emb, g, attach_sim=q["attach_sim"], attach_margin=q["attach_margin"])


def _attach_small(lab, emb, g, q):
    return attach_small_clusters(lab, emb, g, attach_sim=q["attach_sim"], attach_margin=q["attach_margin"],
                                 max_size=q["max_size"])


def _density_peak(g, p):
    key = (id(g), p["tau"], p["alpha"])
    if key not in _DP_CACHE:  # similarity and density depend on tau and alpha only
        sim = knn_similarities(g, p["tau"])
        _DP_CACHE.clear()
        _DP_CACHE[key] = (sim, diffused_density(g, sim, tau=p["tau"], alpha=p["alpha"]))
    sim, rho = _DP_CACHE[key]
    parent = density_peak_links(g, sim, rho, link_sim=p["link_sim"], threshold=p["threshold"])
    child = np.flatnonzero(parent >= 0)
    adj = sp.csr_matrix((np.ones(child.size), (child, parent[child])), shape=(g.n, g.n))
    return connected_components(adj, directed=True, connection="weak")[1]


_DP_CACHE: dict = {}
FCES_GRID = grid(threshold=[0.3, 0.35, 0.4, 0.45, 0.5, 0.55], tau=[0.2, 0.3, 0.5, 0.7, 1.0], min_prob=steps(0.05, 0.5, 0.05),
                 early_stop=[True, False], weight=["prob", "prob*cos"])
SMALL_ATTACH = grid(attach_sim=steps(0.0, 0.8, 0.1), attach_margin=[0.0, 0.025, 0.05, 0.1, 0.15], max_size=[1, 2, 3])
FACE_ATTACH = [None] + grid(attach_sim=steps(0.1, 0.7, 0.1), attach_margin=[0.0, 0.05, 0.1, 0.15])
STAGE_TOP = 10  # fces+attach: attachment tried on this many best fces settings (precision kept, and any)
#: family -> (registered method, base grid (None: chosen from fces), base labels, post-step grid, post step)
FAMILIES = {
    "infomap": ("infomap", grid(threshold=steps(0.35, 0.6, 0.01)), _infomap, [None], None),
    "infomap-recall": ("infomap-recall", grid(threshold=steps(0.35, 0.575, 0.025), power=[0.0, 1.0, 2.0]), _infomap,
                       FACE_ATTACH, _attach_faces),
    "fces": ("fces", FCES_GRID, _fces, [None], None),
    "infomap-attach": ("infomap-attach", grid(threshold=steps(0.35, 0.6, 0.025)), _infomap, SMALL_ATTACH,
                       _attach_small),
    "fces+attach": ("fces", None, _fces, SMALL_ATTACH, _attach_small),
    "density-peak": ("density-peak", grid(tau=[0.2, 0.3, 0.5, 1.0], alpha=[0.0, 0.5, 0.9],
                                          link_sim=steps(0.0, 0.4, 0.05), threshold=[0.4, 0.45, 0.5, 0.55, 0.6]),
                     _density_peak, [None], None),
}


def objective(r: dict) -> float:
    return (r["pairwise_f"] + r["bcubed_f"]) / 2.0


def metrics(y, lab) -> dict:
    r = evaluate_clustering(y, lab)
    return {k: (round(r[k], 4) if isinstance(r[k], float) else r[k]) for k in KEYS}


def tune(family: str, base_grid: list[dict], emb, y, g) -> list[dict]:
    """Every setting's metrics on one train set, in grid order (the same order on every set)."""
    _, _, base_fn, post_grid, post_fn = FAMILIES[family]
    rows = []
    for p in base_grid:
        lab0 = base_fn(g, p)
        for q in post_grid:
            lab = lab0 if q is None else post_fn(lab0, emb, g, q)
            rows.append({"params": {**p, **(q or ({"attach_sim": None} if post_fn else {}))}, **metrics(y, lab)})
    return rows


def combine(per_train: dict[str, list[dict]]) -> list[dict]:
    """Rows of several train sets (same settings, same order): metrics averaged, each set's kept beside."""
    names = list(per_train)
    out = []
    for rows in zip(*per_train.values()):
        mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in KEYS if isinstance(rows[0][k], float)}
        out.append({"params": rows[0]["params"], **mean, "per_set": dict(zip(names, rows))})
    return out


def keeps_precision(row: dict, base: dict) -> bool:
    return all(r["pairwise_precision"] >= b["pairwise_precision"] and r["bcubed_precision"] >= b["bcubed_precision"]
               for r, b in zip(row["per_set"].values(), base["per_set"].values()))


def choose(rows: list[dict], base: dict | None) -> dict | None:
    if base is not None:
        rows = [r for r in rows if keeps_precision(r, base)]
    return max(rows, key=objective) if rows else None


def stage_grid(fces_rows: dict[str, list[dict]], bases: dict[str, dict]) -> list[dict]:
    """fces settings attachment is tried on: each train set's STAGE_TOP best with precision kept, and any."""
    out = []
    for t, rows in fces_rows.items():
        kept = [r for r in rows if r["pairwise_precision"] >= bases[t]["pairwise_precision"]
                and r["bcubed_precision"] >= bases[t]["bcubed_precision"]]
        for pool in (kept, rows):
            out += [r["params"] for r in sorted(pool, key=objective, reverse=True)[:STAGE_TOP]]
    return [dict(p) for p in {tuple(sorted(p.items())): p for p in out}.values()]


def tune_all(sets: dict, graphs: dict, trains: list[str]) -> dict[str, dict[str, list[dict]]]:
    """family -> train set -> rows; fces+attach last, on the fces settings every train set picked."""
    tuning: dict[str, dict[str, list[dict]]] = {}
    for fam, (_, base_grid, *_rest) in FAMILIES.items():
        if base_grid is None:
            bases = {t: choose(combine({t: tuning["infomap"][t]}), None) for t in trains}
            base_grid = stage_grid(tuning["fces"], bases)
        tuning[fam] = {}
        for t in trains:
            t0 = time.perf_counter()
            emb, y = sets[t]
            tuning[fam][t] = tune(fam, base_grid, emb.astype(np.float64), y, graphs[t])
            print(t, fam, len(tuning[fam][t]), "settings", round(time.perf_counter() - t0, 1), "s", flush=True)
    return tuning


def run_chosen(name: str, method: str, params: dict, emb, y, g) -> dict:
    if "attach_sim" in params and params["attach_sim"] is None and METHODS[method].defaults.get("attach_sim"):
        # cluster() drops None for a setting with a default; a bar no cosine reaches is "off"
        params = {**params, "attach_sim": 2.0}
    t0 = time.perf_counter()
    lab = cluster(emb, method, graph=g, **params)
    sec = round(time.perf_counter() - t0, 3)
    return {"method": name, "setting": params, **metrics(y, lab), "seconds": sec, "labels": lab}


SUBSAMPLES = 200


def win_share(y, lab, base, seed: int = 0) -> float:
    """Share of random halves of the people on which ``lab`` beats ``base`` on both pairwise and BCubed F."""
    rng = np.random.default_rng(seed)
    people = np.unique(y)
    wins = 0
    for _ in range(SUBSAMPLES):
        keep = np.isin(y, rng.choice(people, people.size // 2, replace=False))
        a, b = evaluate_clustering(y[keep], lab[keep]), evaluate_clustering(y[keep], base[keep])
        wins += a["pairwise_f"] > b["pairwise_f"] and a["bcubed_f"] > b["bcubed_f"]
    return round(wins / SUBSAMPLES, 3)


def block(title: str, trains: list[str], held: list[str], tuning: dict, sets: dict, graphs: dict) -> dict:
    chosen: dict[str, dict | None] = {}
    for fam in FAMILIES:
        rows = combine({t: tuning[fam][t] for t in trains})
        chosen[fam] = choose(rows, None if fam == "infomap" else chosen["infomap"])
        print(title, fam, "chosen", chosen[fam] and chosen[fam]["params"], flush=True)
    table = []
    for n in trains + held:
        e, y = sets[n]
        rows = [run_chosen("infomap (product, 0.5)", "infomap", PRODUCT_INFOMAP, e, y, graphs[n])]
        rows += [run_chosen(f, FAMILIES[f][0], p["params"], e, y, graphs[n]) for f, p in chosen.items() if p is not None]
        base = rows[1]["labels"]  # tuned Infomap
        for r in rows:
            lab = r.pop("labels")
            if n in held and r["method"] not in ("infomap", "infomap (product, 0.5)"):
                r["win_share"] = win_share(y, lab, base)
            table.append({"set": n, **r})
    return {"title": title, "trains": trains, "held_out": held, "chosen": {f: c and c["params"] for f, c in chosen.items()},
            "table": table}


def clean_check(chosen: dict) -> dict:
    """The one-setting-for-both choices on clean (full-resolution) faces: a sanity check, never used to choose."""
    lfw = load_features(CACHE / "lfw_sface.npz")
    sets = {"glint (clean)": load("glint"), "lfw (clean, all)": (lfw.embeddings.astype(np.float32), lfw.labels)}
    table = []
    for n, (e, y) in sets.items():
        g = build_knn(e, K, "flat")
        rows = [run_chosen("infomap (product, 0.5)", "infomap", PRODUCT_INFOMAP, e, y, g)]
        rows += [run_chosen(f, FAMILIES[f][0], p, e, y, g) for f, p in chosen.items() if p is not None]
        for r in rows:
            r.update(largest_person(y, r.pop("labels")))
        table += [{"set": n, **r} for r in rows]
    return {"sets": {n: set_info(y) for n, (_, y) in sets.items()}, "table": table}


def set_info(y) -> dict:
    counts = np.unique(y, return_counts=True)[1]
    return {"faces": int(y.size), "identities": int(counts.size), "fewest_photos": int(counts.min()),
            "one_photo_people": int((counts == 1).sum())}


def largest_person(y, lab) -> dict:
    """How the person with the most photos came out: clusters holding their faces, share in the biggest one."""
    names, counts = np.unique(y, return_counts=True)
    mine = lab[y == names[counts.argmax()]]
    pieces = np.unique(mine, return_counts=True)[1]
    return {"largest_person_faces": int(counts.max()), "largest_person_pieces": int(pieces.size),
            "largest_person_kept": round(float(pieces.max() / counts.max()), 3)}


def verdicts(b: dict) -> list[dict]:
    """Per method: does it beat tuned Infomap on both F on every train set (precision kept by the choice), and
    by how much on each held-out set."""
    out = []
    rows = {(r["set"], r["method"]): r for r in b["table"]}
    for fam in FAMILIES:
        if fam == "infomap" or (b["trains"][0], fam) not in rows:
            continue
        wins = all(rows[(t, fam)][m] > rows[(t, "infomap")][m] for t in b["trains"] for m in ("pairwise_f", "bcubed_f"))
        delta = {h: {**{m: round(rows[(h, fam)][m] - rows[(h, "infomap")][m], 4)
                        for m in ("pairwise_precision", "pairwise_f", "bcubed_precision", "bcubed_f")},
                     "win_share": rows[(h, fam)]["win_share"]} for h in b["held_out"]}
        out.append({"block": b["title"], "method": fam, "wins_on_train": wins, "held_out_delta": delta,
                    "held_out_both_f_up": sum(d["pairwise_f"] > 0 and d["bcubed_f"] > 0 for d in delta.values())})
    return out


def main() -> None:
    import faiss

    faiss.omp_set_num_threads(1)
    names = [f"{d}{px}_{p}" if d == "lfw" else f"glint{px}" for px in RESOLUTIONS for d, p in
             (("lfw", "train"), ("lfw", "test"), ("glint", ""))]
    sets = {n: load(n) for n in names}
    graphs = {n: build_knn(e, K, "flat") for n, (e, _) in sets.items()}
    trains = [n for n in names if n.endswith("_train")]
    tuning = tune_all(sets, graphs, trains)
    blocks = [block(f"{px} px", [f"lfw{px}_train"], [f"lfw{px}_test", f"glint{px}"], tuning, sets, graphs)
              for px in RESOLUTIONS]
    blocks.append(block("20 + 16 px, one setting for both", trains, [n for n in names if n not in trains],
                        tuning, sets, graphs))
    clean = clean_check(blocks[-1]["chosen"])
    top = {f: {t: sorted(r, key=objective, reverse=True)[:30] for t, r in by.items()} for f, by in tuning.items()}
    data = {"protocol": __doc__.split("\n\n")[1], "k": K,
            "sets": {n: set_info(y) for n, (_, y) in sets.items()},
            "settings_tried": {f: {t: len(r) for t, r in by.items()} for f, by in tuning.items()},
            "blocks": blocks, "clean": clean, "verdicts": [v for b in blocks for v in verdicts(b)], "tuning_top30": top}
    harness.write_results("clustering_recall_hard", data, markdown(data))


def _row(r: dict) -> str:
    return (f"| {r['set']} | {r['method']} | {r['pairwise_precision']:.4f} | {r['pairwise_recall']:.4f} | "
            f"{r['pairwise_f']:.4f} | {r['bcubed_precision']:.4f} | {r['bcubed_recall']:.4f} | {r['bcubed_f']:.4f} | "
            f"{r['clusters']} / {r['true_clusters']} | {r['singletons']} | {r['seconds']} |")


def _held(v: dict) -> str:
    return "; ".join(f"{h}: pairwise F {x['pairwise_f']:+.4f} (P {x['pairwise_precision']:+.4f}), BCubed F "
                     f"{x['bcubed_f']:+.4f} (P {x['bcubed_precision']:+.4f}), both F up on {x['win_share']:.0%} of "
                     f"half-samples of the people" for h, x in v["held_out_delta"].items())


def conclusion(d: dict) -> list[str]:
    lines = []
    for v in d["verdicts"]:
        if v["wins_on_train"]:
            lines.append(f"- {v['block']}: **{v['method']}** beats tuned Infomap on both pairwise and BCubed F on the "
                         f"train split without losing precision; held out, against tuned Infomap: {_held(v)}.")
        else:
            lines.append(f"- {v['block']}: {v['method']} does not beat tuned Infomap on both F on the train split "
                         f"without losing precision (held out, for the record: {_held(v)}).")
    everywhere = sorted({v["method"] for v in d["verdicts"]} - {v["method"] for v in d["verdicts"] if not v["wins_on_train"]})
    lines += ["", f"Methods that win on the train split in every block: {', '.join(everywhere) or 'none'}."]
    joint = [v for v in d["verdicts"] if v["block"] == d["blocks"][-1]["title"]]
    good = [v for v in joint if v["wins_on_train"] and 2 * v["held_out_both_f_up"] > len(v["held_out_delta"])]
    lines.append("With one setting for both resolutions, methods that win on train and also raise both F on a majority "
                 "of the held-out sets: " + (", ".join(f"{v['method']} ({v['held_out_both_f_up']} of "
                                                       f"{len(v['held_out_delta'])})" for v in good) or "none") + ".")
    lines.append(_threshold_note(d))
    lines.append(_clean_note(d, [v["method"] for v in joint if v["wins_on_train"]]))
    lines.append(_recommendation(d, [v["method"] for v in good]))
    low = min(v["fewest_photos"] for v in d["sets"].values())
    lines.append(f"Every person in the low-resolution sets has at least {low} photos (no true singletons, so attaching "
                 "a lone face is never wrong there); the clean sets have "
                 + ", ".join(f"{v['one_photo_people']} one-photo people ({n})" for n, v in d["clean"]["sets"].items())
                 + ".")
    return lines


CLEAN_TOLERANCE = 0.005  # F a recall fix may lose on clean faces against the product's Infomap


def _recommendation(d: dict, candidates: list[str]) -> str:
    rows = {(r["set"], r["method"]): r for r in d["clean"]["table"]}
    base = "infomap (product, 0.5)"
    ok = [m for m in candidates if all(rows[(s, m)][f] >= rows[(s, base)][f] - CLEAN_TOLERANCE
                                       for s in d["clean"]["sets"] for f in ("pairwise_f", "bcubed_f"))]
    if ok:
        return (f"Recommendation (computed): {', '.join(ok)} win on the low-resolution train splits, hold up on most "
                f"held-out sets and stay within {CLEAN_TOLERANCE} F of Infomap at 0.5 on clean faces: worth a switch.")
    return ("Recommendation (computed): keep `infomap` at 0.5 as the default: no method wins on the low-resolution "
            f"train splits, raises both F on most held-out sets and stays within {CLEAN_TOLERANCE} F of it on clean "
            "faces.")


def _clean_note(d: dict, methods: list[str]) -> str:
    rows = {(r["set"], r["method"]): r for r in d["clean"]["table"]}
    parts = []
    for m in methods:
        for s in d["clean"]["sets"]:
            r, b = rows[(s, m)], rows[(s, "infomap (product, 0.5)")]
            parts.append(f"{m} on {s}: pairwise F {r['pairwise_f'] - b['pairwise_f']:+.4f}, BCubed F "
                         f"{r['bcubed_f'] - b['bcubed_f']:+.4f}, pairwise P {r['pairwise_precision'] - b['pairwise_precision']:+.4f}")
    return ("On clean faces, against the product's Infomap at 0.5: " + "; ".join(parts) + ".") if parts else ""


def _threshold_note(d: dict) -> str:
    """Tuned Infomap (one threshold for both resolutions) against the product's 0.5 on the held-out sets."""
    b = d["blocks"][-1]
    rows = {(r["set"], r["method"]): r for r in b["table"]}
    up = [h for h in b["held_out"] if all(rows[(h, "infomap")][m] > rows[(h, "infomap (product, 0.5)")][m]
                                           for m in ("pairwise_f", "bcubed_f"))]
    return (f"Infomap's own threshold tuned on these train sets ({b['chosen']['infomap']}) raises both F over the "
            f"product's 0.5 on {len(up)} of {len(b['held_out'])} held-out sets ({', '.join(up) or 'none'}).")


def markdown(d: dict) -> str:
    out = ["# Clusterers that keep people together, on low-resolution faces (issue 16, item 5)", "", d["protocol"], "",
           "Sets: " + ", ".join(f"{n} {v['faces']} faces / {v['identities']} people" for n, v in d["sets"].items()),
           "", "Settings tried per train set: " + ", ".join(f"{f} {max(c.values())}" for f, c in d["settings_tried"].items())
           + " (the 30 best of each: `tuning_top30` in the JSON).", ""]
    head = [("| set | method | pairwise P | pairwise R | pairwise F | BCubed P | BCubed R | BCubed F | clusters / true "
             "| singletons | s |"), "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for b in d["blocks"]:
        out += [f"## {b['title']}", "", f"Chosen on {' + '.join(b['trains'])} (best mean F with precision kept):", ""]
        out += [f"- **{f}**: {p if p is not None else 'no setting keeps precision'}" for f, p in b["chosen"].items()]
        for s in b["trains"] + b["held_out"]:
            tag = "train: chosen here" if s in b["trains"] else "held out"
            out += ["", f"### {s} ({tag})", ""] + head + [_row(r) for r in b["table"] if r["set"] == s]
        out.append("")
    c = d["clean"]
    out += ["## Clean faces (sanity check of the one-setting choices; never used to choose)", "",
            "Sets: " + ", ".join(f"{n} {v['faces']} faces / {v['identities']} people" for n, v in c["sets"].items()), ""]
    out += head + [_row(r) for r in c["table"]] + [""]
    out += ["The person with the most photos on each clean set: clusters holding their faces / share in the biggest:", ""]
    out += [f"- {r['set']}, {r['method']}: {r['largest_person_faces']} faces in {r['largest_person_pieces']} clusters, "
            f"{r['largest_person_kept']:.0%} in the biggest" for r in c["table"]] + [""]
    out += ["## Conclusion (computed)", ""] + conclusion(d)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
