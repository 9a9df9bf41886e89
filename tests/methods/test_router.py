"""The router (Eq. 21) and its loss (Eq. 23): hand-computed values and gradients, and a router
that learns to tell two tasks apart on a tiny model."""

import math

import torch

from lora_diffusion.data.classification import SST2, ClassificationTask, encode_examples
from lora_diffusion.data.encoding import pad_collate
from lora_diffusion.methods import ComposedConfig, TrajectoryConfig, apply_method
from lora_diffusion.methods.router import Router, router_accuracy, router_loss
from lora_diffusion.objective import DiffusionObjective
from lora_diffusion.testing import tiny_backbone

TREC = ClassificationTask("trec", "question: {a} answer type:", {0: "description", 1: "location"})


def test_router_loss_and_gradient_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]], requires_grad=True)
    ids = torch.tensor([0, 2])
    loss = router_loss(logits, ids)
    z0 = math.exp(2.0) + 1.0 + math.exp(-1.0)
    z1 = 2 * math.exp(0.5) + math.exp(1.0)
    want = 0.5 * (-(2.0 - math.log(z0)) - (1.0 - math.log(z1)))
    assert abs(loss.item() - want) < 1e-6
    loss.backward()
    p0 = [math.exp(2.0) / z0, 1.0 / z0, math.exp(-1.0) / z0]
    p1 = [math.exp(0.5) / z1, math.exp(0.5) / z1, math.exp(1.0) / z1]
    grad = torch.tensor([[p0[0] - 1, p0[1], p0[2]], [p1[0], p1[1], p1[2] - 1]]) / 2
    torch.testing.assert_close(logits.grad, grad, rtol=1e-6, atol=1e-7)
    assert router_accuracy(logits.detach(), ids) == 1.0


def test_router_module_weights_and_output_layer_gradient():
    torch.manual_seed(0)
    router = Router(hidden=4, num_tasks=2, width=3)
    h = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    enc = torch.stack([h[0, :2].mean(0), h[1, 1:4].mean(0)])  # Enc(c): mean over the instruction
    hidden = torch.nn.functional.gelu(enc @ router.mlp[0].weight.T + router.mlp[0].bias)
    logits = hidden @ router.mlp[2].weight.T + router.mlp[2].bias
    torch.testing.assert_close(router(h, mask), logits)
    torch.testing.assert_close(router.weights(h, mask), torch.softmax(logits, -1))
    ids = torch.tensor([1, 0])
    router_loss(router(h, mask), ids).backward()
    residual = (torch.softmax(logits, -1) - torch.nn.functional.one_hot(ids, 2)) / 2  # dL/dlogits
    torch.testing.assert_close(router.mlp[2].weight.grad, residual.T.detach() @ hidden.detach())
    torch.testing.assert_close(router.mlp[2].bias.grad, residual.sum(0).detach())
    assert sum(p.numel() for p in Router(384, 8).parameters()) == 384 * 512 + 512 + 512 * 8 + 8


def _mixed(tokenizer, words):
    sst = encode_examples([(f"the film was {w}", i % 2) for i, w in enumerate(words)], SST2, tokenizer)
    trec = encode_examples([(f"where is the {w} city", i % 2) for i, w in enumerate(words)], TREC, tokenizer)
    rows = [sst[i] for i in range(len(words))] + [trec[i] for i in range(len(words))]
    batch = pad_collate(rows)
    batch["task_ids"] = torch.tensor([0] * len(words) + [1] * len(words))
    return batch


def test_router_learns_to_separate_two_tasks(tokenizer):
    base = tiny_backbone("bert", seed=0)
    cfg = ComposedConfig(tasks=["sst2", "trec"], mode="router", router=True, freeze_adapters=True,
                         adapter=TrajectoryConfig(ranks=[4, 4, 2], time_dim=8, cond_dim=8))
    torch.manual_seed(0)
    model = apply_method("trajectory-composed", base, cfg).train()
    train = _mixed(tokenizer, ["good", "bad", "long", "short", "funny", "dull", "great", "awful"])
    held = _mixed(tokenizer, ["moving", "boring", "warm", "cold", "loud", "quiet"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    objective = DiffusionObjective(base.diffusion)
    for step in range(40):
        opt.zero_grad()
        loss, logs = objective(model, train, torch.Generator().manual_seed(step))
        loss.backward()
        opt.step()
    assert logs["reg_router"] < 0.3
    model.eval()
    with torch.no_grad():
        hidden = base.hidden_states(held["input_ids"], held["attention_mask"], torch.full((12,), 50))
        w = model.router.weights(hidden, held["instruction_mask"].bool())
    assert router_accuracy(w, held["task_ids"]) == 1.0
    assert (w.max(-1).values > 0.7).all()
