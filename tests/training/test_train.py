"""The training loop learns, checkpoints, resumes exactly, and saves an adapter the engine's loader merges."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from duo.training.examples import Event
from duo.training.train import TrainConfig, train

# A toy state split decided by the slice's last word, so a 2-layer random model can learn it quickly.
CUES = {"process": "please", "incomplete": "and", "ignore": "okay"}
WORDS = ["red", "green", "blue", "apple", "river", "stone", "music", "paper", "window", "garden"]
HELD_OUT_WORDS = ["yellow", "orange", "forest", "cloud", "table", "bridge", "candle", "mountain"]


def _toy_data(folder: Path, conversations: int, seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", conversations), ("dev", 12)):
        with (folder / f"{split}.jsonl").open("w") as f:
            for _ in range(n):
                events = []
                for _ in range(rng.randint(1, 3)):
                    label = rng.choice(list(CUES))
                    text = " ".join(rng.sample(WORDS, 2) + [CUES[label]] * 4)
                    if label == "process":
                        events.append(Event("turn", [text], ["process"], reply="sure thing"))
                    else:
                        events.append(Event("noise", [text], [label]))
                f.write(json.dumps({"events": [e.to_json() for e in events]}) + "\n")


def _held_out_rows(per_label: int, seed: int) -> list[dict]:
    """`duo eval` rows on words never seen in training, half after an answered turn: only the cue can decide."""
    rng = random.Random(seed)
    rows = []
    for i, label in enumerate(list(CUES) * per_label):
        history = [] if i % 2 else [{"role": "user", "content": " ".join(rng.sample(WORDS, 2) + [CUES["process"]] * 4)},
                                    {"role": "assistant", "content": "sure thing"}]
        rows.append({"history": history, "input": " ".join(rng.sample(HELD_OUT_WORDS, 2) + [CUES[label]] * 4),
                     "label": label})
    return rows


def test_loop_learns_the_state_split(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Loss falls and the three-way split is learned, judged through the engine's forecast path (`duo eval`).

    The untrained model has the state rows at one shared mean, so it is at chance (everything `incomplete`);
    after 60 LoRA steps on the toy cues, the saved adapter merged by the engine's loader decides held-out
    slices correctly.
    """
    from duo.engine.config import Thresholds
    from duo.engine.loader import load_backbone
    from duo.training.evaluate import engine_decisions, metrics

    _toy_data(tmp_path / "data", 64, seed=1)
    rows = _held_out_rows(10, seed=7)
    gold = [r["label"] for r in rows]

    def accuracy(backbone) -> tuple[float, list[str]]:
        pred = [state for state, _ in engine_decisions(backbone, rows, Thresholds(), progress=False)]
        return metrics(gold, pred)["accuracy"], pred

    def fresh():
        return load_backbone(str(tiny_model_dir), adapter=None, device="cpu", dtype="float32")

    before, _ = accuracy(fresh())
    assert before <= 50.0, before
    config = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), lr=1e-2, steps=60, batch_size=8,
                         lora_r=16, lora_alpha=32, lora_dropout=0.0, save_every=1000, device="cpu", max_len=256,
                         output_weight=0.05, save_dtype="float32", model=str(tiny_model_dir))
    summary = train(config, backbone=fresh())
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    first = sum(r["state_loss"] for r in log[:5]) / 5
    last = sum(r["state_loss"] for r in log[-5:]) / 5
    assert first > 8.0 and last < 0.5, (first, last)
    assert summary["dev"]["state_accuracy"] >= 0.9, summary["dev"]
    adapter = tmp_path / "run" / "adapter"
    assert {p.name for p in adapter.iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}

    after, pred = accuracy(load_backbone(str(tiny_model_dir), adapter=str(adapter), device="cpu", dtype="float32"))
    assert after >= 90.0, list(zip(gold, pred, strict=True))
    assert set(pred) == set(CUES), pred


def test_resume_reproduces_uninterrupted_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    from duo.engine.loader import load_backbone

    _toy_data(tmp_path / "data", 16, seed=2)

    def run(out: str, steps_done_first: int | None) -> dict[str, torch.Tensor]:
        config = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / out), lr=1e-3, steps=6, batch_size=4,
                             save_every=3, device="cpu", max_len=256)
        train(config, backbone=load_backbone(str(tiny_model_dir), adapter=None, device="cpu", dtype="float32"))
        if steps_done_first is not None:  # simulate a crash after the first checkpoint, then resume
            run_dir = tmp_path / out
            for p in [run_dir / "adapter", run_dir / "checkpoints" / "step-6"]:
                import shutil

                shutil.rmtree(p)
            train(config, backbone=load_backbone(str(tiny_model_dir), adapter=None, device="cpu", dtype="float32"))
        return load_file(tmp_path / out / "adapter" / "adapter_model.safetensors")

    straight, resumed = run("a", None), run("b", 3)
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(straight[key], resumed[key], rtol=0, atol=0)


