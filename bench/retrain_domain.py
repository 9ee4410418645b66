"""Retraining on a domain the stock recognizer handles badly: low-resolution LFW (issue 15).

    PYTHONPATH=. .venv/bin/python bench/retrain_domain.py                  # CPU; writes bench/results/retrain_domain.{json,md,png}
    PYTHONPATH=. .venv/bin/python bench/retrain_domain.py --device cuda    # the same on a GPU (retrain_domain_cuda.*)

The domain (``bench/retrain_domain_data.py``): LFW faces detected and aligned as the product does, the
target people's crops downscaled to 16 px and back up to 112. Identities are split once by a seed:
``labeled`` (clean LFW people, the labeled set), ``train`` (target-domain people whose faces are the
unlabeled set), ``val`` (target-domain people held out of every training, used only to choose settings)
and ``test`` (target-domain people never used for training or choosing: every row's headline numbers).

The loop runs **in-process**, through the same functions the app's stages call (``bench/retrain_app_loop.py``
runs the same domain through the product itself, its workers and REST API): overlap separation (``facecurate.runs.services.scoring``: labeled class means,
out-of-fold reference threshold, ``pipeline.overlap.separate_overlap``), Infomap clustering and p-
(``pipeline.clustering``, ``pipeline.uncertainty``), the training set (``pipeline.retraining.build_training_set``)
and fine-tuning (``pipeline.recognition.training.train_on_crops``, with the frozen trunk's activations
cached once for all rows: ``bench/retrain_domain_cache.py``). Pseudo-labels come from the parent's
embeddings, as a product run makes them.

Rows, all scored on the same unseen test people (TAR at FAR 1e-3 / 1e-4 over all pairs, rank-1), on the
clean LFW pairs protocol (10 folds) and with their training time: parent; BatchNorm statistics re-estimated
on the unlabeled target faces (every BatchNorm of the network; no labels); labeled only; pseudo-labels
hard, soft gamma 1 and 2 (with the product's other defaults); naive (no overlap separation); true labels
(upper bound); and the product's default recipe (``pipeline.retraining.recipe.DEFAULT_RECIPE``).

Selection: ``--select`` first trains every candidate of ``CANDIDATES`` and scores it on the val people
only; the table says which won. The product default must be that winner: the script checks and says so.

This bench trains at most ``1 + NUM_STAGES - CUT`` (8) stages over its cached activations. It chose rounds 1
and 2 of the recipe (``bench/results/retrain_domain.md``). Round 3 trains the whole network, which this cache
cannot do, so it was chosen and measured through the product (``bench/retrain_app_loop.py``); with that
recipe as the default, this script says so and stops.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.retrain_domain_cache import CUT, build_groups, domain_dir, stage_activations, trunk_acts  # noqa: E402
from bench.retrain_domain_data import PAIRS, DomainConfig, split_identities  # noqa: E402
from bench.retrain_domain_report import markdown, plot  # noqa: E402
from pipeline.features import FeatureSet, l2_normalize  # noqa: E402
from pipeline.recognition.sface_torch import NUM_STAGES  # noqa: E402
from pipeline.retraining.recipe import DEFAULT_RECIPE, Recipe  # noqa: E402

CACHED_ONLY = False  # --cached-only: rows not trained yet are reported missing instead of trained

#: The recipe the candidates change: round 1's val winner (2 stages, lr 1e-4, 5 epochs, soft gamma 2, no
#: low-resolution copies), spelled out so that a new product default does not change (and retrain) them.
BASE = Recipe(trainable_blocks=2, lr=1e-4, epochs=5, weighting="soft", gamma=2.0, close_class_threshold=None,
              merge_threshold=None, lowres_copies=False, min_cluster_size=2, max_faces_per_cluster=50)

#: Settings tried on the val people (each: changes to ``BASE``). The first is round 1's ("old") default.
CANDIDATES: dict[str, dict] = {
    "old default (2 stages, lr 1e-4, soft)": dict(trainable_blocks=2, lr=1e-4, close_class_threshold=None, weighting="soft"),
    "1 stage, lr 1e-3, hard": dict(trainable_blocks=1, lr=1e-3, close_class_threshold=None, weighting="hard"),
    "1 stage, lr 1e-3, hard, close-class mask 0.4": dict(trainable_blocks=1, lr=1e-3, close_class_threshold=0.4,
                                                        weighting="hard"),
    "1 stage, lr 1e-3, soft, close-class mask 0.4": dict(trainable_blocks=1, lr=1e-3, close_class_threshold=0.4,
                                                        weighting="soft"),
    "2 stages, lr 1e-4, soft, close-class mask 0.4": dict(trainable_blocks=2, lr=1e-4, close_class_threshold=0.4,
                                                         weighting="soft"),
    "2 stages, lr 1e-4, hard, close-class mask 0.4": dict(trainable_blocks=2, lr=1e-4, close_class_threshold=0.4,
                                                         weighting="hard"),
    # issue 15, second round: one change each to BASE
    "defaults + low-res copies of the labeled faces": {"lowres_copies": True},
    "defaults + split-people merge 0.5": {"merge_threshold": 0.5},
    "defaults + split-people merge 0.6": {"merge_threshold": 0.6},
    "defaults, 10 epochs": {"epochs": 10},
    "defaults, min cluster size 3": {"min_cluster_size": 3},
    "defaults, 3 stages": {"trainable_blocks": 3},
    # the best two of those on val, together
    "low-res copies + 3 stages": {"lowres_copies": True, "trainable_blocks": 3},
}


def candidate(change: dict) -> Recipe:
    return replace(BASE, **change)


# --------------------------------------------------------------------------- embeddings and scores
class Faces:
    """Crops, names and activations of every group, for one number of trainable stages."""

    def __init__(self, cfg: DomainConfig, device: str) -> None:
        self.cfg, self.device = cfg, device
        self.dir = domain_dir(cfg)
        self.groups = build_groups(cfg)
        stage_activations(self.dir, self.groups, device)

    def names(self, g: str) -> np.ndarray:
        return self.groups[g][1]

    def acts(self, k: int, g: str, flip: bool = False) -> np.ndarray:
        return trunk_acts(self.dir, k, g, self.device, flip)


@torch.inference_mode()
def head_embed(backbone, x: np.ndarray, device: str, batch: int = 256) -> np.ndarray:
    backbone = backbone.to(device).eval()
    out = [backbone.forward_head(torch.from_numpy(np.asarray(x[i:i + batch], np.float32)).to(device)).float().cpu()
           .numpy() for i in range(0, len(x), batch)]
    return l2_normalize(np.concatenate(out))


def scores(emb: np.ndarray, names: np.ndarray) -> dict:
    from pipeline.evaluation.verification import evaluate_features, summary

    s = summary(evaluate_features(FeatureSet(emb, np.arange(len(emb)).astype(str), names), fars=(1e-3, 1e-4)))
    return {"tar@1e-3": s["tar@far=0.001"], "tar@1e-4": s["tar@far=0.0001"], "rank1": s["rank1"]}


def pairs_accuracy(emb: np.ndarray, faces: Faces) -> dict:
    from pipeline.evaluation.verification import evaluate_features

    paths = np.array([f"lfw/{p}" for p in faces.groups["pairs"][2]])
    rep = evaluate_features(FeatureSet(emb, paths), pairs_path=PAIRS, allow_missing=True)["lfw"]
    return {"mean": rep["mean"], "std": rep["std"], "pairs": rep.get("num_pairs")}


def evaluate(backbone, faces: Faces, k: int, sets: tuple[str, ...], pairs: bool) -> dict:
    out = {g: scores(head_embed(backbone, faces.acts(k, g), faces.device), faces.names(g)) for g in sets}
    if pairs:
        out["lfw_pairs"] = pairs_accuracy(head_embed(backbone, faces.acts(k, "pairs"), faces.device), faces)
    return out


def parent_backbone(k: int):
    from pipeline.recognition.sface_torch import load_sface_torch

    m = load_sface_torch(raw_input=False)
    m.set_trainable(k)
    return m


# --------------------------------------------------------------------------- pseudo-labels (the run's stages)
def pseudo_labels(faces: Faces, k: int) -> dict:
    import facecurate.runs.services.scoring as scoring
    from pipeline.clustering.methods import cluster
    from pipeline.clustering.metrics import evaluate_clustering
    from pipeline.uncertainty import clustering_uncertainty

    parent = parent_backbone(k)
    lab = head_embed(parent, faces.acts(k, "labeled"), faces.device)
    unl = head_embed(parent, faces.acts(k, "train"), faces.device)
    _, ident = np.unique(faces.names("labeled"), return_inverse=True)
    cm = scoring.class_means(lab, ident)
    best, arg = scoring.max_logits(cm, unl)
    thr = scoring.equal_error_threshold(*scoring.reference_scores(cm, lab, ident))
    ov, note = scoring.separate(best.astype(np.float64), arg, thr)
    state = ov.state.astype(np.int64)
    out = {"state": state, "embeddings": unl}
    for mode, keep in (("separated", state == 0), ("naive", np.ones(len(unl), bool))):
        labels = np.full(len(unl), -1, np.int64)
        labels[keep] = cluster(unl[keep], "infomap")
        p = np.full(len(unl), np.nan)
        p[keep] = clustering_uncertainty(unl[keep], labels[keep]).p_minus
        out[mode] = {"labels": labels, "p_minus": p,
                     "quality": evaluate_clustering(faces.names("train")[keep], labels[keep])}
    out["overlap"] = {"counts": ov.report.get("counts"), "threshold": thr, "note": note}
    return out


# --------------------------------------------------------------------------- training rows
def training_rows(faces: Faces, pl: dict | None, recipe: Recipe, source: str) -> tuple[list, np.ndarray, np.ndarray, dict]:
    """[(group, row indices)], class names (M,), weights (M,) and facts, for one row's training set."""
    from pipeline.clustering.metrics import evaluate_clustering
    from pipeline.retraining.recipe import pseudo_training_set

    y_lab = faces.names("labeled")
    parts = [("labeled", np.arange(len(y_lab)))]
    labels, weights = [y_lab], [np.ones(len(y_lab))]
    if recipe.lowres_copies:
        y_lr = faces.names("labeled_lr")
        parts.append(("labeled_lr", np.arange(len(y_lr))))
        labels.append(y_lr)
        weights.append(np.ones(len(y_lr)))
    info: dict = {}
    if source == "true":
        y = faces.names("train")
        parts.append(("train", np.arange(len(y))))
        labels.append(np.char.add("target:", y))
        weights.append(np.ones(len(y)))
    elif source in ("separated", "naive"):
        run = pl[source]
        state = pl["state"] if source == "separated" else np.zeros(len(run["labels"]), np.int64)
        rows, cls, w = pseudo_training_set(pl["embeddings"], run["labels"], run["p_minus"], state, recipe)
        parts.append(("train", rows))
        labels.append(np.char.add("pseudo:", cls.astype(str)))
        weights.append(w)
        q = evaluate_clustering(faces.names("train")[rows], cls) if len(rows) else {}
        info = {"pseudo_faces": int(len(rows)), "pseudo_classes": int(len(np.unique(cls))),
                "pseudo_people": int(len(np.unique(faces.names("train")[rows]))),
                "pseudo_pair_precision": q.get("pairwise_precision"), "pseudo_pair_recall": q.get("pairwise_recall")}
    return parts, np.concatenate(labels), np.concatenate(weights).astype(np.float32), info


