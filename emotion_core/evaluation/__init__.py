"""Evaluation: run models on pictures and score them, one path for every number.

    metrics        accuracy, loss, macro-F1, per-class P/R/F1, top-2, ECE, confusion, tables
    significance   95% Wilson intervals for accuracy; two runs paired on the same images (McNemar)
    agreement      many runs voting on the same images: what all miss, what a majority scores
    inference      the one function that turns inputs into probabilities (+ over loaders, images)
    loading        a stored run's checkpoint back into a model (refuses mismatches)
    cost           parameters, FLOPs, CPU latency
    ensemble       probability averaging of stored runs, greedy selection on validation
    cross_dataset  a run or ensemble scored on another image folder
    reference      an external reference model (trained elsewhere) scored and stored as a run
    export         a run as ONNX + a JSON describing input, preprocessing and output (parity-checked)
    onnx_model     an export as a model for prediction; load_predictor prefers it when it matches
"""
from emotion_core.evaluation.inference import collect_probs, predict_images, probabilities
from emotion_core.evaluation.loading import CheckpointMismatchError, load_model
from emotion_core.evaluation.metrics import compute_metrics, confusion_table, predictions_table

__all__ = ["collect_probs", "predict_images", "probabilities", "CheckpointMismatchError",
           "load_model", "compute_metrics", "confusion_table", "predictions_table"]
