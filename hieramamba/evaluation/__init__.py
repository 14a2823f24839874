"""R@k at temporal IoU under each protocol, prediction files and breakdowns. numpy only (no torch)."""

from hieramamba.evaluation.breakdown import (
    DEFAULT_BIN_EDGES_S,
    assign_length_bins,
    bin_label,
    length_bin_labels,
    recall_by_group,
    recall_by_length_bin,
    recall_by_query_kind,
)
from hieramamba.evaluation.ego4d_format import (
    ego4d_ground_truth,
    ranked,
    read_ego4d_predictions,
    read_generic_predictions,
    read_predictions,
    write_ego4d_predictions,
    write_generic_predictions,
)
from hieramamba.evaluation.recall import (
    PROTOCOLS,
    QueryHits,
    RecallResult,
    format_threshold,
    hits_at_iou,
    iou_official,
    iou_snag,
    metric_key,
    recall_at_iou,
)

__all__ = [
    "DEFAULT_BIN_EDGES_S",
    "PROTOCOLS",
    "QueryHits",
    "RecallResult",
    "assign_length_bins",
    "bin_label",
    "ego4d_ground_truth",
    "format_threshold",
    "hits_at_iou",
    "iou_official",
    "iou_snag",
    "length_bin_labels",
    "metric_key",
    "ranked",
    "read_ego4d_predictions",
    "read_generic_predictions",
    "read_predictions",
    "recall_at_iou",
    "recall_by_group",
    "recall_by_length_bin",
    "recall_by_query_kind",
    "write_ego4d_predictions",
    "write_generic_predictions",
]