def train_and_score(name: str, faces: Faces, pl: dict | None, recipe: Recipe, source: str, sets: tuple[str, ...],
                    pairs: bool, tmp: Path, seed: int) -> dict:
    """One training and its scores; kept in the domain cache by (recipe, source, sets, seed), so rows can be
    trained by separate processes (``--only``) and a later run writes the results from all of them."""
    key = json.dumps({"recipe": asdict(recipe), "source": source, "sets": sets, "pairs": pairs, "seed": seed,
                      "device": faces.device.split(":")[0]}, sort_keys=True)
    f = faces.dir / "rows" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if f.exists():
        return {**json.loads(f.read_text()), "row": name}
    if CACHED_ONLY:
        return {"row": name, "source": source, "recipe": asdict(recipe), "missing": "not trained in time (--cached-only)"}
    row = _train_and_score(name, faces, pl, recipe, source, sets, pairs, tmp, seed)
    f.parent.mkdir(exist_ok=True)
    tmp_f = f.with_name(f.name + ".tmp")
    tmp_f.write_text(json.dumps(row, default=float))
    tmp_f.rename(f)
    return row


def _train_and_score(name: str, faces: Faces, pl: dict | None, recipe: Recipe, source: str, sets: tuple[str, ...],
                     pairs: bool, tmp: Path, seed: int) -> dict:
    from pipeline.recognition.models import load_recognizer
    from pipeline.recognition.training import train_on_crops

    k = recipe.trainable_blocks
    parts, labels, weights, info = training_rows(faces, pl, recipe, source)
    crops = np.concatenate([faces.groups[g][0][i] for g, i in parts])
    acts = np.concatenate([faces.acts(k, g)[i] for g, i in parts])
    flipped = np.concatenate([faces.acts(k, g, True)[i] for g, i in parts])
    cfg = recipe.train_config(seed=seed, device=faces.device, log_every=10**9)
    with harness.timed() as t:
        path = train_on_crops(cfg, crops, labels, weights=weights, out_path=tmp / f"{abs(hash(name))}.pt",
                              trunk_cache=(acts, flipped))
    rec = load_recognizer(path, faces.device)
    ck = torch.load(path, map_location="cpu", weights_only=True)
    row = {"row": name, "source": source, "recipe": asdict(recipe), "train_rows": int(len(labels)),
           "classes": int(len(np.unique(labels))), "train_seconds": round(t.seconds, 1),
           "close_class_pairs_masked": ck["metrics"].get("close_class_pairs_masked"), **info}
    row.update(evaluate(rec.model.backbone, faces, k, sets, pairs))
    print(name, {g: row[g] for g in sets}, file=sys.stderr, flush=True)
    return row


