"""The README's Python API snippet runs verbatim against what the demo writes."""

import contextlib
import io
import re
from pathlib import Path

from lora_diffusion.cli import main
from lora_diffusion.hub import save_base
from lora_diffusion.testing import tiny_backbone

README = Path(__file__).resolve().parents[1] / "README.md"


def snippet() -> str:
    text = README.read_text()
    match = re.search(r"<!-- api-snippet[^>]*-->\s*```python\n(.*?)```", text, flags=re.S)
    assert match, "README lost its API snippet"
    return match.group(1)


def test_readme_api_snippet_runs(tmp_path, monkeypatch):
    save_base(tiny_backbone("bert"), tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--base", str(tmp_path / "base"), "--steps", "2", "--eval-limit", "4",
                 "--set", "method_options.ranks=[8,4,2]"]) == 0
    assert (tmp_path / "runs" / "demo" / "adapter" / "adapter_config.json").is_file()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet(), "README.md", "exec"), {"__name__": "__readme__"})
    printed = [eval(line) for line in out.getvalue().splitlines()]  # two printed lists of responses
    assert len(printed) == 2 and all(len(p) == 1 for p in printed)
    assert all(isinstance(r, str) for p in printed for r in p)
