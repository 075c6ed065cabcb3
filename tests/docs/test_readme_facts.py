"""What the README says about the scripts matches the scripts: flags, exit codes, `version`.

Why: the README once listed a flag one script refused and left out four that
existed; these facts are read from the code here, not copied.
"""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

import pytest

from .readme import README, ROOT, bash_blocks

# README sections that describe the two scripts' options.
SCRIPT_SECTIONS = ("## Run the pipeline locally", "## Run it on AWS")
# Flags in those sections that belong to other tools (uv, pulumi), not to the scripts.
OTHER_TOOLS = {"--no-default-groups", "--group"}  # uv run's


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _options(name: str) -> set[str]:
    parser = _script(name).build_parser()
    return {option for action in parser._actions for option in action.option_strings}


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end > 0 else len(text)]


def test_every_flag_the_readme_gives_the_scripts_exists() -> None:
    text = README.read_text(encoding="utf-8")
    accepted = _options("train_and_transform") | _options("local_transform")
    mentioned: set[str] = set()
    for heading in SCRIPT_SECTIONS:
        section = _section(text, heading)
        snippets = [c for block in bash_blocks(section) for c in block.commands]
        prose = re.sub(r"^```.*?^```$", "", section, flags=re.MULTILINE | re.DOTALL)
        snippets += re.findall(r"`([^`]+)`", prose)
        for code in snippets:
            if not re.match(r"\s*(aws|pulumi|curl|docker)\b", code):  # other tools' flags
                mentioned |= set(re.findall(r"(?<![\w-])(--[A-Za-z][\w-]*)", code))
    unknown = sorted(mentioned - accepted - OTHER_TOOLS)
    assert not unknown, f"README.md names flags neither script accepts: {unknown}"


@pytest.mark.parametrize(
    "flag", ["--lambda-timeout", "--poll-seconds", "--eval-fraction", "--transform-fraction"]
)
def test_flags_issue_15_found_missing_are_documented(flag: str) -> None:
    assert flag in _options("train_and_transform")
    assert f"`{flag}" in README.read_text(encoding="utf-8")


def test_exit_codes_in_the_readme_are_the_ones_the_scripts_use() -> None:
    text = README.read_text(encoding="utf-8")
    sentence = re.search(r"Exit status \(both scripts\):(.*?)behind\.", text, re.DOTALL)
    assert sentence, "README.md lost its exit status sentence"
    documented = {int(code) for code in re.findall(r"\b(\d+) [a-z]", sentence.group(1))}
    console = (ROOT / "model" / "console.py").read_text(encoding="utf-8")
    used = {1, 2} | {int(code) for code in re.findall(r"return (\d+)", console)}
    assert documented == used | {0}, f"README {sorted(documented)} vs code {sorted(used | {0})}"


def test_direct_invoke_fields_are_the_handlers() -> None:
    from lambda_handler.events import DIRECT_FIELDS

    text = _section(README.read_text(encoding="utf-8"), "## Drop a CSV in S3")
    for field in DIRECT_FIELDS:
        assert f"`{field}`" in text, f"the direct-invoke field `{field}` is not documented"
