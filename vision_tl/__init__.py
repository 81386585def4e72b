"""vision_tl: fastai-style transfer learning for image classification.

The public API is listed once, below. Names are imported lazily on first use so that
``import vision_tl`` stays fast (no torch import, no network, no global settings) and the
``vision-tl --help`` command answers at once.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_EXPORTS: dict[str, str] = {
    # data: sources, images, transforms, loaders
    "get_image_files": ".data.sources",
    "parent_label": ".data.sources",
    "RegexLabeller": ".data.sources",
    "using_attr": ".data.sources",
    "ColReader": ".data.sources",
    "LabelError": ".data.sources",
    "RandomSplitter": ".data.splitters",
    "TrainTestSplitter": ".data.splitters",
    "IndexSplitter": ".data.splitters",
    "MaskSplitter": ".data.splitters",
    "GrandparentSplitter": ".data.splitters",
    "FuncSplitter": ".data.splitters",
    "ColSplitter": ".data.splitters",
    "EndSplitter": ".data.splitters",
    "DataBlock": ".data.datablock",
    "Datasets": ".data.datablock",
    "GetterError": ".data.describe",
    "ImageBlock": ".data.blocks",
    "CategoryBlock": ".data.blocks",
    "MultiCategoryBlock": ".data.blocks",
    "RegressionBlock": ".data.blocks",
    "label_items": ".data.sources",
    "split_labels": ".data.sources",
    "df_files_labels": ".data.sources",
    "ImageError": ".data.images",
    "open_image": ".data.images",
    "load_rgb": ".data.images",
    "verify_images": ".data.images",
    "Resize": ".data.item_tfms",
    "RandomResizedCrop": ".data.item_tfms",
    "aug_transforms": ".data.batch_tfms",
    "Normalize": ".data.batch_tfms",
    "imagenet_stats": ".data.batch_tfms",
    "ImageDataLoaders": ".data.factories",
    "DataLoaders": ".data.dataloaders",
    "URLs": ".data.external",
    "DownloadError": ".data.external",
    "untar_data": ".data.external",
    "download_url": ".data.external",
    "make_synthetic_pets": ".data.synthetic",
    "make_synthetic_folder": ".data.synthetic",
    "make_synthetic_multi_label": ".data.synthetic",
    "synthetic_image": ".data.synthetic",
    "PILImage": ".data.pil_image",
    "PILImageBW": ".data.pil_image",
    "to_thumb": ".data.pil_image",
    "show_image": ".data.show_image",
    "show_images": ".data.show_image",
    "L": ".basics",
    "first": ".basics",
    "tensor": ".basics",
    # models
    "create_body": ".models.backbones",
    "create_head": ".models.heads",
    "ModelConfig": ".models.build",
    "parse_weights_map": ".models.keymap",
    "map_weights_by_order": ".models.keymap",
    "build_model": ".models.build",
    "Preprocess": ".models.preprocess",
    "PretrainedWeightsError": ".models.backbones",
    "find_pretrained": ".models.hub",
    "SigmoidRange": ".models.heads",
    "resnet18": ".models.archs",
    "resnet34": ".models.archs",
    "resnet50": ".models.archs",
    "resnet101": ".models.archs",
    "resnet152": ".models.archs",
    "xresnet18": ".models.archs",
    "xresnet34": ".models.archs",
    "xresnet50": ".models.archs",
    "xresnet101": ".models.archs",
    "xresnet152": ".models.archs",
    "Hook": ".models.hooks",
    "Hooks": ".models.hooks",
    "hook_output": ".models.hooks",
    "hook_outputs": ".models.hooks",
    # training (the Learner classes are the inference layer's: training plus predict/export)
    "Learner": ".inference.learner",
    "vision_learner": ".inference.learner",
    "cnn_learner": ".inference.learner",
    "Callback": ".train.callbacks",
    "EarlyStoppingCallback": ".train.tracking",
    "SaveModelCallback": ".train.tracking",
    "CSVLogger": ".train.tracking",
    "TerminateOnNaNCallback": ".train.callbacks",
    "GradientAccumulation": ".train.callbacks",
    "GradientClip": ".train.callbacks",
    "CheckpointCallback": ".train.tracking",
    "MixedPrecision": ".train.callbacks",
    "Recorder": ".train.recorder",
    "ProgressCallback": ".train.progress",
    "GatherPreds": ".train.gather",
    "minimum": ".train.lr_find",
    "steep": ".train.lr_find",
    "valley": ".train.lr_find",
    "slide": ".train.lr_find",
    "CheckpointError": ".train.checkpoint",
    "MixUp": ".train.mixup",
    "CutMix": ".train.mixup",
    "accuracy": ".metrics",
    "error_rate": ".metrics",
    "top_k_accuracy": ".metrics",
    "F1Score": ".metrics",
    "Precision": ".metrics",
    "Recall": ".metrics",
    "accuracy_multi": ".metrics",
    "F1ScoreMulti": ".metrics",
    "PrecisionMulti": ".metrics",
    "RecallMulti": ".metrics",
    "CrossEntropyLossFlat": ".train.losses",
    "BCEWithLogitsLossFlat": ".train.losses",
    "LabelSmoothingCrossEntropy": ".train.losses",
    "MSELossFlat": ".train.losses",
    # tracking runs, logs for files, EMA of weights, model cards (issue 20)
    "TensorBoardCallback": ".train.trackers.tensorboard",
    "MLflowCallback": ".train.trackers.mlflow",
    "WandbCallback": ".train.trackers.wandb",
    "JSONLogger": ".train.trackers.jsonlog",
    "MissingTrackerError": ".train.trackers.base",
    "EMACallback": ".train.ema",
    "model_card": ".inference.card",
    # inference
    "load_learner": ".inference.load",
    "read_manifest": ".inference.vtl",
    "describe_manifest": ".inference.vtl",
    "Predictor": ".inference.predict",
    # inference, issue 16: runners, batch prediction across processes, the .vtl format's extension points
    "Runner": ".inference.runners",
    "TorchRunner": ".inference.runners",
    "OrtRunner": ".inference.runners",
    "predict_distributed": ".inference.distributed",
    "PeerFailed": ".inference.distributed",
    "ExportFormatError": ".inference.vtl",
    # inference, issue 16 (int8): the int8 runner, quantizing an existing file, the report and the refusal
    "OrtInt8Runner": ".inference.runners",
    "quantize_vtl": ".inference.int8",
    "Int8Report": ".inference.quantize",
    "Int8Refused": ".inference.quantize",
    "check_onnx": ".inference.onnx",
    "export_onnx": ".inference.onnx",
    "ClassificationInterpretation": ".inference.interpret",
    "MultiLabelInterpretation": ".inference.interpret_multi",
    # the lesson-1 demo (``vision-tl demo``)
    "run_demo": ".demo",
    "grad_cam": ".inference.cam",
    "show_cam": ".inference.cam",
    # serving over HTTP (``vision-tl serve``; needs the serve extra)
    "serve": ".serve.server",
    "create_app": ".serve.app",
    "ServeConfig": ".serve.config",
    # the data doctor (issue 18: ``vision-tl doctor``, the notebook cleaner)
    "doctor": ".doctor.run",
    "DoctorReport": ".doctor.report",
    "apply_decisions": ".doctor.apply",
    "undo_decisions": ".doctor.apply",
    "ImageClassifierCleaner": ".doctor.cleaner",
    # issue 21: the fastai book's names that still failed (fastai_compat)
    "to_cpu": ".basics",
    "CategoryMap": ".basics",
    "ResizeMethod": ".data.item_tfms",
    "PadMode": ".data.item_tfms",
    "TensorImage": ".data.tensor_types",
    "TensorCategory": ".data.tensor_types",
    "TensorMultiCategory": ".data.tensor_types",
    "PointBlock": ".data.blocks",
    "download_images": ".data.download_images",
    # issue 22 (a newcomer's first hour): a cheap look at image files, the batch size from the data
    "find_bad_images": ".data.check",
    "auto_bs": ".data.batch_size",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vision_tl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # cache: the next lookup is a plain attribute read
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
