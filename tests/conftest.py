"""Shared fixtures: the real face data in ``../shared/data`` and cached SFace features."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACECURATE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under the shared data folder; skips the test with a clear reason if it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real face data not found at {path} (set FACECURATE_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path()


#: Cached SFace features of the shared sets (bench/extract_reference_features.py writes them; bin/test
#: builds them before the suite). Honours FACECURATE_CACHE like the benchmarks.
FEATURE_CACHE = Path(os.environ.get("FACECURATE_CACHE", ROOT / ".cache")) / "features"
_FEATURES: dict = {}


def reference_features(name: str):
    """The cached SFace FeatureSet of a shared set ('att', 'glint' or 'lfw').

    'att' (400 faces, seconds) is embedded on first use when absent; the larger sets are read from the
    cache only, and the test is skipped with the command that builds them.
    """
    from pipeline.features import load_features, save_features

    if name in _FEATURES:
        return _FEATURES[name]
    path = FEATURE_CACHE / f"{name}_sface.npz"
    if not path.is_file():
        if name != "att":
            pytest.skip(f"no cached SFace features at {path} (run bench/extract_reference_features.py {name})")
        from pipeline.recognition.embedders import OnnxEmbedder
        from pipeline.recognition.extraction import extract_features, list_images

        paths, labels = list_images(shared_path("att_faces"), labeled=True)
        save_features(path, extract_features(paths, OnnxEmbedder(), labels=labels).features)
    _FEATURES[name] = load_features(path)
    return _FEATURES[name]
