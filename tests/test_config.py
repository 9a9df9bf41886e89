import pytest

from lora_diffusion.config import (
    ConfigError,
    DiffusionConfig,
    PretrainConfig,
    TrainConfig,
    load_config,
)


def test_defaults_and_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("diffusion:\n  num_steps: 50\n  schedule: cosine\ntrain:\n  lr: 3.0e-4\n")
    cfg = load_config(PretrainConfig, path, ["train.max_steps=7", "seq_len=64"])
    assert cfg.diffusion.num_steps == 50 and cfg.diffusion.schedule == "cosine"
    assert cfg.train.lr == 3e-4 and cfg.train.max_steps == 7 and cfg.seq_len == 64
    assert isinstance(cfg.train, TrainConfig) and isinstance(cfg.diffusion, DiffusionConfig)


@pytest.mark.parametrize(
    "override, field",
    [
        ("diffusion.num_steps=0", "diffusion.num_steps"),
        ("diffusion.schedule=sigmoid", "diffusion.schedule"),
        ("diffusion.loss=l2", "diffusion.loss"),
        ("train.max_steps=-3", "train.max_steps"),
        ("train.lr=0", "train.lr"),
        ("train.batch_size=10", "train.batch_size"),
        ("train.mixed_precision=fp8", "train.mixed_precision"),
        ("train.lr=fast", "train.lr"),
        ("train.bogus=1", "train.bogus"),
        ("seq_len=2", "seq_len"),
    ],
)
def test_bad_values_fail_at_load_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        load_config(PretrainConfig, None, [override])


def test_bad_yaml_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(PretrainConfig, path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(PretrainConfig, tmp_path / "missing.yaml")


def test_warmup_capped_for_short_runs():
    assert TrainConfig(max_steps=100, warmup_steps=500).effective_warmup() == 10
    assert TrainConfig(max_steps=100_000, warmup_steps=500).effective_warmup() == 500


def test_yaml_12_booleans_an_unquoted_no_is_text(tmp_path):
    """YAML 1.1 reads no/off/yes as booleans ('the Norway problem'); configs and overrides read
    YAML 1.2: only true/false are booleans, and a boolean field still takes yes/no as text."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  mixed_precision: no\n  tensorboard: yes\n")
    cfg = load_config(PretrainConfig, path, [])
    assert cfg.train.mixed_precision == "no" and cfg.train.tensorboard is True
    cfg = load_config(PretrainConfig, None, ["train.mixed_precision=no", "train.tensorboard=off"])
    assert cfg.train.mixed_precision == "no" and cfg.train.tensorboard is False
    assert load_config(PretrainConfig, None, ["train.tensorboard=TRUE"]).train.tensorboard is True
