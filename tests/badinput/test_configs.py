"""Config files and overrides: every error names the file (when it came from one) and the field."""

from .conftest import finetune_args


def _with_config(world, tmp_path, text: str | bytes, name: str = "cfg.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path, finetune_args(world, tmp_path / "r") + ["--config", str(path)]


def test_unknown_field_in_a_config_file_names_file_and_field(cli, world, tmp_path):
    path, args = _with_config(world, tmp_path, "train:\n  lrr: 0.1\n")
    cli.refused(args, str(path), "train.lrr", "unknown field")


def test_bad_value_in_a_config_file_names_file_and_field(cli, world, tmp_path):
    path, args = _with_config(world, tmp_path, "train:\n  weight_decay: -1\n")
    cli.refused(args, str(path), "train.weight_decay", ">= 0")


def test_non_finite_value_in_a_config_file_names_file_and_field(cli, world, tmp_path):
    path, args = _with_config(world, tmp_path, "train:\n  max_grad_norm: .nan\n")
    cli.refused(args, str(path), "train.max_grad_norm", "finite")


def test_wrong_type_in_a_config_file(cli, world, tmp_path):
    path, args = _with_config(world, tmp_path, "train: 5\n")
    cli.refused(args, str(path), "train", "mapping")
    path, args = _with_config(world, tmp_path, "train:\n  log_every: many\n")
    cli.refused(args, str(path), "train.log_every", "expected int")


def test_invalid_yaml_names_file_and_line(cli, world, tmp_path):
    path, args = _with_config(world, tmp_path, "train:\n  lr: 0.1\n bad: [\n")
    cli.refused(args, f"{path}:", "invalid YAML")


def test_config_file_that_is_not_a_mapping(cli, world, tmp_path):
    path, args = _with_config(world, tmp_path, "- a\n- b\n")
    cli.refused(args, str(path), "mapping")


def test_non_utf8_config_file_names_file_and_line(cli, world, tmp_path):
    path, args = _with_config(world, tmp_path, b"train:\n  lr: 0.1\n# caf\xe9\n")
    cli.refused(args, f"{path}:3", "UTF-8")


def test_missing_config_file(cli, world, tmp_path):
    cli.refused(finetune_args(world, tmp_path / "r") + ["--config", str(tmp_path / "nope.yaml")], "nope.yaml",
                "not found")


def test_an_override_is_named_as_such_not_as_the_file(cli, world, tmp_path):
    path, args = _with_config(world, tmp_path, "train:\n  lr: 0.001\n")
    line = cli.refused(args + ["--set", "train.lr=-1"], "train.lr")
    assert str(path) not in line  # the bad value came from --set, not from the file


def test_malformed_set_and_bad_boolean(cli, world, tmp_path):
    cli.refused(finetune_args(world, tmp_path / "r") + ["--set", "train.lr"], "--set", "KEY=VALUE")
    cli.refused(finetune_args(world, tmp_path / "r") + ["--set", "classification_head=maybe"], "classification_head",
                "boolean")


def test_integer_field_refuses_fraction_infinity_and_boolean(cli, world, tmp_path):
    cli.refused(finetune_args(world, tmp_path / "r") + ["--set", "train.log_every=1.5"], "train.log_every")
    cli.refused(finetune_args(world, tmp_path / "r") + ["--set", "train.log_every=.inf"], "train.log_every")
    cli.refused(finetune_args(world, tmp_path / "r") + ["--set", "train.seed=true"], "train.seed")


def test_study_config_errors_name_the_field(cli, tmp_path):
    cli.refused(["study", "--methods", "full,dora", "--output-dir", tmp_path / "s"], "methods", "dora")
    cli.refused(["study", "--output-dir", tmp_path / "s", "--set", "method_lr={full: .inf}", "--methods", "full"],
                "method_lr.full", "finite")
