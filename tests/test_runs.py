"""runs.config_diff: what a resumed run must share with the recorded one, including records made
by an older version before a field existed."""

from lora_diffusion.config import defaults_tree, to_dict
from lora_diffusion.finetune import FinetuneConfig
from lora_diffusion.methods import get_method, method_config
from lora_diffusion.runs import LEGACY_VALUES, config_diff


def _view(method: str = "trajectory", **options) -> tuple[dict, dict]:
    cfg = FinetuneConfig(method=method, method_options=options)
    config = {**to_dict(cfg), "method_config": to_dict(method_config(method, options))}
    defaults = {**defaults_tree(FinetuneConfig), "method_config": defaults_tree(get_method(method).config_cls)}
    return config, defaults


def _older(config: dict, *missing: str) -> dict:
    """The same record as an older version wrote it: without the dotted fields ``missing``."""
    old = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    for dotted in missing:
        section, name = dotted.split(".")
        del old[section][name]
    return old


def test_same_configuration_has_no_difference():
    config, defaults = _view()
    assert config_diff(config, config, defaults=defaults) == []


def test_field_added_later_at_its_default_is_not_a_difference():
    config, defaults = _view("adapter")
    old = _older(config, "sampling.parallel", "sampling.precision", "train.select_metric")
    assert config_diff(old, config, defaults=defaults) == []
    # without the defaults the absent fields count (the behaviour before: a library upgrade
    # made every interrupted run unresumable)
    assert config_diff(old, config) == ["sampling.parallel", "sampling.precision", "train.select_metric"]


def test_field_added_later_at_another_value_is_a_difference():
    config, defaults = _view("adapter")
    config["sampling"]["parallel"] = "threshold"
    assert config_diff(_older(config, "sampling.parallel"), config, defaults=defaults) == ["sampling.parallel"]


def test_a_legacy_value_is_what_an_older_record_meant():
    # runs recorded before rank_penalty existed had the penalty in the loss: resuming one under
    # today's default (the proximal step) would change what it computes mid-run
    assert LEGACY_VALUES["method_config.rank_penalty"] == "loss"
    config, defaults = _view()
    assert config["method_config"]["rank_penalty"] == "proximal"
    old = _older(config, "method_config.rank_penalty")
    assert config_diff(old, config, defaults=defaults) == ["method_config.rank_penalty"]
    same, _ = _view(rank_penalty="loss")
    assert config_diff(old, same, defaults=defaults) == []


def test_resolved_method_options_are_compared_not_the_overrides():
    explicit, defaults = _view(preset="paper", ranks=[64, 32, 8])
    implicit, _ = _view()
    assert config_diff(implicit, explicit, defaults=defaults) == []
    other, _ = _view(preset="mix")
    assert "method_config.read" in config_diff(implicit, other, defaults=defaults)
    # a record without the resolved options (a finished run's result.json) compares the overrides
    bare = {k: v for k, v in implicit.items() if k != "method_config"}
    assert config_diff(bare, explicit, defaults=defaults) == ["method_options"]


def test_base_weights_summary_names_each_case(tmp_path):
    import json

    from lora_diffusion.runs import base_weights_summary

    def run(name, sha):
        d = tmp_path / name
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"base_weights": {"sha256": sha} if sha else None}))

    run("a/full/seed-42", "a" * 64)
    assert base_weights_summary(tmp_path).endswith(f"`{'a' * 12}` (1 runs).")
    run("a/lora/seed-42", None)
    line = base_weights_summary(tmp_path)
    assert "not recorded (1 runs" in line and "lora_diffusion.reproduction" in line
    run("b/full/seed-42", "b" * 64)
    assert base_weights_summary(tmp_path).endswith("compare runs made on one base only.")
