"""Training losses: focal classification, IoU/DIoU regression, point labelling, ACC and SPC.

Tensors only (no data/ or engine/ imports). Every sum is divided by the running `LossNormalizer`
value by the trainer.
"""

from hieramamba.losses.contrastive import AnchorContrastiveLoss, ProjectionHead, SegmentContrastiveLoss
from hieramamba.losses.focal import sigmoid_focal_loss, smooth_labels
from hieramamba.losses.labels import gt_span_masks, label_points
from hieramamba.losses.normalizer import LossNormalizer
from hieramamba.losses.regression import diou_loss, iou_loss, offset_iou, regression_loss

__all__ = [
    "AnchorContrastiveLoss",
    "LossNormalizer",
    "ProjectionHead",
    "SegmentContrastiveLoss",
    "diou_loss",
    "gt_span_masks",
    "iou_loss",
    "label_points",
    "offset_iou",
    "regression_loss",
    "sigmoid_focal_loss",
    "smooth_labels",
]
