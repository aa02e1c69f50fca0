"""`duo train`: LoRA (default) or full fine-tuning on the conversation trees, seeded and resumable.

The backbone is loaded untuned through the engine's own loader (special tokens added, embeddings
resized), so the trained rows and weights line up with what `load_backbone` merges at run time. LoRA also
trains the four new token rows (`trainable_token_indices`): with tied embeddings peft ties them into the
output head; an untied head (Qwen's) gets its own trainable rows, since rows that all start at one mean
would otherwise give the three states equal logits forever.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .data import load_conversations
from .examples import TokenIds, Tree, collate, encode
from .objective import compute, target_logits, to_device

log = logging.getLogger(__name__)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainConfig:
    data: str
    out: str
    model: str | None = None
    method: str = "lora"  # or "full"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    lr: float | None = None  # None: 2e-4 for LoRA, 8e-6 for full fine-tuning (paper §3.1)
    steps: int = 600
    batch_size: int = 8
    warmup: float = 0.1
    state_weight: float = 1.0
    output_weight: float = 0.2
    kl_weight: float = 0.0  # KL(base || tuned) on reply tokens (LoRA: the base is the adapter switched off)
    max_len: int = 1024
    seed: int = 0
    save_every: int = 200
    device: str = "auto"
    save_dtype: str = "bfloat16"

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.method == "lora" else 8e-6)


def token_ids(backbone: Any) -> TokenIds:
    return TokenIds(backbone.prediction_id, {s.value: i for s, i in backbone.state_ids.items()},
                    backbone.tokenizer.eos_token_id)


def build_trees(path: Path, backbone: Any, framing: Any, max_len: int) -> list[Tree]:
    tokens = token_ids(backbone)
    trees = [encode(c, framing, tokens, max_len) for c in load_conversations(path)]
    return [t for t in trees if any(t.kind)]


def batches_for_step(step: int, n: int, lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """Indices of the batch at `step`: a seeded shuffle per epoch, length-bucketed to cut padding."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    rng = random.Random(f"{seed}:epoch:{epoch}")
    order = list(range(n))
    rng.shuffle(order)
    chunk = batch_size * 16
    batches = []
    for start in range(0, per_epoch * batch_size, chunk):
        part = sorted(order[start : min(start + chunk, per_epoch * batch_size)], key=lengths.__getitem__)
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches[k]


def wrap(model: Any, config: TrainConfig, new_token_ids: list[int]) -> Any:
    if config.method == "full":
        model.requires_grad_(True)
        return model
    if config.method != "lora":
        raise ValueError(f"unknown method {config.method!r} (lora, full)")
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_targets), task_type="CAUSAL_LM",
                      trainable_token_indices=token_rows(model, sorted(new_token_ids)))
    return get_peft_model(model, lora)


def token_rows(model: Any, ids: list[int]) -> dict[str, list[int]]:
    """The rows of the new tokens to train, by module name: the input table, and the head when untied."""
    names = {id(module): name.rsplit(".", 1)[-1] for name, module in model.named_modules()}
    table, head = model.get_input_embeddings(), model.get_output_embeddings()
    rows = {names[id(table)]: ids}
    if head is not None and head.weight is not table.weight:
        rows[names[id(head)]] = ids
    return rows


