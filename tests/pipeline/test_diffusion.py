"""Density-peak clustering on diffused densities and transition-probability similarities
(pipeline/clustering/diffusion.py)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.clustering.diffusion import density_peak_links, diffused_density, knn_similarities
from pipeline.clustering.knn import build_knn
from pipeline.clustering.methods import METHODS, cluster
from tests.pipeline.test_neighbour_edges import HAND, split_people


def test_similarities_and_density_on_a_hand_graph():
    sim = knn_similarities(HAND, 0.5)
    assert sim.shape == HAND.indices.shape and np.all((sim >= 0) & (sim <= 1 + 1e-9))
    assert sim[0, 0] > sim[0, 2]  # 0-1 share a crowd, 0-3 do not
    rho0 = diffused_density(HAND, sim, tau=0.5, alpha=0.0)
    assert np.allclose(rho0, sim.mean(axis=1))
    rho = diffused_density(HAND, sim, tau=0.5, alpha=0.9)
    assert not np.allclose(rho, rho0) and rho.shape == (5,)
    with pytest.raises(ValueError):
        diffused_density(HAND, sim, tau=0.5, alpha=1.0)
    with pytest.raises(ValueError):
        diffused_density(HAND, sim[:, :2], tau=0.5, alpha=0.5)


def test_every_link_climbs_to_a_denser_face_and_the_densest_is_a_peak():
    x, _ = split_people(people=3, chunks=1, per=8)
    g = build_knn(x, 6)
    sim = knn_similarities(g, 0.5)
    rho = diffused_density(g, sim, tau=0.5, alpha=0.5)
    parent = density_peak_links(g, sim, rho, link_sim=0.0, threshold=-1.0)
    assert parent[np.argmax(rho)] == -1
    linked = parent >= 0
    assert np.all(rho[parent[linked]] >= rho[linked])
    # an impossible bar: every face is its own peak
    assert np.all(density_peak_links(g, sim, rho, link_sim=1.01, threshold=-1.0) == -1)


def test_density_peak_keeps_people_apart_and_is_registered():
    assert "density-peak" in METHODS
    x, y = split_people(people=3, chunks=1, per=8)
    lab = cluster(x, "density-peak", k=6, tau=0.5, alpha=0.5, link_sim=0.1, threshold=0.2)
    assert lab.shape == y.shape and lab.dtype == np.int64
    assert np.array_equal(lab[:, None] == lab[None], y[:, None] == y[None])