def bn_row(faces: Faces, pairs: bool) -> dict:
    """Every BatchNorm's statistics re-estimated on the unlabeled target faces; embeddings cached."""
    from pipeline.recognition.adapt import reestimate_batchnorm
    from pipeline.recognition.sface_torch import SFaceTorchEmbedder, load_sface_torch, sface_input

    sets = ("val", "test") + (("pairs",) if pairs else ())
    cached = {g: faces.dir / f"bn_reest_{g}.npy" for g in sets}
    t = 0.0
    if not all(f.exists() for f in cached.values()):
        m = load_sface_torch(raw_input=False)
        crops = faces.groups["train"][0]
        t0 = time.perf_counter()
        reestimate_batchnorm(m, (sface_input(crops[i:i + 64], raw=False) for i in range(0, len(crops), 64)),
                             device=faces.device)
        t = time.perf_counter() - t0
        emb = SFaceTorchEmbedder(m, batch_size=64, device=faces.device)
        for g, f in cached.items():
            if not f.exists():
                np.save(f, emb.embed(faces.groups[g][0]))
    row = {"row": "BatchNorm re-estimated on the target faces (no labels)", "source": "none",
           "bn_seconds": round(t, 1) if t else None}
    for g in ("val", "test"):
        row[g] = scores(np.load(cached[g]), faces.names(g))
    if pairs:
        row["lfw_pairs"] = pairs_accuracy(np.load(cached["pairs"]), faces)
    return row


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--select", action=argparse.BooleanOptionalAction, default=False,
                    help="also train the CANDIDATES (other stage counts and learning rates) on the val people")
    ap.add_argument("--cached-only", action="store_true", help="report rows not trained yet as missing")
    ap.add_argument("--only", default=None, help="train and cache only this row (or candidate) by name, write nothing")
    ap.add_argument("--pairs", action=argparse.BooleanOptionalAction, default=True, help="clean LFW pairs per row")
    ap.add_argument("--bn-pairs", action=argparse.BooleanOptionalAction, default=None,
                    help="LFW pairs for the BatchNorm row too (7,700 whole-network passes; default: on CUDA only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    most = 1 + NUM_STAGES - CUT
    if DEFAULT_RECIPE.trainable_blocks is None or DEFAULT_RECIPE.trainable_blocks > most:
        sys.exit(f"the default recipe trains {DEFAULT_RECIPE.trainable_blocks} stages; this bench trains at most "
                 f"{most} over its cached activations: measure it with bench/retrain_app_loop.py")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda but torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    global CACHED_ONLY
    CACHED_ONLY = args.cached_only
    t_all = time.perf_counter()
    cfg = DomainConfig(resolution=args.resolution, seed=args.seed)
    faces = Faces(cfg, args.device)
    res: dict = {"domain": asdict(cfg), "split": split_identities(cfg).facts(), "recipe": asdict(DEFAULT_RECIPE),
                 "faces": {g: int(len(v[0])) for g, v in faces.groups.items()}}
    ks = sorted({DEFAULT_RECIPE.trainable_blocks} | ({candidate(c).trainable_blocks
                                                      for c in CANDIDATES.values()} if args.select and not args.only
                                                     else set()))
    pls = {k: pseudo_labels(faces, k) for k in ks}
    pl = pls[DEFAULT_RECIPE.trainable_blocks]
    res["pseudo_labels"] = {"overlap": pl["overlap"], **{m: pl[m]["quality"] for m in ("separated", "naive")}}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only:
            return run_only(args.only, faces, pls, pl, args, Path(tmp))
        if args.select:
            res["selection"], res["candidate_base"] = [], asdict(BASE)
            for name, change in CANDIDATES.items():
                r = candidate(change)
                res["selection"].append(train_and_score(name, faces, pls[r.trainable_blocks], r, "separated",
                                                        ("val",), False, Path(tmp), args.seed))
        res["rows"] = test_rows(faces, pl, args, Path(tmp))
    res["verdict"] = verdict(res)
    res["total_seconds"] = round(time.perf_counter() - t_all, 1)
    name = "retrain_domain" if args.device == "cpu" else "retrain_domain_cuda"
    png = plot(res, ROOT / "bench" / "results" / f"{name}.png")
    harness.write_results(name, res, markdown(res, png.name if png else None))


def row_specs(pl: dict) -> list[tuple[str, Recipe, str]]:
    """(name, recipe, pseudo-label source) of every trained row. The pseudo-label rows change only the
    weighting (the rest is the default recipe); 'naive' clusters every unlabeled face."""
    d = DEFAULT_RECIPE
    plain = replace(d, close_class_threshold=None, merge_threshold=None)
    naive_source = "naive" if not np.array_equal(pl["naive"]["labels"], pl["separated"]["labels"]) else "separated"
    return [("labeled only", d, "none"),
            ("+ pseudo-labels, hard (no split-people handling)", replace(plain, weighting="hard"), "separated"),
            ("+ pseudo-labels, soft gamma 1 (no split-people handling)", replace(plain, weighting="soft", gamma=1.0),
             "separated"),
            ("+ pseudo-labels, soft gamma 2 (no split-people handling)", replace(plain, weighting="soft", gamma=2.0),
             "separated"),
            ("naive: no overlap separation" + ("" if naive_source == "naive" else
                                              " (= separated: the separation found no overlap)"), d, naive_source),
            ("true labels (upper bound)", d, "true"),
            ("product defaults (DEFAULT_RECIPE)", d, "separated")]


def parent_row(faces: Faces, k: int, sets: tuple[str, ...], pairs: bool) -> dict:
    """The parent's scores (cached like the trained rows)."""
    f = faces.dir / "rows" / f"parent_k{k}_{'_'.join(sets)}{'_pairs' if pairs else ''}.json"
    if f.exists():
        return json.loads(f.read_text())
    if CACHED_ONLY:
        return {"row": "parent (SFace as shipped)", "source": "none", "missing": "not scored in time (--cached-only)"}
    row = {"row": "parent (SFace as shipped)", "source": "none", **evaluate(parent_backbone(k), faces, k, sets, pairs)}
    f.parent.mkdir(exist_ok=True)
    f.write_text(json.dumps(row, default=float))
    return row


def run_only(name: str, faces: Faces, pls: dict, pl: dict, args, tmp: Path) -> None:
    for n, change in CANDIDATES.items():
        if n == name:
            r = candidate(change)
            train_and_score(n, faces, pls.get(r.trainable_blocks) or pseudo_labels(faces, r.trainable_blocks), r,
                            "separated", ("val",), False, tmp, args.seed)
            return
    for n, recipe, source in row_specs(pl):
        if n == name:
            train_and_score(n, faces, pl, recipe, source, ("val", "test"), args.pairs, tmp, args.seed)
            return
    if name == "parent":
        parent_row(faces, DEFAULT_RECIPE.trainable_blocks, ("val", "test"), args.pairs)
        return
    if name == "bn":
        bn_row(faces, args.pairs and bool(args.bn_pairs))
        return
    sys.exit(f"no row or candidate named {name!r}")


def test_rows(faces: Faces, pl: dict, args, tmp: Path) -> list[dict]:
    k0 = DEFAULT_RECIPE.trainable_blocks
    sets = ("val", "test")
    rows = [parent_row(faces, k0, sets, args.pairs)]
    bn_pairs = args.pairs and (args.device.startswith("cuda") if args.bn_pairs is None else args.bn_pairs)
    rows.append(bn_row(faces, bn_pairs))
    for name, recipe, source in row_specs(pl):
        rows.append(train_and_score(name, faces, pl, recipe, source, sets, args.pairs, tmp, args.seed))
    return rows


def verdict(res: dict) -> dict:
    """The issue's 'done when', computed from the rows."""
    rows = {r["row"]: r for r in res["rows"]}
    parent, bn = rows["parent (SFace as shipped)"], rows["BatchNorm re-estimated on the target faces (no labels)"]
    true, ours = rows["true labels (upper bound)"], rows["product defaults (DEFAULT_RECIPE)"]
    missing = [r["row"] for r in (parent, bn, true, ours) if "test" not in r]
    if missing:
        return {"incomplete": f"rows not trained in time: {missing}"}
    t = lambda r: r["test"]["tar@1e-3"]  # noqa: E731
    gain, true_gain = t(ours) - t(parent), t(true) - t(parent)
    out = {"test_tar@1e-3": {"parent": t(parent), "bn": t(bn), "defaults": t(ours), "true_labels": t(true)},
           "reaches_0.70": t(ours) >= 0.70,
           "share_of_true_label_gain": gain / true_gain if true_gain > 0 else None,
           "reaches_70pct_of_true_gain": true_gain > 0 and gain >= 0.7 * true_gain,
           "beats_bn_reestimation": t(ours) > t(bn)}
    if "lfw_pairs" in parent and "lfw_pairs" in ours:
        drop = 100 * (parent["lfw_pairs"]["mean"] - ours["lfw_pairs"]["mean"])
        out["lfw_pairs_drop_points"] = drop
        out["lfw_pairs_within_0.3"] = drop <= 0.3
    # the pseudo-label settings compared on the val people (the rows' own val scores, and any candidates)
    done = [r for r in list(res.get("selection") or []) + res["rows"] if r.get("source") == "separated" and "val" in r]
    if done:
        best = max(done, key=lambda r: r["val"]["tar@1e-3"])
        out["val_winner"] = best["row"]
        out["val_winner_tar@1e-3"] = best["val"]["tar@1e-3"]
        out["defaults_are_val_winner"] = best["recipe"] == asdict(DEFAULT_RECIPE)
    return out


if __name__ == "__main__":
    main()
