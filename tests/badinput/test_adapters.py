"""Bad adapters and bad inputs to ``evaluate``, ``generate`` and ``analyze-rank``: damaged
tensor files (SHA-256 recorded in adapter_config.json), edited configs, outputs (failures 1, 8)."""

import json
import shutil


def _evaluate(adapter, data, out, *extra):
    return ["evaluate", "--adapter", str(adapter), "--data-file", str(data), "--output-dir", str(out),
            "--steps", "8", *extra]


def _overwrite_data_bytes(path):
    """Change tensor data bytes, leaving the safetensors header (and the file size) intact."""
    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    raw[start:start + 64] = bytes(64)
    raw[-64:] = b"\xff" * 64
    path.write_bytes(bytes(raw))


def _edit_config(adapter, edit):
    path = adapter / "adapter_config.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    return path


def test_damaged_adapter_weights_are_refused_naming_the_file(cli, world, tmp_path):  # failure 1
    adapter = world.copy("trajectory", tmp_path) / "adapter"
    _overwrite_data_bytes(adapter / "adapter_model.safetensors")
    cli.refused(_evaluate(adapter, world.dev, tmp_path / "e"), str(adapter / "adapter_model.safetensors"),
                "SHA-256 mismatch")
    assert not (tmp_path / "e").exists()


def test_damaged_full_model_weights_are_refused(cli, world, tmp_path):
    adapter = world.copy("full", tmp_path) / "adapter"
    _overwrite_data_bytes(adapter / "model" / "model.safetensors")
    cli.refused(["generate", "--adapter", adapter, "--prompt", "word apple means:", "--steps", "8"],
                str(adapter / "model" / "model.safetensors"), "SHA-256 mismatch")


def test_damaged_peft_copy_is_refused(cli, world, tmp_path):
    adapter = world.copy("lora", tmp_path) / "adapter"
    _overwrite_data_bytes(adapter / "peft" / "adapter_model.safetensors")
    cli.refused(["generate", "--adapter", adapter, "--prompt", "word apple means:", "--steps", "8"],
                "peft/adapter_model.safetensors", "SHA-256 mismatch")


def test_missing_weights_file_is_named(cli, world, tmp_path):
    adapter = world.copy("trajectory", tmp_path) / "adapter"
    (adapter / "adapter_model.safetensors").unlink()
    cli.refused(_evaluate(adapter, world.dev, tmp_path / "e"), str(adapter / "adapter_model.safetensors"))


def test_damaged_checkpoint_is_refused_on_resume(cli, world, tmp_path):
    from .conftest import finetune_args

    run = world.copy("trajectory", tmp_path)
    (run / "result.json").unlink()
    shutil.rmtree(run / "adapter")
    ckpt = run / "checkpoints" / "step-0000001"
    _overwrite_data_bytes(ckpt / "trainable.safetensors")
    cli.refused(finetune_args(world, run, "trajectory", "--resume"), str(ckpt / "trainable.safetensors"),
                "SHA-256 mismatch")


def test_changed_ranks_are_one_line_naming_file_and_field(cli, world, tmp_path):  # failure 8
    adapter = world.copy("trajectory", tmp_path) / "adapter"
    path = _edit_config(adapter, lambda m: m["config"].update(ranks=[8, 4, 2]))
    cli.refused(_evaluate(adapter, world.dev, tmp_path / "e"), str(path), "field 'config'", "adapter_model.safetensors",
                "edited")


def test_removed_base_fingerprint_names_file_and_field(cli, world, tmp_path):  # failure 8
    adapter = world.copy("trajectory", tmp_path) / "adapter"
    path = _edit_config(adapter, lambda m: m.pop("base_fingerprint"))
    cli.refused(_evaluate(adapter, world.dev, tmp_path / "e"), str(path), "field 'base_fingerprint'", "missing")


def test_fingerprint_key_of_wrong_type_is_named(cli, world, tmp_path):
    adapter = world.copy("trajectory", tmp_path) / "adapter"
    path = _edit_config(adapter, lambda m: m["base_fingerprint"].update(hidden_size="32"))
    cli.refused(_evaluate(adapter, world.dev, tmp_path / "e"), str(path), "base_fingerprint.hidden_size")


def test_unknown_field_names_file_and_field(cli, world, tmp_path):  # failure 8
    adapter = world.copy("trajectory", tmp_path) / "adapter"
    path = _edit_config(adapter, lambda m: m.update(colour="blue"))
    cli.refused(_evaluate(adapter, world.dev, tmp_path / "e"), str(path), "field 'colour'", "unknown field")
    path = _edit_config(adapter, lambda m: (m.pop("colour"), m["config"].update(colour="blue")))
    cli.refused(_evaluate(adapter, world.dev, tmp_path / "e"), str(path), "field 'config.colour'", "unknown")


