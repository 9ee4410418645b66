"""A fast in-memory replay of the shipped review queue (facecurate/runs/services/merge_queue.py and the
simulated annotator's answers in facecurate/runs/services/simulate.py), without the database: for
analysing where the queue spends actions beyond the greedy oracle and for trying queue changes on the
**training** sets (lfw20_train, lfw16_train) in seconds. Reported numbers come from the real services
(bench/review_curves.py); this replay follows their rules (candidate pairs, rescoring of changed
clusters, probability floor, merge groups, placements, clean-ups) on the same pure functions.

    nice -n 10 .venv/bin/python -m bench.review_queue_replay lfw20_train lfw16_train
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.clustering.metrics import pairwise_prf
from pipeline.review import gain, merge_model, stray_model
from pipeline.review.candidates import (WHITEN_SHRINK, centroids, cluster_pairs, face_placements, lone_groups,
                                        nearest_others, neighbour_ranks, pair_features, reverse_pairs)
from pipeline.review.oracle import greedy_oracle

KIND_ORDER = {"merge": 0, "place": 1, "clean": 2}


class Replay:
    def __init__(self, d: dict, **opts) -> None:
        self.opts = opts  # clean_min, max_partners: settings tried on the training sets
        self.emb = d["emb"] / np.maximum(np.linalg.norm(d["emb"], axis=1, keepdims=True), 1e-12)
        self.truth, self.p = d["truth"], d["p"]
        self.p_clean = self.p.copy()  # p- as clean-ups read it: a face a person placed (or merged) counts 0
        self.lab = d["labels"].astype(np.int64).copy()
        self.osize = np.bincount(self.lab[self.lab >= 0])[np.maximum(self.lab, 0)].astype(np.float64)
        k = int(self.lab.max()) + 1
        self.state = {c: "pending" for c in range(k)}
        self.raw = self.emb
        if self.opts.setdefault("wccn", WHITEN_SHRINK):  # as shipped: the similarities on features whitened by
            self.rewhiten()  # the run's clusters (--wccn=0: raw features, the queue before stop 29)
        pairs, feats = cluster_pairs(self.emb, self.lab, self.p)
        self.cand = [(int(a), int(b), float(q)) for (a, b), q in zip(pairs.tolist(), merge_model.probability(feats))]
        self.nbr, self.nbr_sim = nearest_others(centroids(self.emb, self.lab, k), 10)  # the service's nbr, nbr_sim
        self.changed: set[int] = set()
        self.into: dict[int, int] = {}
        self.no_pairs: set[tuple] = set()
        self.no_faces: set[tuple] = set()
        self.log: list[tuple] = []
        self.f = [pairwise_prf(self.truth, self.lab)[2]]

    def rewhiten(self) -> None:
        """The features whitened by the clusters as they are (``--wccn``: the shrink; ``--wccn_live=0``: only once,
        by the clusters as built)."""
        from pipeline.clustering.wccn import whiten, within_class_whitening
        lab = self.lab
        if self.opts.get("wccn_confirmed"):  # a trial: the scatter of the clusters a person confirmed only
            ok = np.isin(lab, [c for c, s in self.state.items() if s == "confirmed"])
            if ok.sum() >= self.opts["wccn_confirmed"]:
                lab = np.where(ok, lab, -1)
        self.emb = whiten(self.raw, within_class_whitening(self.raw, lab, float(self.opts["wccn"])))

    # --- state -----------------------------------------------------------------------------------
    def resolve(self, c: int) -> int:
        while c in self.into:
            c = self.into[c]
        return c

    def members(self, c: int) -> np.ndarray:
        return np.flatnonzero(self.lab == c)

    def sizes(self) -> dict[int, int]:
        n = np.bincount(self.lab[self.lab >= 0], minlength=len(self.state))
        return {c: int(n[c]) for c, s in self.state.items() if s != "dismissed" and n[c] > 0}

    def majority(self, c: int):
        m = self.members(c)
        if not len(m):
            return None, []
        cnt = sorted(Counter(self.truth[m].tolist()).items(), key=lambda kv: (-kv[1], kv[0]))
        top = cnt[0][0]
        return top, m[self.truth[m] != top].tolist()

    # --- queue -----------------------------------------------------------------------------------
    def pair_probabilities(self, live: dict, floor: float | None = None) -> dict[tuple, float]:
        if self.opts.get("peff"):  # a trial: pair features read p- as review left it (p_clean; 0 in confirmed clusters)
            p0, self.p = self.p, self.p_clean.copy()
            self.p[np.isin(self.lab, [c for c, s in self.state.items() if s == "confirmed"])] = 0.0
            try:
                return self._pair_probabilities(live, floor)
            finally:
                self.p = p0
        return self._pair_probabilities(live, floor)

    def _pair_probabilities(self, live: dict, floor: float | None = None) -> dict[tuple, float]:
        best: dict[tuple, float] = {}
        no = {(min(x, y), max(x, y)) for x, y in ((self.resolve(a), self.resolve(b)) for a, b in self.no_pairs)}
        for a, b, q in self.cand:
            a, b = self.resolve(a), self.resolve(b)
            key = (min(a, b), max(a, b))
            if a != b and a in live and b in live and key not in no:
                best[key] = max(best.get(key, 0.0), q)
        if self.changed:  # a changed cluster paired again with its nearest live clusters as they are now
            only = [c for c in self.changed if c in live]
            new, _ = cluster_pairs(self.emb, self.lab, self.p, only=only) if only else (np.zeros((0, 2)), None)
            if only and self.opts.get("reverse", 1):  # unchanged clusters that have a changed one near now
                n = int(self.lab.max()) + 1
                rows = [c for c in live if c < len(self.nbr) and c not in self.changed]
                ids = np.full((n, self.nbr.shape[1]), -1, np.int64)
                sims = np.zeros(ids.shape)
                still = np.isin(self.nbr[rows], [c for c in live if c not in self.changed])
                ids[rows] = np.where(still, self.nbr[rows], -1)
                sims[rows] = self.nbr_sim[rows]
                back = reverse_pairs(centroids(self.emb, self.lab, n), only, rows, ids, sims, 10)
                new = np.concatenate([np.asarray(new, np.int64).reshape(-1, 2), np.sort(back, axis=1)])
            for a, b in new.tolist():
                if (a, b) not in no:
                    best.setdefault((a, b), 0.0)
        redo = [k for k in best if k[0] in self.changed or k[1] in self.changed]
        if redo:  # the service's _rescored: the pairs' features on the clusters as they are now
            best.update(zip(redo, self.score(live, redo)))
        if self.opts.get("link_k"):
            best.update(self.link_pairs(live, best, no))
        floor = merge_model.probability_floor() if floor is None else floor
        return {k: q for k, q in best.items() if q >= floor}

    def link_pairs(self, live: dict, best: dict, no: set) -> dict[tuple, float]:
        """A trial (``--link_k``): each live singleton also paired with the ``link_k`` clusters of its nearest
        faces (by best link, not centroid), scored on the clusters as they are now."""
        inl = np.flatnonzero(np.isin(self.lab, list(live)))
        new = []
        for c in (c for c, n in live.items() if n == 1):
            near = self.lab[inl[np.argsort(-(self.emb[inl] @ self.emb[self.members(c)[0]]))]]
            got = [int(o) for o in dict.fromkeys(near.tolist()) if o != c][:int(self.opts["link_k"])]
            new += [(min(c, o), max(c, o)) for o in got if (min(c, o), max(c, o)) not in best]
        new = [k for k in dict.fromkeys(new) if k not in no]
        return dict(zip(new, self.score(live, new))) if new else {}

    def score(self, live: dict, keys: list) -> list[float]:
        """The merge model's probability of each pair, on the clusters as they are now."""
        return merge_model.probability(self.features(live, keys)).tolist()

    def features(self, live: dict, keys: list) -> np.ndarray:
        """(len(keys), F) the merge model's features of each pair, on the clusters as they are now."""
        ids = sorted(live)
        pos = {c: i for i, c in enumerate(ids)}
        order = np.argsort(self.lab, kind="stable")
        bounds = np.searchsorted(self.lab[order], [ids, np.array(ids) + 1])
        members = [order[lo:hi] for lo, hi in zip(*bounds)]
        cent = np.stack([self.emb[m].sum(0) for m in members])
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
        pmax = np.array([self.p[m].max() for m in members])
        ranks = neighbour_ranks(cent.astype(np.float32), [pos[c] for k in keys for c in k])
        return np.array([pair_features(self.emb, members, pmax, pos[a], pos[b], float(cent[pos[a]] @ cent[pos[b]]),
                                       self.p, ranks) for a, b in keys]).reshape(len(keys), -1)

    def items(self) -> list[tuple]:
        """(per_action, kind, cluster, payload, gain, actions) most first, as review_items sorts them;
        with nothing above the probability floor left, the pairs under it and the clean-ups under CLEAN_MIN
        (as shipped; ``--below_floor=0`` to leave them out, ``--late_clean=0`` for the pairs alone)."""
        out = self._items(None)
        if not out and self.opts.get("small", gain.SMALL):  # as shipped: the small clusters past their nearest
            out = self.small_items()
        if not out and self.opts.get("below_floor", 1):
            late = self.opts.get("late_clean", 1)  # as shipped: the clean-ups under their floor beside them
            out = [it for it in self._items(0.0, 1e-9 if late else None) if it[1] == "merge" or late and it[1] == "clean"]
            out.sort(key=_order)
        return out

    def small_items(self) -> list[tuple]:
        """The service's small_groups: each live cluster of at most ``--small`` faces with its nearest live
        clusters not answered no (up to DEEP_MAX down), and each rejected face with its nearest past its "no"s."""
        live, cap = self.sizes(), int(self.opts.get("small", gain.SMALL))
        no = {(min(x, y), max(x, y)) for x, y in ((self.resolve(a), self.resolve(b)) for a, b in self.no_pairs)}
        ids = np.array(sorted(live), np.int64)
        small = [i for i, c in enumerate(ids.tolist()) if live[c] <= cap]
        out = []
        if small:
            pos = np.full(int(self.lab.max()) + 1, -1, np.int64)
            pos[ids] = np.arange(len(ids))
            lab = np.where(self.lab >= 0, pos[np.maximum(self.lab, 0)], -1)
            groups = lone_groups(centroids(self.emb, lab, len(ids)), ids, small, no, gain.MAX_PARTNERS, gain.DEEP_MAX,
                                 gain.SMALL_SCORED)
            keys = [(a, b) for a, bs in groups.items() for b in bs]
            q = dict(zip(keys, self.score(live, keys))) if keys else {}
            for a, bs in groups.items():
                partners = sorted(((b, q[(a, b)]) for b in bs), key=lambda x: (-x[1], x[0]))
                if partners:
                    g = live[a] * sum(x * live[b] for b, x in partners)
                    out.append((g, "merge", a, partners, g, 1.0))
        out += self.place_items(live, deep=True)
        out.sort(key=_order)
        return out

    def place_items(self, live: dict, deep: bool = False) -> list[tuple]:
        """Each rejected face with its likely live clusters not answered no (``deep``: past its "no"s)."""
        rej = np.flatnonzero(self.lab < 0)
        if not len(rej):
            return []
        no_faces = {(f, self.resolve(c)) for f, c in self.no_faces}
        k = int(self.opts.get("place_k", 5))
        if deep:
            nos = Counter(f for f, _ in self.no_faces)
            k = min(k + max(nos[int(f)] for f in rej), gain.DEEP_MAX)
        place, pf = face_placements(self.emb, self.lab, k=k, p_minus=self.p, rows=rej)
        place_q = merge_model.probability(pf.reshape(-1, pf.shape[-1])).reshape(place.shape)
        out = []
        for i in rej:
            offers: dict[int, float] = {}
            for c, q in zip(place[i].tolist(), place_q[i].tolist()):
                c = self.resolve(c) if c >= 0 else c
                if c in live and (int(i), c) not in no_faces:
                    offers[c] = max(offers.get(c, 0.0), q)
            if offers:  # the face with its likely clusters: one decision
                top = sorted(list(offers.items())[:int(self.opts.get("place_k", 5))], key=lambda x: (-x[1], x[0]))
                g = sum(q * live[c] for c, q in top)
                out.append((g, "place", top[0][0], (int(i), top), g, 1.0))
        return out

    def _items(self, floor, clean_min=None) -> list[tuple]:
        live = self.sizes()
        best = self.pair_probabilities(live, floor)
        out = [(g, "merge", a, partners, g, 1.0)
               for g, a, partners in gain.merge_groups(((a, b, q) for (a, b), q in best.items()), live,
                                                      **({"max_partners": int(self.opts["max_partners"])}
                                                         if "max_partners" in self.opts else {}))]
        out += self.place_items(live)
        for c in live:
            if self.state[c] == "pending":
                m = self.members(c)
                p = self.p_clean[m]  # a trial (--osize): P(stray) read at the size of the cluster p- was computed in
                size = self.osize[m] if self.opts.get("osize") else len(p)  # the stray model gives size < 2 a 0
                fixed, actions = gain.cleanup_gain(stray_model.probability(p, size))
                actions = self.opts.get("clean_actions", actions)  # a trial: every clean-up one action
                if fixed < (clean_min or self.opts.get("clean_min", gain.CLEAN_MIN)):
                    continue
                out.append((fixed / actions, "clean", c, None, fixed, actions))
        out.sort(key=_order)
        return out

    # --- answers ---------------------------------------------------------------------------------
    def act(self, what: str, item) -> None:
        self.f.append(pairwise_prf(self.truth, self.lab)[2])
        self.log.append((what, item[1], item[2], round(item[0], 3), self.f[-1]))

    def take(self, item) -> None:
        _, kind, c, payload, _, _ = item
        if kind == "merge":
            person = self.majority(c)[0]
            same = [b for b, _ in payload if self.majority(b)[0] == person]
            self.no_pairs |= {(min(b, c), max(b, c)) for b, _ in payload if b not in same}
            if same:  # the service's _merge_into_keeper: into the confirmed one, else the largest, else the anchor
                keeper = max([c, *same], key=lambda x: (self.state[x] == "confirmed", len(self.members(x)), x == c))
                for b in [x for x in [c, *same] if x != keeper]:
                    if self.opts.get("seen_merged", 1):
                        self.p_clean[self.lab == b] = 0.0
                    self.lab[self.lab == b] = keeper
                    self.into[b], self.state[b] = keeper, "dismissed"
                    self.changed |= {b, keeper}
            self.act("merge" if same else "no", item)
        elif kind == "place":
            face, top = payload
            hit = [c2 for c2, _ in top if self.truth[face] == self.majority(c2)[0]]
            if hit:
                if self.opts.get("seen_placed", 1):
                    self.p_clean[face] = 0.0
                self.lab[face] = hit[0]
                self.changed.add(hit[0])
            else:
                self.no_faces |= {(face, c2) for c2, _ in top}
            self.act("place" if hit else "no_place", item)
        else:
            _, outliers = self.majority(c)
            if outliers and self.opts.get("split", 1):
                outliers = self.split_off(c, outliers, item)
            if outliers:
                self.lab[outliers] = -1
                self.changed.add(c)
                if not len(self.members(c)):
                    self.state[c] = "dismissed"
                if not self.opts.get("one_clean", 1) or self.state[c] == "dismissed":
                    self.act("reject", item)
            if self.state[c] != "dismissed":
                self.state[c] = "confirmed"
                self.changed.add(c)  # its version moves on: the service pairs it again
                self.act("reject_confirm" if outliers and self.opts.get("one_clean", 1) else "confirm", item)

    def split_off(self, c: int, outliers: list, item) -> list:
        """Each other person with at least two faces here split off into a new cluster (one action
        each, its faces counted right in clean-ups); returns the single outliers left to reject."""
        by = Counter(self.truth[outliers].tolist())
        rest = []
        for person in sorted(by):
            faces = [f for f in outliers if self.truth[f] == person]
            if len(faces) < 2:
                rest += faces
                continue
            new = len(self.state)
            self.lab[faces] = new
            self.p_clean[faces] = 0.0
            self.state[new] = "pending"
            self.changed |= {c, new}
            self.act("split", item)
        return rest

    def run(self, max_actions: int = 600, target: float = 0.99) -> list[float]:
        while len(self.f) - 1 < max_actions and self.f[-1] < target:
            if self.opts["wccn"] and self.opts.setdefault("wccn_live", 1):  # as shipped: again at each listing
                self.rewhiten()
            items = self.items()
            if not items:
                break
            self.take(items[0])
        return self.f


