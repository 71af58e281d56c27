"""Exports for serving at scale: the adapter in vLLM's multi-LoRA layout, the merged model, and the rollout using them."""

from __future__ import annotations

import json
import os

import pytest
from fake_vertex_pipelines import LOCATION, PROJECT

from tunekit.components.common.errors import UserError
from tunekit.components.deployment import export
from tunekit.components.deployment.steps import run_deploy
from tunekit.components.tuning.tiny import CAUSAL, is_complete_model, make_tiny_model

SIZE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}


def _adapter(tmp_path, name="adapter", **lora):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = str(tmp_path / "base")
    if not os.path.isdir(base):
        make_tiny_model(base, kind=CAUSAL, **SIZE)
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=lora.pop("r", 4), target_modules=["q_proj", "v_proj"], init_lora_weights=False, **lora),
    )
    model.save_pretrained(str(tmp_path / name))
    return base, str(tmp_path / name)


def _logits(model):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([[5, 6, 7, 8]])).logits


def test_the_adapter_is_exported_in_the_layout_vllm_loads_and_means_the_same(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, adapter = _adapter(tmp_path, r=12)
    exported = export.export_adapter(
        adapter, str(tmp_path / "lora"), name="ticket-routing", base_model="gs://b/base"
    )
    folder = tmp_path / "lora" / "ticket-routing"
    assert exported.path == str(folder)
    assert sorted(os.listdir(folder)) == ["adapter_config.json", "adapter_model.safetensors"]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "gs://b/base" == exported.base_model
    # Rank 12 needs a server started with --max-lora-rank 16 (vLLM accepts only its listed values).
    assert (exported.rank, exported.max_lora_rank) == (12, 16)
    # The exported files are the adapter: the base with them computes what the base with the original does.
    original = _logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter))
    loaded = _logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(folder)))
    assert (original - loaded).abs().max().item() == 0.0
    # Without a base given, the adapter's own record is kept.
    kept = export.export_adapter(adapter, str(tmp_path / "lora2"), name="ticket-routing")
    assert kept.base_model == base


def test_what_vllm_refuses_is_refused_in_one_line_and_the_merged_model_is_still_written(tmp_path):
    from transformers import AutoModelForCausalLM

    base, adapter = _adapter(tmp_path, name="with-head", modules_to_save=["lm_head"])
    with pytest.raises(UserError, match=r"does not load an adapter with modules_to_save \['lm_head'\]"):
        export.export_adapter(adapter, str(tmp_path / "lora"), name="x")
    with pytest.raises(UserError, match="cannot name a LoRA module"):
        export.export_adapter(adapter, str(tmp_path / "lora"), name="a=b")
    exported = export.export_for_serving(adapter, str(tmp_path / "out"), name="x")
    assert exported["adapter"] is None and "modules_to_save" in exported["adapter_error"]
    merged = exported["merged"]
    assert merged == str(tmp_path / "out" / export.MERGED_DIR) and is_complete_model(merged)
    assert not os.path.exists(os.path.join(merged, "adapter_config.json"))
    assert AutoModelForCausalLM.from_pretrained(merged).config.hidden_size == 32
    # A full model is served as it is.
    assert export.export_merged(base, str(tmp_path / "full")) == base


def test_the_merged_export_computes_what_the_adapter_on_its_base_does(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, adapter = _adapter(tmp_path)
    exported = export.export_for_serving(adapter, str(tmp_path / "out"), name="routing")
    assert exported["adapter"]["path"] == str(tmp_path / "out" / export.LORA_DIR / "routing")
    merged = _logits(AutoModelForCausalLM.from_pretrained(exported["merged"]))
    adapted = _logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter))
    assert (merged - adapted).abs().max().item() < 1e-5


def test_vllm_ranks_and_arguments():
    assert [export.vllm_max_lora_rank(r) for r in (1, 8, 9, 64, 300, 512)] == [8, 8, 16, 64, 320, 512]
    with pytest.raises(UserError, match="above the 512 vLLM serves"):
        export.vllm_max_lora_rank(513)
    args = export.vllm_lora_args("gs://b/base", [("a", "gs://b/lora/a"), ("b", "gs://b/lora/b")], max_lora_rank=16)
    assert args[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    assert "--model=gs://b/base" in args and "--enable-lora" in args and "--max-lora-rank=16" in args
    assert "--max-loras=2" in args
    assert args[args.index("--lora-modules") + 1 :] == ["a=gs://b/lora/a", "b=gs://b/lora/b"]
    with pytest.raises(UserError, match="max_lora_rank must be one of"):
        export.vllm_lora_args("base", [("a", "p")], max_lora_rank=12)


def test_the_vertex_rollout_serves_the_merged_export_and_records_the_adapter_export(fake, tmp_path):
    """An adapter trained on Vertex: the uploaded artifact is the merged model written beside the deployment record,
    and the record names the adapter's multi-LoRA export there (lora/<purpose>/)."""
    _, adapter = _adapter(tmp_path)
    record = {"backend": "local", "base_model": "tiny"}
    (tmp_path / "adapter" / "tunekit_model.json").write_text(json.dumps(record))
    deploy_dir = tmp_path / "deploy"
    deployed = run_deploy(
        backend="vertex",
        model_path=adapter,
        model_metadata=record,
        dataset_fingerprint="ab" * 32,
        metrics={"accuracy": 0.9},
        gate_reason="beats the base",
        purpose="Ticket Routing",
        pipeline_job_name="run-1",
        local_registry_path="",
        deployment_path=str(deploy_dir / "deployment.json"),
        model_uri="gs://bucket/root/run-1/tune/tuned_model",
        deployment_uri="gs://bucket/root/run-1/deploy-model/deployment",
        project=PROJECT,
        location=LOCATION,
    )
    (upload,) = fake.requests_to(r"/models:upload\?", method="POST")
    assert upload[2]["model"]["artifactUri"] == "gs://bucket/root/run-1/deploy-model/serving_model"
    assert is_complete_model(str(deploy_dir / "serving_model"))
    lora = deployed["lora_adapter"]
    assert lora["uri"] == "gs://bucket/root/run-1/deploy-model/lora/ticket-routing"
    assert lora["max_lora_rank"] == 8
    assert sorted(os.listdir(deploy_dir / "lora" / "ticket-routing")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert json.loads((deploy_dir / "deployment.json").read_text())["lora_adapter"] == lora
