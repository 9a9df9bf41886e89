"""Composition of trajectory adapters (Eq. 22): superposition identities, one trunk pass per step,
joint training with Eq. 23."""

import pytest
import torch

from lora_diffusion.data.classification import SST2, encode_examples
from lora_diffusion.data.encoding import pad_collate
from lora_diffusion.diffusion.sampler import SamplerConfig
from lora_diffusion.generation import generate
from lora_diffusion.methods import ComposedConfig, TrajectoryConfig, apply_method
from lora_diffusion.methods.accounting import parameter_accounting
from lora_diffusion.methods.compose import compose_adapters
from lora_diffusion.objective import DiffusionObjective
from lora_diffusion.testing import tiny_backbone

from .test_multitask import SMALL, _task_models


def _batch(tokenizer, n=6):
    texts = ["a fine film", "dull", "so so and long", "great", "bad acting", "moving", "flat", "fun"]
    rows = encode_examples([(texts[i % len(texts)], i % 2) for i in range(n)], SST2, tokenizer)
    return pad_collate([rows[i] for i in range(n)])


def _call(model, b, steps, select=None, **kw):
    with torch.no_grad():
        return model(b["input_ids"], b["attention_mask"], steps, select=select,
                     instruction_mask=b["instruction_mask"], **kw)


STEPS = torch.tensor([90, 10, 50, 70, 30, 5])


def test_single_adapter_weight_one_equals_that_adapter(tokenizer):
    base = tiny_backbone("bert", seed=0)
    single = _task_models(base, 1)[0]
    b = _batch(tokenizer)
    composed = compose_adapters(base, {"a": single.adapter}, "weights", [1.0])
    torch.testing.assert_close(_call(composed, b, STEPS), _call(single, b, STEPS), rtol=0, atol=0)
    sel = b["generate_mask"].bool()
    torch.testing.assert_close(_call(composed, b, STEPS, sel), _call(single, b, STEPS, sel), rtol=0, atol=0)


def test_identical_adapters_with_weights_summing_to_one_equal_one_of_them(tokenizer):
    base = tiny_backbone("bert", seed=0)
    single = _task_models(base, 1)[0]
    b = _batch(tokenizer)
    same = {f"t{k}": single.adapter for k in range(3)}
    for mode, weights in (("weights", [0.5, 0.3, 0.2]), ("uniform", None)):
        composed = compose_adapters(base, same, mode, weights)
        torch.testing.assert_close(_call(composed, b, STEPS), _call(single, b, STEPS), rtol=1e-5, atol=1e-5)


def test_weight_zero_equals_the_base(tokenizer):
    base = tiny_backbone("bert", seed=0)
    models = _task_models(base, 2)
    b = _batch(tokenizer)
    composed = compose_adapters(base, {"a": models[0].adapter, "b": models[1].adapter}, "weights", [0.0, 0.0])
    torch.testing.assert_close(_call(composed, b, STEPS), _call(base, b, STEPS), rtol=0, atol=0)
    # weight 0 on one adapter: exactly the other one alone
    half = compose_adapters(base, {"a": models[0].adapter, "b": models[1].adapter}, "weights", [0.0, 1.0])
    torch.testing.assert_close(_call(half, b, STEPS), _call(models[1], b, STEPS), rtol=0, atol=0)


def test_superposition_is_the_weighted_sum_of_perturbations(tokenizer):
    base = tiny_backbone("bert", seed=0)
    models = _task_models(base, 2)
    b = _batch(tokenizer)
    composed = compose_adapters(base, {"a": models[0].adapter, "b": models[1].adapter}, "weights", [0.7, -0.4])
    _, h0 = _call(base, b, STEPS, return_hidden=True)
    _, ha = _call(models[0], b, STEPS, return_hidden=True)
    _, hb = _call(models[1], b, STEPS, return_hidden=True)
    _, hc = _call(composed, b, STEPS, return_hidden=True)
    torch.testing.assert_close(hc, h0 + 0.7 * (ha - h0) - 0.4 * (hb - h0), rtol=1e-4, atol=1e-5)


