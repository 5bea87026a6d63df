"""contrastlab.eval: frozen feature extraction, weighted kNN, linear probe, kNN monitor.

Takes any encoder callable (B, C, H, W) float → (B, F); never imports contrastlab.methods.
"""

from contrastlab.eval.features import (
    autocast,
    bf16_enabled,
    bf16_is_fast,
    default_normalize,
    extract_features,
)
from contrastlab.eval.knn import knn_accuracy, knn_classify, knn_scores
from contrastlab.eval.linear import (
    LinearProbeResult,
    linear_probe,
    linear_probe_on_encoder,
    snapshot_state,
)
from contrastlab.eval.monitor import KNNMonitor

__all__ = [
    "KNNMonitor",
    "LinearProbeResult",
    "autocast",
    "bf16_enabled",
    "bf16_is_fast",
    "default_normalize",
    "extract_features",
    "knn_accuracy",
    "knn_classify",
    "knn_scores",
    "linear_probe",
    "linear_probe_on_encoder",
    "snapshot_state",
]
