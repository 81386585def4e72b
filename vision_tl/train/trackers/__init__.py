"""Experiment trackers: TensorBoard, MLflow and Weights & Biases callbacks, and a JSON-lines log.

Each tracker is one small module on top of ``base.TrackerBase``, which decides what is logged and
when (hyper-parameters, per-step loss and LRs, per-epoch results, the confusion matrix and a grid of
predictions, the exported file); a tracker only says how its client writes each kind of thing.
The clients are imported when a run starts, never at import.
"""