@pytest.mark.parametrize("tied", [True, False])
def test_saved_adapter_merges_to_same_logits(tmp_path: Path, request: pytest.FixtureRequest, tied: bool) -> None:
    """The engine merges the adapter (tied or untied head); merged logits equal the trained model's, and the
    state tokens' rows were trained in the head as in the input table."""
    from peft import PeftModel

    from duo.engine.loader import load_backbone

    tiny_model_dir = request.getfixturevalue("tiny_model_dir" if tied else "untied_model_dir")
    method = "lora"

    _toy_data(tmp_path / "data", 16, seed=3)
    config = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), lr=1e-2, steps=4, batch_size=4,
                         device="cpu", max_len=256, method=method, save_dtype="float32",
                         model=str(tiny_model_dir))
    train(config, backbone=load_backbone(str(tiny_model_dir), adapter=None, device="cpu", dtype="float32"))
    adapter = tmp_path / "run" / "adapter"
    base = load_backbone(str(tiny_model_dir), adapter=None, device="cpu", dtype="float32")
    x = torch.tensor([[base.tokenizer.eos_token_id, 42, 77, base.prediction_id]])
    peft_model = PeftModel.from_pretrained(base.model, str(adapter)).eval()
    with torch.no_grad():
        expected = peft_model(input_ids=x).logits
    merged = load_backbone(str(tiny_model_dir), adapter=str(adapter), device="cpu", dtype="float32")
    with torch.no_grad():
        got = merged.model(input_ids=x).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    rows = list(merged.state_ids.values())
    # the state rows really moved (trained), and the tie between embedding and head survived the merge
    head, embed = merged.model.get_output_embeddings(), merged.model.get_input_embeddings()
    assert (head.weight.data_ptr() == embed.weight.data_ptr()) is tied
    untrained = load_backbone(str(tiny_model_dir), adapter=None, device="cpu", dtype="float32").model
    read = merged.prediction_id  # an input: its row in the table learns; the states are only ever predicted
    assert not torch.allclose(embed.weight[read], untrained.get_input_embeddings().weight[read])
    head_rows = head.weight[rows]
    assert not torch.allclose(head_rows, untrained.get_output_embeddings().weight[rows])
    assert not torch.allclose(head_rows[0], head_rows[1])  # the states no longer share one row
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)


def test_kl_to_base_keeps_reply_distributions(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`kl_weight` holds the reply tokens' distributions near the untuned model's; without it they drift.

    Training the states alone moves the shared weights, and with them the replies' distributions. At the
    first step the adapter is the identity, so the logged KL is zero; after 20 steps, KL(base || tuned) on
    held-out replies is several times smaller with the term than without (measured: 14x).
    """
    import torch.nn.functional as F

    from duo.engine.framing import DEFAULT_INSTRUCTIONS, ChatFraming
    from duo.engine.loader import load_backbone
    from duo.training.examples import KIND_OUTPUT, collate
    from duo.training.objective import target_logits
    from duo.training.train import build_trees

    _toy_data(tmp_path / "data", 32, seed=3)
    drift = {}
    for weight in (0.0, 10.0):
        backbone = load_backbone(str(tiny_model_dir), adapter=None, device="cpu", dtype="float32")
        config = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / f"run-{weight}"), lr=1e-2, steps=20,
                             batch_size=8, lora_r=16, lora_alpha=32, lora_dropout=0.0, save_every=1000, device="cpu",
                             max_len=256, output_weight=0.0, kl_weight=weight, save_dtype="float32",
                             model=str(tiny_model_dir))
        train(config, backbone=backbone)
        log = [json.loads(line) for line in (tmp_path / f"run-{weight}" / "train_log.jsonl").read_text().splitlines()]
        if weight:
            assert log[0]["kl"] < 1e-5 and max(r["kl"] for r in log) > 0, log
        model = backbone.model
        framing = ChatFraming(backbone.tokenizer, DEFAULT_INSTRUCTIONS)
        batch = collate(build_trees(tmp_path / "data" / "dev.jsonl", backbone, framing, 256), 0)
        with torch.no_grad():
            tuned, _, kind = target_logits(model, batch)
            with model.disable_adapter():
                base = target_logits(model, batch)[0]
        out = kind == KIND_OUTPUT
        drift[weight] = float(F.kl_div(tuned[out].log_softmax(-1), base[out].log_softmax(-1), log_target=True,
                                       reduction="batchmean"))
    assert drift[10.0] < 0.3 * drift[0.0], drift


def test_kl_weight_needs_lora(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LoRA"):
        train(TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), method="full", kl_weight=1.0))


def test_a_step_with_a_non_finite_gradient_is_skipped(tmp_path: Path, tiny_model_dir: Path) -> None:
    """On one GPU run some batches gave a finite loss but a NaN gradient; one such step, taken, makes every
    weight and optimizer moment NaN for good. Here one step's backward is made NaN (sqrt at 0 in the graph,
    zero in the forward): that step is logged as skipped, the others train, and the adapter stays finite."""
    from duo.engine.loader import load_backbone

    _toy_data(tmp_path / "data", 16, seed=4)
    backbone = load_backbone(str(tiny_model_dir), adapter=None, device="cpu", dtype="float32")
    calls = {"n": 0}

    def poison_third_forward(module, args, output):
        calls["n"] += 1
        if calls["n"] == 3:
            return output + torch.sqrt((output - output.detach()) ** 2)  # adds 0; its gradient is NaN
        return output

    backbone.model.get_decoder().layers[0].mlp.register_forward_hook(poison_third_forward)
    config = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), lr=1e-2, steps=5, batch_size=4,
                         device="cpu", max_len=256, save_dtype="float32", save_every=1000)
    summary = train(config, backbone=backbone)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in log] == [False, False, True, False, False]
    assert summary["skipped_steps"] == 1 and all(r["loss"] == r["loss"] for r in log)
    weights = load_file(tmp_path / "run" / "adapter" / "adapter_model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
