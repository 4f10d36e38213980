"""Feature cache: frozen-backbone frame features written once per (backbone, sampling, video), read by id.

Paradigms that keep the image-language model (ILFM) frozen (post-network tuning, side-tuning, distillation
teachers) see the same frame features every epoch, so computing them once and reading them back is where their
training speed comes from: an epoch from the cache never decodes a video nor runs the backbone.

On disk (``docs/feature-cache.md``)::

    DIR/layout.json       what the arrays hold: key, video ids (row order), frames, field shapes, dtype, meta
    DIR/cls.npy           [V,T,D]          pooled token before the projection
    DIR/patches.npy       [V,T,P,D]        last-layer patch tokens
    DIR/embeds.npy        [V,T,E]          frame embeddings in the joint space
    DIR/layers.npy        [V,L,T,N,D]      every block's tokens (only with all_layers)
    DIR/rows/writer-K.jsonl  per-writer log: one line per row written (its checksum) or skipped
    DIR/manifest.json     layout + one checksum per row + skipped ids; written atomically, LAST

The ``.npy`` files are preallocated with their blocks reserved (a full disk is then an error before any video is
encoded, not SIGBUS mid-row) and memory-mapped; each writer process fills disjoint rows and logs
a checksum per row after writing it. ``finalize`` merges the logs into ``manifest.json``: a cache without one is
incomplete, ``open`` refuses it, and rerunning the extraction resumes, skipping rows whose bytes still match their
logged checksum (so a row half-written when a process died, or lost with an OS crash, is simply redone).

The key (:func:`cache_key`) digests the backbone's vision weights, the sampler, the preprocessing and whether every
layer is kept: a cache made for another backbone or sampling is refused by name instead of silently feeding the
wrong features.

The package, one role per file (each imports only those before it):

* ``errors``     — the cache's errors (incomplete, corrupt rows, non-finite features);
* ``layout``     — what a cache directory holds: file names, array shapes (:class:`CacheDims`), layout and
  manifest checks, the per-writer row logs, the row checksum;
* ``key``        — what identifies a cache: :func:`cache_key`, :func:`backbone_fingerprint`, the key check;
* ``store``      — :class:`FeatureCache`, the on-disk store: create, resume, write, finalize, open, read, verify;
* ``extraction`` — :func:`extract_features`: decode, encode and store every video of a data set.
"""

from videoadapt.foundation.feature_cache.errors import CorruptCacheError, IncompleteCacheError, NonFiniteFeaturesError
from videoadapt.foundation.feature_cache.extraction import extract_features, fixed_frame_count
from videoadapt.foundation.feature_cache.key import CacheKey, backbone_fingerprint, cache_key, canonical_sampler
from videoadapt.foundation.feature_cache.layout import CacheDims
from videoadapt.foundation.feature_cache.store import FeatureCache, non_finite_rows

__all__ = [
    "CacheDims",
    "CacheKey",
    "CorruptCacheError",
    "FeatureCache",
    "IncompleteCacheError",
    "NonFiniteFeaturesError",
    "backbone_fingerprint",
    "cache_key",
    "canonical_sampler",
    "extract_features",
    "fixed_frame_count",
    "non_finite_rows",
]
