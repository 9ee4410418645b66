"""Step 1 and 2 of the paper: faces (detect, align), embedders, the CosFace recognizer.

| module | what |
| --- | --- |
| ``faces`` | YuNet detection and 5-point alignment to 112x112 crops (``detect_and_align``, ``read_image``) |
| ``embedders`` | the ``Embedder`` protocol and SFace through OpenCV (``OnnxEmbedder``) |
| ``sface_torch`` | SFace rebuilt in PyTorch from the shipped ONNX file (``load_sface_torch``) |
| ``models`` | backbones and the cosine classifier (``build_model``, ``load_recognizer``, ``class_logits``) |
| ``losses`` | the CosFace margin as a tiny module over cosine logits (``CosFaceLoss``) |
| ``checkpoint`` | one checkpoint format (``save_checkpoint``, ``load_checkpoint``) |
| ``training`` | training and fine-tuning with per-sample weights (``TrainConfig``, ``train``, ``train_on_crops``) |
| ``adapt`` | BatchNorm statistics re-estimated on a new domain's faces (``reestimate_batchnorm``) |
| ``extraction`` | folders of images to feature files (``extract_features``) |
"""
from pipeline._lazy import lazy_exports

__all__ = [
    "detect_and_align", "read_image", "FaceDetector", "OnnxEmbedder", "load_sface_torch",
    "build_model", "load_recognizer", "class_logits", "max_logit_and_argmax", "make_embedder", "CosFaceLoss",
    "save_checkpoint", "load_checkpoint", "TrainConfig", "train", "train_on_crops", "extract_features",
]
__getattr__, __dir__ = lazy_exports(__name__, {
    "detect_and_align": "faces", "read_image": "faces", "FaceDetector": "faces",
    "OnnxEmbedder": "embedders", "load_sface_torch": "sface_torch",
    "build_model": "models", "load_recognizer": "models", "class_logits": "models",
    "max_logit_and_argmax": "models", "make_embedder": "models", "CosFaceLoss": "losses",
    "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "TrainConfig": "training", "train": "training", "train_on_crops": "training", "extract_features": "extraction",
})
