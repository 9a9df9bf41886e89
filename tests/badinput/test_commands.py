"""Bad inputs to ``pretrain``, ``eval-base``, ``study``, ``report`` and ``plot``."""

import json


def _pretrain(world, out, *extra):
    return ["pretrain", "--base", str(world.base), "--corpus", str(world.corpus), "--output-dir", str(out), "--quiet",
            "--steps", "1", "--set", "seq_len=16", "--set", "eval_chunks=2", "--set", "train.batch_size=4",
            "--set", "train.micro_batch_size=4", "--set", "train.save_every=1", "--set", "train.eval_every=0", *extra]


def test_pretrain_finished_run_resume_and_overwrite(cli, world, tmp_path):
    out = tmp_path / "p"
    rc, _, err = cli.run(_pretrain(world, out), own=out)
    assert rc == 0, err
    cli.refused(_pretrain(world, out), "finished run", "--overwrite")
    cli.refused(_pretrain(world, out, "--resume", "--seed", "3"), "another configuration", "train.seed")
    rc, _, err = cli.run(_pretrain(world, out, "--resume"))  # nothing may change
    assert rc == 0 and "finished run" in err


def test_pretrain_resume_without_checkpoint(cli, world, tmp_path):
    cli.refused(_pretrain(world, tmp_path / "p", "--resume"), "nothing to resume")


def test_pretrain_non_utf8_corpus_names_file_and_line(cli, world, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"good line\n" * 3 + b"bad \xe9 line\n")
    args = _pretrain(world, tmp_path / "p")
    args[args.index("--corpus") + 1] = str(corpus)
    cli.refused(args, str(corpus), "line 4", "UTF-8")
    assert not (tmp_path / "p").exists()


def test_pretrain_output_under_a_file_and_bad_cache_name(cli, world, tmp_path):
    (tmp_path / "f").write_text("x")
    cli.refused(_pretrain(world, tmp_path / "f" / "p"), "output_dir", "is a file")
    cli.refused(_pretrain(world, tmp_path / "p", "--cache", "../escape"), "--cache", "plain name")


def test_pretrain_bad_values_name_the_field(cli, world, tmp_path):
    cli.refused(_pretrain(world, tmp_path / "p", "--set", "diffusion.num_steps=0"), "diffusion.num_steps")
    cli.refused(_pretrain(world, tmp_path / "p", "--set", "train.min_lr_ratio=.inf"), "train.min_lr_ratio", "finite")
    cli.refused(_pretrain(world, tmp_path / "p", "--set", "train.batch_size=4096",
                          "--set", "train.micro_batch_size=4096"), "train.batch_size 4096", "training rows")


def test_eval_base_binary_corpus_and_bad_output(cli, world, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"text\n\x00\x00\n")
    cli.refused(["eval-base", "--base", world.base, "--corpus", corpus], str(corpus))
    (tmp_path / "f").write_text("x")
    cli.refused(["eval-base", "--base", world.base, "--corpus", world.corpus, "--output", tmp_path / "f" / "o.json"],
                "--output", "is a file")
    cli.refused(["eval-base", "--base", world.base, "--corpus", world.corpus, "--seq-len", "2"], "--seq-len")


def test_study_output_under_a_file(cli, tmp_path):
    (tmp_path / "f").write_text("x")
    cli.refused(["study", "--methods", "bitfit", "--output-dir", tmp_path / "f" / "s"], "output_dir", "is a file")


def test_report_of_a_missing_study(cli, tmp_path):
    cli.refused(["report", "--study", tmp_path / "none", "--output", tmp_path / "rep"], "--study", "none")


def test_plot_of_a_bad_history_names_file_and_line(cli, tmp_path):
    hist = tmp_path / "h.json"
    hist.write_text('[{"step": 1, "loss": 2.0},\n oops]\n')
    cli.refused(["plot", "--history", hist, "--output", tmp_path / "c.png"], f"{hist}:2", "JSON")
    hist.write_text(json.dumps([{"loss": 2.0}]))
    cli.refused(["plot", "--history", hist, "--output", tmp_path / "c.png"], str(hist), "'step'")