def test_bad_method_option_value_names_file_and_field(cli, world, tmp_path):
    adapter = world.copy("trajectory", tmp_path) / "adapter"
    path = _edit_config(adapter, lambda m: m["config"].update(sigmas=[1.0, float("nan"), 0.25]))
    cli.refused(_evaluate(adapter, world.dev, tmp_path / "e"), str(path), "config.sigmas", "finite")


def test_bad_response_format_names_file_and_field(cli, world, tmp_path):
    adapter = world.copy("trajectory", tmp_path) / "adapter"
    path = _edit_config(adapter, lambda m: m["task_format"]["response"].update(response_budget=-3))
    cli.refused(["generate", "--adapter", adapter, "--prompt", "x"], str(path), "task_format.response.response_budget")


def test_invalid_json_config_names_file_and_line(cli, world, tmp_path):
    adapter = world.copy("trajectory", tmp_path) / "adapter"
    (adapter / "adapter_config.json").write_text('{\n  "method": "trajectory",\n  oops\n}\n')
    cli.refused(_evaluate(adapter, world.dev, tmp_path / "e"), f"{adapter / 'adapter_config.json'}:3", "JSON")


def test_not_an_adapter_directory(cli, world, tmp_path):
    (tmp_path / "empty").mkdir()
    cli.refused(_evaluate(tmp_path / "empty", world.dev, tmp_path / "e"), "no adapter_config.json",
                str(tmp_path / "empty"))


def test_evaluate_refuses_output_inside_the_adapter(cli, world):
    adapter = world.adapter("trajectory")
    cli.refused(_evaluate(adapter, world.dev, adapter / "eval"), "inside the adapter")


def test_evaluate_refuses_an_earlier_result_without_overwrite(cli, world, tmp_path):
    out = tmp_path / "e"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    cli.refused(_evaluate(world.adapter("trajectory"), world.dev, out), "metrics.json", "--overwrite")


def test_evaluate_refuses_an_unwritable_output(cli, world, tmp_path):
    (tmp_path / "f").write_text("x")
    cli.refused(_evaluate(world.adapter("trajectory"), world.dev, tmp_path / "f" / "e"), "output_dir",
                str(tmp_path / "f" / "e"))


def test_evaluate_non_utf8_file_names_file_and_line(cli, world, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "ok", "response": "fine"}\n{"prompt": "\xff", "response": "x"}\n')
    cli.refused(_evaluate(world.adapter("trajectory"), bad, tmp_path / "e"), f"{bad}:2", "utf-8")


def test_generate_refuses_an_existing_output_and_a_missing_directory(cli, world, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("keep\n")
    args = ["generate", "--adapter", world.adapter("trajectory"), "--prompt", "x", "--steps", "8"]
    cli.refused([*args, "--output", out], str(out), "--overwrite")
    cli.refused([*args, "--output", tmp_path / "no" / "o.jsonl"], "does not exist")
    assert out.read_text() == "keep\n"


def test_generate_input_file_errors_name_file_and_line(cli, world, tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "a"}\n["not", "an", "object"]\n')
    cli.refused(["generate", "--adapter", world.adapter("trajectory"), "--input-file", bad], f"{bad}:2",
                "not a JSON object")


def test_generate_refuses_non_finite_temperature_and_no_prompt(cli, world):
    cli.refused(["generate", "--adapter", world.adapter("trajectory"), "--prompt", "x", "--temperature", "inf"],
                "sampling.temperature", "finite")
    cli.refused(["generate", "--adapter", world.adapter("trajectory")], "prompts")


def test_analyze_rank_refuses_other_methods_and_bad_output(cli, world, tmp_path):
    cli.refused(["analyze-rank", "--adapter", world.adapter("lora"), "--output-dir", tmp_path / "a"], "trajectory",
                "'lora'")
    (tmp_path / "f").write_text("x")
    cli.refused(["analyze-rank", "--adapter", world.adapter("trajectory"), "--output-dir", tmp_path / "f"],
                "--output-dir", "not a directory")


def test_composed_adapters_are_verified_too(world, tmp_path):
    import pytest

    from lora_diffusion.hub import load_base
    from lora_diffusion.methods.multitask import MultiTaskTrajectoryModel
    from lora_diffusion.utils.integrity import IntegrityError

    good, bad = world.adapter("trajectory"), world.copy("nockpt", tmp_path) / "adapter"
    _overwrite_data_bytes(bad / "adapter_model.safetensors")
    with pytest.raises(IntegrityError, match=f"{bad / 'adapter_model.safetensors'}: SHA-256 mismatch"):
        MultiTaskTrajectoryModel.from_saved({"a": good, "b": bad}, load_base(str(world.base)))
