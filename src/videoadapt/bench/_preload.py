"""Imported by the bench's fork server: every module a cell needs, so that each cell's process, forked from it,
starts without importing them again. Imports only; no tensor work (forking after a parallel region is unsafe)."""

from __future__ import annotations

import accelerate  # noqa: F401
import peft  # noqa: F401
import torch.utils.flop_counter  # noqa: F401
import transformers.activations  # noqa: F401
import transformers.models.bert.modeling_bert  # noqa: F401
import transformers.models.clip.modeling_clip  # noqa: F401
import transformers.models.siglip.modeling_siglip  # noqa: F401

import videoadapt.bench.cell  # noqa: F401
import videoadapt.bench.cost  # noqa: F401
import videoadapt.data.formats  # noqa: F401
import videoadapt.foundation.feature_cache  # noqa: F401
import videoadapt.foundation.hf  # noqa: F401
import videoadapt.foundation.loading  # noqa: F401
import videoadapt.foundation.tinyclip.checkpoint  # noqa: F401
import videoadapt.metrics  # noqa: F401
import videoadapt.train.trainer  # noqa: F401
from videoadapt.paradigms import load_paradigms
from videoadapt.tasks import load_tasks

load_paradigms()
load_tasks()
