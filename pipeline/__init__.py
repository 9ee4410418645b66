"""facecurate's machine learning, as pure Python (NumPy, PyTorch, OpenCV, faiss).

Nothing in this package imports Django: every stage is a function from arrays to
arrays, and each has a command line (``python -m pipeline --help``).
"""
