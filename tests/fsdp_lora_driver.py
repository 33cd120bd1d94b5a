"""Test-only torchrun target: the lora strategy under torch FSDP (version 1, full shard,
`use_orig_params=True`, one unit per BERT block) on the CPU with gloo, world size 2.

Accelerate refuses FSDP without an accelerator ("no available devices"), so the Trainer's
FSDP path cannot run here; this drives the pieces tl-hf owns under the same wrapping: the
strategy's parameter choice and optimizer groups on FSDP-wrapped names, training with
frozen and trainable parameters mixed inside one FSDP unit, and the save path of
`tl_hf.strategies.lora._save` (`save_adapter` + `merged_state_dict` on the state dict FSDP
gathers) -- the same calls, fed by `FSDP.state_dict` instead of `accelerator.get_state_dict`.

    torchrun --nproc_per_node 2 tests/fsdp_lora_driver.py MODEL_DIR OUT_DIR

Rank 0 writes OUT_DIR/result.json (groups, gradients, losses, the FSDP model's logits on a
fixed batch), OUT_DIR/merged/ and OUT_DIR/adapter/.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from conftest import sentiment_rows  # noqa: E402

from tl_hf.strategies.lora import merged_state_dict, save_adapter  # noqa: E402
from tl_hf.strategy import (  # noqa: E402
    StrategyContext,
    apply_strategy,
    build_param_groups,
    get_strategy,
    strategy_settings,  # noqa: E402
    strip_wrappers,
)


def main(model_dir: str, out: str) -> None:
    from functools import partial

    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.models.bert.modeling_bert import BertLayer

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)  # the same adapters on every rank (LoRA's A starts random)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    options = strategy_settings("lora", lora_r=4, lora_alpha=8, lora_dropout=0.0)
    get_strategy("lora").prepare_model(model, StrategyContext(options, {"full": 5e-5}, print))
    declared = apply_strategy(model, "lora", options=options)
    wrapped = FSDP(
        model,
        auto_wrap_policy=partial(transformer_auto_wrap_policy, transformer_layer_cls={BertLayer}),
        use_orig_params=True,  # what accelerate_configs/fsdp_full_shard.yaml sets
        device_id=torch.device("cpu"),
    )
    groups = build_param_groups(wrapped, "lora", 1e-2, 0.0, reference_model=model, options=options)
    names = {id(p): strip_wrappers(n) for n, p in wrapped.named_parameters()}
    in_groups = sorted(names[id(p)] for g in groups for p in g["params"])
    optimizer = torch.optim.AdamW(groups)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = sentiment_rows(32)
    labels = torch.tensor([int(r["sentiment"] == "pos") for r in rows])
    batch = tokenizer([r["sentence"] for r in rows], padding=True, return_tensors="pt")
    half = slice(rank * 16, rank * 16 + 16)  # each rank its half of the global batch
    losses, with_grad = [], set()
    wrapped.train()
    for _ in range(8):
        optimizer.zero_grad()
        output = wrapped(**{k: v[half] for k, v in batch.items()}, labels=labels[half])
        output.loss.backward()
        with_grad |= {
            names[id(p)] for p in wrapped.parameters() if p.grad is not None and p.numel()
        }
        optimizer.step()
        losses.append(output.loss.item())
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sorted(with_grad))
    wrapped.eval()
    with torch.no_grad():
        logits = wrapped(**batch).logits  # FSDP gathers each unit's weights for the forward
    config = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, config):
        state = wrapped.state_dict()  # every rank takes part; rank 0 gets the whole
    if rank == 0:
        save_adapter(model, os.path.join(out, "adapter"), model_dir, state)
        model.save_pretrained(
            os.path.join(out, "merged"), state_dict=merged_state_dict(model, state)
        )
        tokenizer.save_pretrained(os.path.join(out, "merged"))
        result = {
            "declared": sorted(declared),
            "in_groups": in_groups,
            "with_grad": sorted({n for names in gathered for n in names}),
            "losses": losses,
            "logits": logits.tolist(),
            "wrapped_units": sum(isinstance(m, FSDP) for m in wrapped.modules()),
        }
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