def save_weights(model: Any, config: TrainConfig, target: Path, base_name: str, tokenizer: Any,
                 dtype: str | None = None) -> None:
    """LoRA: an adapter folder (config + safetensors) as `load_backbone(adapter=...)` reads it."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if config.method == "full":
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    else:
        from safetensors.torch import load_file, save_file

        model.peft_config["default"].base_model_name_or_path = base_name
        model.save_pretrained(tmp, save_embedding_layers=False)
        (tmp / "README.md").unlink(missing_ok=True)
        weights = tmp / "adapter_model.safetensors"
        cast = getattr(torch, dtype or config.save_dtype)
        save_file({k: v.to(cast).contiguous() for k, v in load_file(weights).items()}, weights)
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)


def _latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return next((p for p in reversed(found) if (p / "trainer.pt").is_file()), None)


def _load_checkpoint(model: Any, config: TrainConfig, ckpt: Path, optimizer: Any, scheduler: Any) -> int:
    from safetensors.torch import load_file

    if config.method == "full":
        state = load_file(ckpt / "weights" / "model.safetensors")
        model.load_state_dict(state, strict=False)
        model.tie_weights()
    else:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(ckpt / "weights" / "adapter_model.safetensors"))
    trainer = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    torch.set_rng_state(trainer["torch_rng"])
    return int(trainer["step"])


def train(config: TrainConfig, backbone: Any = None, resume: bool = True) -> dict[str, Any]:
    """Train; returns a summary. Resumes from the newest checkpoint in `out` when `resume` is set."""
    from tqdm import tqdm

    from duo.engine.framing import DEFAULT_INSTRUCTIONS, ChatFraming
    from duo.engine.loader import load_backbone

    from .replies import model_id

    if config.kl_weight and config.method != "lora":
        raise ValueError("--kl-weight needs LoRA: the untuned model is the adapter switched off")
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = backbone or load_backbone(config.model, adapter=None, device=config.device, dtype="float32")
    device = backbone.device
    framing = ChatFraming(backbone.tokenizer, DEFAULT_INSTRUCTIONS)
    trees = build_trees(Path(config.data) / "train.jsonl", backbone, framing, config.max_len)
    if not trees:
        raise ValueError(f"no training conversations with targets in {config.data}/train.jsonl")
    lengths = [len(t) for t in trees]
    state_ids = list(backbone.state_ids.values())
    model = wrap(backbone.model, config, [backbone.prediction_id, *state_ids])
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate(), weight_decay=0.0)
    warm = max(1, int(config.warmup * config.steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (config.steps - s) / max(1, config.steps - warm)))
    step = 0
    if resume and (ckpt := _latest_checkpoint(out)) is not None:
        step = _load_checkpoint(model, config, ckpt, optimizer, scheduler)
        log.info("event=resume checkpoint=%s step=%d", ckpt, step)
    pad = backbone.tokenizer.pad_token_id if backbone.tokenizer.pad_token_id is not None else 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    started = time.time()
    skipped = 0
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step")
    with (out / "train_log.jsonl").open("a") as logf:
        while step < config.steps:
            idx = batches_for_step(step, len(trees), lengths, config.batch_size, config.seed)
            batch = to_device(collate([trees[i] for i in idx], pad), device)
            with autocast:
                base_logits = None
                if config.kl_weight:
                    with torch.no_grad(), model.disable_adapter():
                        base_logits = target_logits(model, batch)[0]
                parts = compute(model, batch, state_ids, config.state_weight, config.output_weight, base_logits,
                                config.kl_weight)
            optimizer.zero_grad(set_to_none=True)
            parts.loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            finite = bool(torch.isfinite(norm))
            if finite:
                optimizer.step()
            else:  # one non-finite batch would turn every weight and optimizer moment into NaN: skip it
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
            scheduler.step()
            step += 1
            record = {"step": step, "loss": round(float(parts.loss.detach()), 5), "state_loss": round(parts.state, 5),
                      "output_loss": round(parts.output, 5),
                      "kl": round(parts.kl, 5), "state_acc": parts.state_correct / max(1, parts.n_state),
                      "lr": scheduler.get_last_lr()[0], "grad_norm": round(float(norm), 4), "skipped": not finite}
            logf.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{record['loss']:.4f}", state=f"{parts.state:.4f}", out=f"{parts.output:.3f}")
            bar.update(1)
            if step % config.save_every == 0 or step == config.steps:
                _checkpoint(model, config, out, step, optimizer, scheduler, model_id(config.model), backbone)
    bar.close()
    model.eval()
    final = out / ("model" if config.method == "full" else "adapter")
    save_weights(model, config, final, model_id(config.model), backbone.tokenizer)
    summary = {"steps": step, "trees": len(trees), "tokens": sum(lengths), "seconds": round(time.time() - started, 1),
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "trainable_params": sum(p.numel() for p in params), "weights": str(final), "skipped_steps": skipped}
    dev = Path(config.data) / "dev.jsonl"
    if dev.is_file():
        summary["dev"] = evaluate_trees(model, build_trees(dev, backbone, framing, config.max_len), state_ids, pad,
                                        config)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    model.train(False)
    backbone.model = model
    return summary


def _checkpoint(model: Any, config: TrainConfig, out: Path, step: int, optimizer: Any, scheduler: Any,
                base_name: str, backbone: Any) -> None:
    target = out / "checkpoints" / f"step-{step}"
    target.mkdir(parents=True, exist_ok=True)
    save_weights(model, config, target / "weights", base_name, backbone.tokenizer, dtype="float32")  # exact resume
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "torch_rng": torch.get_rng_state()}, target / "trainer.pt.tmp")
    (target / "trainer.pt.tmp").replace(target / "trainer.pt")
    for old in sorted((out / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-2]:
        shutil.rmtree(old, ignore_errors=True)


@torch.no_grad()
def evaluate_trees(model: Any, trees: list[Tree], state_ids: list[int], pad: int,
                   config: TrainConfig) -> dict[str, Any]:
    """Held-out losses and state accuracy (argmax over the three state tokens) on conversation trees."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = {"state": 0.0, "output": 0.0, "n_state": 0, "n_output": 0, "correct": 0}
    for start in range(0, len(trees), config.batch_size):
        batch = to_device(collate(trees[start : start + config.batch_size], pad), device)
        parts = compute(model, batch, state_ids)
        totals["state"] += parts.state * parts.n_state
        totals["output"] += parts.output * parts.n_output
        totals["n_state"] += parts.n_state
        totals["n_output"] += parts.n_output
        totals["correct"] += parts.state_correct
    model.train(was_training)
    n_s, n_o = max(1, totals["n_state"]), max(1, totals["n_output"])
    return {"state_loss": totals["state"] / n_s, "output_loss": totals["output"] / n_o,
            "state_accuracy": totals["correct"] / n_s, "state_targets": totals["n_state"],
            "output_ppl": math.exp(min(50.0, totals["output"] / n_o))}
