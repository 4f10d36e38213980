"""Reusable temporal modules: they turn per-frame features ``[B,T,D]`` into video features."""

from videoadapt.temporal.dense_grounding import (
    DenseGroundingCriterion,
    DenseGroundingHead,
    assign_targets,
    decode_dense_grounding,
    temporal_nms,
)
from videoadapt.temporal.fusion import CrossStreamFusion
from videoadapt.temporal.moment_detr import MomentDETR
from videoadapt.temporal.moment_detr_criterion import (
    MomentDETRCriterion,
    MomentDETRMatcher,
    generalized_temporal_iou,
    sample_saliency_pairs,
    span_cxw_to_xx,
    span_xx_to_cxw,
    temporal_iou,
)
from videoadapt.temporal.motion import MotionEncoder
from videoadapt.temporal.pooling import MeanPool
from videoadapt.temporal.qformer import QFormer
from videoadapt.temporal.seq_transf import SeqTransf
from videoadapt.temporal.spacetime import SpaceTimeTransformer
from videoadapt.temporal.transformer import TemporalTransformer
from videoadapt.temporal.tube_grounding import (
    TubeGroundingCriterion,
    TubeGroundingHead,
    box_cxcywh_to_xyxy,
    box_xyxy_to_cxcywh,
    decode_tube,
    gaussian_frame_target,
    paired_generalized_box_iou,
    sted_kl_loss,
)

__all__ = [
    "CrossStreamFusion",
    "DenseGroundingCriterion",
    "DenseGroundingHead",
    "MeanPool",
    "MomentDETR",
    "MomentDETRCriterion",
    "MomentDETRMatcher",
    "MotionEncoder",
    "QFormer",
    "SeqTransf",
    "SpaceTimeTransformer",
    "TemporalTransformer",
    "TubeGroundingCriterion",
    "TubeGroundingHead",
    "assign_targets",
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "decode_dense_grounding",
    "decode_tube",
    "gaussian_frame_target",
    "generalized_temporal_iou",
    "paired_generalized_box_iou",
    "sample_saliency_pairs",
    "span_cxw_to_xx",
    "span_xx_to_cxw",
    "sted_kl_loss",
    "temporal_iou",
    "temporal_nms",
]