def test_oracle_mode_equals_each_rows_own_adapter(tokenizer):
    base = tiny_backbone("bert", seed=0)
    models = _task_models(base, 2)
    b = _batch(tokenizer)
    ids = torch.tensor([1, 0, 0, 1, 1, 0])
    composed = compose_adapters(base, {"a": models[0].adapter, "b": models[1].adapter}, "oracle")
    out = _call(composed, b, STEPS, task_ids=ids)
    for k, m in enumerate(models):
        rows = (ids == k).nonzero().squeeze(1)
        alone = _call(m, {key: v[rows] for key, v in b.items()}, STEPS[rows])
        torch.testing.assert_close(out[rows], alone, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs task_ids"):
        _call(composed, b, STEPS)


@pytest.mark.parametrize("mode", ["uniform", "router"])
def test_one_trunk_call_per_step_for_a_composed_model(tokenizer, mode):
    base = tiny_backbone("bert", seed=0)
    models = _task_models(base, 3)
    router = apply_method("trajectory-composed", base, ComposedConfig(tasks=["a", "b", "c"], mode="router",
                                                                     router=True, router_width=16,
                                                                     adapter=TrajectoryConfig(**SMALL))).router
    composed = compose_adapters(base, {k: m.adapter for k, m in zip("abc", models)}, mode,
                                router=router if mode == "router" else None)
    b = _batch(tokenizer, 4)
    trunk, adapter_calls, steps = [], [], []
    hook = base.trunk.register_forward_hook(lambda *_: trunk.append(1))
    outer = composed.register_forward_hook(lambda *_: steps.append(1))
    spy = models[0].adapter  # the composed model holds copies: count its own first adapter's calls
    first = composed.adapters["a"]
    original = first.condition
    first.condition = lambda *a, **k: adapter_calls.append(1) or original(*a, **k)
    for event_driven in (False, True):
        for seen in (trunk, adapter_calls, steps):
            seen.clear()
        generate(composed, b, SamplerConfig(num_steps=10, greedy=True, event_driven=event_driven),
                 torch.Generator().manual_seed(0))
        # every model call (one per reverse step that needs logits): one trunk pass, each adapter once
        assert len(trunk) == len(adapter_calls) == len(steps) >= 2
    hook.remove()
    outer.remove()
    assert spy is not first


def test_joint_training_step_with_eq23(tokenizer):
    base = tiny_backbone("bert", seed=0)
    cfg = ComposedConfig(tasks=["a", "b"], mode="router", router=True, router_width=16, adapter=TrajectoryConfig(**SMALL))
    model = apply_method("trajectory-composed", base, cfg).train()
    b = _batch(tokenizer, 4)
    b["task_ids"] = torch.tensor([0, 1, 1, 0])
    loss, logs = DiffusionObjective(base.diffusion)(model, b, torch.Generator().manual_seed(0))
    loss.backward()
    assert "reg_router" in logs and logs["reg_router"] > 0 and "reg_a_rank" in logs
    assert model.router.mlp[0].weight.grad is not None
    assert all(model.adapters[t].banks[0].down.weight.grad is not None for t in ("a", "b"))
    assert all(p.grad is None for p in base.parameters())
    acc = parameter_accounting(model)
    d = base.hidden_size
    assert acc["groups"]["router (Eq. 21)"]["parameters"] == d * 16 + 16 + 16 * 2 + 2
    assert "backbone" not in acc["groups"]


def test_router_alone_over_frozen_adapters_trains_only_the_router(tokenizer):
    base = tiny_backbone("bert", seed=0)
    cfg = ComposedConfig(tasks=["a", "b"], mode="router", router=True, freeze_adapters=True, router_width=16,
                         adapter=TrajectoryConfig(**SMALL))
    model = apply_method("trajectory-composed", base, cfg).train()
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"router"}
    b = _batch(tokenizer, 4)
    b["task_ids"] = torch.tensor([0, 1, 1, 0])
    loss, logs = DiffusionObjective(base.diffusion)(model, b, torch.Generator().manual_seed(0))
    loss.backward()
    assert set(k for k in logs if k.startswith("reg_")) == {"reg_router", "reg_router_accuracy"}
    assert len(model.saved_state()) > sum(1 for p in model.parameters() if p.requires_grad)
