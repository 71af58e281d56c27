"""A tuned open model exported for serving at scale: the LoRA adapter in vLLM's multi-LoRA layout, and a merged model.

**The adapter.** vLLM serves many LoRA adapters on one copy of a base model: ``vllm serve BASE --enable-lora
--lora-modules NAME=PATH [NAME=PATH ...] --max-lora-rank R`` (vLLM's "LoRA Adapters" page,
https://docs.vllm.ai/en/latest/features/lora.html, "Serving LoRA Adapters"), and a request picks an adapter by
giving its ``NAME`` as the ``model``. Each ``PATH`` is a folder holding PEFT's two files, ``adapter_config.json``
(whose ``base_model_name_or_path`` names the base) and ``adapter_model.safetensors``, which is what vLLM's
``LoRAModel.from_local_checkpoint`` reads. :func:`export_adapter` writes that folder, named for the LoRA module
(``<output_dir>/<name>/``), with the base model it was trained on recorded, and refuses what vLLM's
``PEFTHelper.validate_legal`` (``vllm/lora/peft_helper.py``) refuses: ``modules_to_save`` (fully trained modules,
not low-rank deltas), trained biases, and ``fan_in_fan_out``. The rank the server must allow, ``--max-lora-rank``,
is one of :data:`VLLM_MAX_LORA_RANKS` (vLLM's ``LoRAConfig`` accepts only those: ``possible_max_ranks`` in its
``__post_init__``, ``MaxLoRARanks`` in ``vllm/config/lora.py``; the default is 16): :func:`vllm_max_lora_rank`
picks the smallest one that fits the adapter.

**The merged model.** :func:`export_merged` merges the adapter into its base (PEFT's ``merge_and_unload``) and
saves a full model with its tokenizer, which any serving container loads as it loads the base (Vertex Model
Garden's vLLM image with ``--model=<folder>``, the default rollout of open models,
:mod:`tunekit.components.deployment.rollout`); a full model (no adapter) is served as it is.

:func:`export_for_serving` writes both beside the deploy step's record, once (a retried step finds them), and
:func:`vllm_lora_args` is the multi-LoRA server's command line for an exported adapter.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

from tunekit.components.common.errors import UserError
from tunekit.components.common.state import replace_directory, write_text

#: The merged model's folder inside the export folder.
MERGED_DIR = "serving_model"
#: The adapters' folder inside the export folder (one sub-folder per LoRA module, named for it).
LORA_DIR = "lora"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: PEFT's older weights file (``safe_serialization=False``), converted to safetensors on export.
ADAPTER_WEIGHTS_BIN = "adapter_model.bin"
#: The ``--max-lora-rank`` values vLLM accepts (LoRAConfig, see the module docstring).
VLLM_MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class AdapterExport:
    """An adapter exported for vLLM's multi-LoRA serving.

    Attributes:
        name: The LoRA module's name (what requests name as their ``model``).
        path: Its folder (``adapter_config.json`` and ``adapter_model.safetensors``).
        base_model: The base model it was trained on (as ``adapter_config.json`` records it).
        rank: Its LoRA rank (``r``; the largest of a ``rank_pattern``).
        max_lora_rank: The ``--max-lora-rank`` a vLLM server needs to load it.
    """

    name: str
    path: str
    base_model: str
    rank: int
    max_lora_rank: int

    def to_dict(self) -> dict:
        """The export as JSON-ready fields (the deployment record's ``lora_adapter``)."""
        return {
            "name": self.name,
            "path": self.path,
            "base_model": self.base_model,
            "rank": self.rank,
            "max_lora_rank": self.max_lora_rank,
        }


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that serves an adapter of ``rank``.

    Raises:
        UserError: The rank is above vLLM's largest (512).
    """
    for allowed in VLLM_MAX_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise UserError(
        f"LoRA rank {rank} is above the {VLLM_MAX_LORA_RANKS[-1]} vLLM serves; tune with a lower lora_rank or "
        "deploy the merged model",
        field="lora_rank",
    )


def _check_module_name(name: str) -> None:
    # vLLM splits --lora-modules on '=' (NAME=PATH); a name is also a request's `model`.
    if not name or "=" in name or any(c.isspace() for c in name) or "/" in name:
        raise UserError(
            f"'{name}' cannot name a LoRA module: use letters, digits, '-', '_' or '.' (no '=', '/' or spaces)",
            field="name",
        )


def read_adapter_config(adapter_dir: str) -> dict:
    """The PEFT ``adapter_config.json`` of ``adapter_dir``.

    Raises:
        UserError: The folder is not a LoRA adapter vLLM can serve.
    """
    path = os.path.join(adapter_dir, ADAPTER_CONFIG)
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        raise UserError("not a PEFT adapter folder (no adapter_config.json)", path=adapter_dir) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"adapter_config.json is unreadable: {exc}", path=path) from None
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise UserError(
            f"the adapter is {config.get('peft_type')!r}, not LoRA; vLLM serves LoRA adapters", path=path
        )
    unsupported = []
    if config.get("modules_to_save"):
        unsupported.append(f"modules_to_save {config['modules_to_save']}")
    if config.get("bias", "none") not in (None, "none"):
        unsupported.append(f"bias '{config['bias']}'")
    if config.get("fan_in_fan_out"):
        unsupported.append("fan_in_fan_out")
    if unsupported:
        raise UserError(
            f"vLLM's LoRA serving does not load an adapter with {', '.join(unsupported)}; deploy the merged model "
            "(export_merged) instead",
            path=path,
        )
    return config


def export_adapter(adapter_dir: str, output_dir: str, *, name: str, base_model: str = "") -> AdapterExport:
    """Writes the adapter of ``adapter_dir`` to ``output_dir/<name>/`` in the layout vLLM's multi-LoRA server loads.

    Args:
        adapter_dir: A PEFT LoRA adapter folder (the local trainers' output with ``merge_adapter`` off).
        output_dir: The folder the LoRA modules' folders go in.
        name: The LoRA module's name (the folder's name, ``--lora-modules NAME=...``).
        base_model: How the server finds the base model (a Hub id or a ``gs://`` folder); '' keeps the one the
            adapter records.

    Returns:
        The export (its folder, base model, rank and the ``--max-lora-rank`` it needs).

    Raises:
        UserError: Not a LoRA adapter vLLM can serve, a bad name, or no weights.
    """
    _check_module_name(name)
    config = read_adapter_config(adapter_dir)
    ranks = [int(config.get("r") or 0), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    rank = max(ranks)
    if rank < 1:
        raise UserError("the adapter's rank r is missing", path=os.path.join(adapter_dir, ADAPTER_CONFIG))
    max_rank = vllm_max_lora_rank(rank)
    config["base_model_name_or_path"] = base_model or config.get("base_model_name_or_path") or ""
    if not config["base_model_name_or_path"]:
        raise UserError("the adapter records no base model; give base_model", path=adapter_dir, field="base_model")
    weights = os.path.join(adapter_dir, ADAPTER_WEIGHTS)
    legacy = os.path.join(adapter_dir, ADAPTER_WEIGHTS_BIN)
    if not os.path.isfile(weights) and not os.path.isfile(legacy):
        raise UserError(f"the adapter has no {ADAPTER_WEIGHTS}", path=adapter_dir)
    target = os.path.join(output_dir, name)
    # Written beside the target and renamed into place: a kill mid-copy leaves no folder a retry would trust.
    with replace_directory(target) as folder:
        if os.path.isfile(weights):
            shutil.copyfile(weights, os.path.join(folder, ADAPTER_WEIGHTS))
        else:
            import torch
            from safetensors.torch import save_file

            tensors = torch.load(legacy, map_location="cpu", weights_only=True)
            save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, ADAPTER_WEIGHTS))
        write_text(os.path.join(folder, ADAPTER_CONFIG), json.dumps(config, indent=2))
    return AdapterExport(
        name=name, path=target, base_model=config["base_model_name_or_path"], rank=rank, max_lora_rank=max_rank
    )


def export_merged(model_path: str, output_dir: str) -> str:
    """A full model serving containers load: ``model_path`` itself, or its adapter merged into the base.

    Args:
        model_path: The tuned model: a full model directory, or a LoRA adapter whose recorded base model is
            reachable from here.
        output_dir: Where a merged model is written (``output_dir/serving_model``), once: a retry finds it.

    Returns:
        ``model_path`` when it is a full model, else the merged model's folder.

    Raises:
        UserError: The adapter's base model is not reachable here.
    """
    from tunekit.components.model_clients.hf import load_model_and_tokenizer, read_adapter_base

    base = read_adapter_base(model_path)
    if base is None:
        return model_path
    target = os.path.join(output_dir, MERGED_DIR)
    if os.path.isfile(os.path.join(target, "config.json")):
        return target
    if not os.path.isdir(base):
        raise UserError(
            f"the adapter's base model '{base}' is not reachable here; tune with merge_adapter=True to deploy a "
            "full model",
            path=model_path,
        )
    model, tokenizer = load_model_and_tokenizer(base, model_path)
    # Written beside the target and renamed into place: a kill mid-save leaves no config.json that the check
    # above would trust on the retry.
    with replace_directory(target) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return target


def export_for_serving(model_path: str, output_dir: str, *, name: str, base_model: str = "") -> dict:
    """Both exports of a tuned model under ``output_dir``: the merged model, and the adapter when it is one.

    Args:
        model_path: The tuned model (a full model, or a LoRA adapter).
        output_dir: The export folder (``serving_model/`` and ``lora/<name>/`` go in it).
        name: The LoRA module's name.
        base_model: How a multi-LoRA server finds the base ('' keeps the adapter's record).

    Returns:
        ``{"merged": folder, "adapter": AdapterExport.to_dict() or None}``; an adapter vLLM cannot serve
        (``modules_to_save``...) gets ``"adapter": None`` and ``"adapter_error"`` saying why.
    """
    from tunekit.components.model_clients.hf import read_adapter_base

    merged = export_merged(model_path, output_dir)
    exported: dict = {"merged": merged, "adapter": None}
    if read_adapter_base(model_path) is not None:
        try:
            adapter = export_adapter(
                model_path, os.path.join(output_dir, LORA_DIR), name=name, base_model=base_model
            )
            exported["adapter"] = adapter.to_dict()
        except UserError as exc:
            exported["adapter_error"] = str(exc)
    return exported


def vllm_lora_args(
    base_model: str, adapters: list[tuple[str, str]], *, max_lora_rank: int, max_model_len: int = 4096
) -> list[str]:
    """The arguments of vLLM's OpenAI-compatible server serving ``adapters`` (``(name, path)``) on ``base_model``.

    ``python -m vllm.entrypoints.openai.api_server`` takes the same arguments as ``vllm serve``; ``--max-loras``
    (adapters in one batch) is the number of adapters, so each request is served without swapping.
    """
    if max_lora_rank not in VLLM_MAX_LORA_RANKS:
        raise UserError(f"max_lora_rank must be one of {VLLM_MAX_LORA_RANKS}, not {max_lora_rank}")
    if not adapters:
        raise UserError("no adapter to serve")
    for name, _ in adapters:
        _check_module_name(name)
    return [
        "python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host=0.0.0.0",
        "--port=8080",
        f"--model={base_model}",
        f"--max-model-len={max_model_len}",
        "--enable-lora",
        f"--max-lora-rank={max_lora_rank}",
        f"--max-loras={len(adapters)}",
        "--lora-modules",
        *(f"{name}={path}" for name, path in adapters),
    ]