def _order(it) -> tuple:
    """review_items' order: gain per action, merges before placements before clean-ups, cluster,
    the group's first other cluster, the face."""
    per, kind, c, payload = it[:4]
    other = payload[0][0] if kind == "merge" else 0
    face = payload[0] if kind == "place" else 0
    return -per, KIND_ORDER[kind], c, other, face


def actions_to(curve, target=0.99):
    return next((i for i, f in enumerate(curve) if f >= target), None)


def main(names) -> None:
    from bench.merge_queue import clustered

    for name in names:
        d = clustered(name)
        opts = dict(a[2:].split("=") for a in sys.argv[1:] if a.startswith("--") and "=" in a)
        if "merge_model" in opts:  # a trial: another merge model's JSON (bench/review_policy_pairs.py fits one)
            model = json.loads(Path(opts.pop("merge_model")).read_text())
            merge_model.shipped = lambda: model
        opts = {k: float(v) for k, v in opts.items()}
        target = opts.pop("target", 0.99)  # --target=0.995: how the queue does past F 0.99
        r = Replay(d, **opts)
        curve = r.run(max_actions=int(opts.get("max_actions", 600)), target=target)
        o = greedy_oracle(d["truth"], d["labels"], max_actions=1000, target=0.99)
        counts = Counter(x[0] for x in r.log)
        print(f"{name}: gain {actions_to(curve)} to 0.99, {actions_to(curve, target)} to {target} "
              f"(F {curve[-1]:.4f} after {len(curve) - 1}) oracle {actions_to(o)} {dict(counts)}")


if __name__ == "__main__":
    main([a for a in sys.argv[1:] if not a.startswith("--")] or ["lfw20_train", "lfw16_train"])
