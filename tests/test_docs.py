"""The README and docs/ stay true: a short front door, links that land, every page reachable, the commands CI runs,
the project-file reference and examples against the config dataclasses, and the module map against the package."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from pathlib import Path

import pytest

from qarac_gui.core.project import config
from qarac_gui.core.project.config import apply_override, parse_project

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 260


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ---- reading Markdown ------------------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """The text outside fenced code blocks and code spans (a code span's content cannot hold a link)."""
    return CODE_SPAN.sub("code", FENCE.sub("", text))


def links(text: str) -> list[str]:
    """The targets of the inline links and images, outside code."""
    return LINK.findall(prose(text))


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}[ \t]*\n(.*?)^```", text, re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)      # a link in a heading: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, title in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(title)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):      # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.is_relative_to(ROOT):
            problems.append(f"{rel(page)}: {target}: points outside the repository")
        elif not dest.exists():
            problems.append(f"{rel(page)}: {target}: no such file")
        elif anchor:
            if dest.suffix != ".md":
                problems.append(f"{rel(page)}: {target}: an #anchor into a file that is not Markdown")
            elif anchor not in anchors(dest):
                problems.append(f"{rel(page)}: {target}: no heading '#{anchor}' in {rel(dest)} "
                                f"(it has: {', '.join(sorted(anchors(dest)))})")
    return problems


# ---- the front door and the links ------------------------------------------------------------------------------

def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, (f"README.md has {lines} lines; keep it under {README_MAX_LINES} and move "
                                      "reference material into a page under docs/")


def test_the_readme_shows_a_screenshot():
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", prose(README.read_text(encoding="utf-8")))
    assert any(t.startswith("docs/screenshots/") for t in images)


@pytest.mark.parametrize("page", pages(), ids=rel)
def test_every_relative_link_and_anchor_lands(page):
    assert broken_links(page) == []


def test_every_docs_page_is_linked_from_the_readme_or_another_page():
    linked = set()
    for page in pages():
        for target in links(page.read_text(encoding="utf-8")):
            path_part = target.partition("#")[0]
            if path_part and not re.match(r"[a-z][a-z0-9+.-]*:", path_part, re.I):
                dest = (page.parent / path_part).resolve()
                if dest != page:
                    linked.add(dest)
    orphans = [rel(p) for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert orphans == [], "link these pages from README.md or another docs page"


# Repository paths named in code spans, e.g. `qarac_gui/core/training/loop.py`, `tests/hub_server.py`, `docs/`.
REPO_PATH = re.compile(r"^(?:qarac_gui|tests|docs|packaging|benches|resources|\.ci)/[\w.\-/]*$")
MODULE_NAME = re.compile(r"^qarac_gui(?:\.\w+)+")
NOT_MODULES = {"qarac_gui.models"}      # names that look like modules: the entry-point group of model packages


def _module_problem(dotted: str) -> str:
    """'' when `dotted` is a module of the package, or a module and one name defined at its top level."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:end])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file():
            rest = parts[end:]
            if not rest:
                return ""
            text = source.read_text(encoding="utf-8")
            if len(rest) == 1 and re.search(rf"^(?:def|class) {rest[0]}\b|^{rest[0]}\b\s*[:=]", text, re.M):
                return ""
            return f"{'.'.join(rest)} is not defined in {rel(source)}"
    return "no such module"


def test_paths_and_modules_named_in_the_docs_exist():
    problems = []
    for page in pages():
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for _, span in CODE_SPAN.findall(text):
            span = span.strip()
            if REPO_PATH.match(span) and not (ROOT / span).exists():
                problems.append(f"{rel(page)}: `{span}`: no such file or folder")
            module = MODULE_NAME.match(span)
            if module and not REPO_PATH.match(span) and module.group(0) not in NOT_MODULES:
                problem = _module_problem(module.group(0))
                if problem:
                    problems.append(f"{rel(page)}: `{span}`: {problem}")
    assert problems == []


# ---- the commands a new user runs are the ones CI runs ---------------------------------------------------------

CI = ROOT / ".ci" / "run"


def _normalise(command: str) -> str:
    command = re.sub(r"\s+-q\b", "", command.strip())
    return re.sub(r"\s+", " ", command)


def ci_install_and_test_steps() -> list[str]:
    """.ci/run's commands after the virtual environment is made and active, without -q and pip's self-upgrade."""
    steps = []
    for line in CI.read_text(encoding="utf-8").splitlines():
        line = _normalise(line.split(" #")[0])
        if not line or line.startswith(("#", "set ", "cd ", "python3 -m venv", ". .venv/")) or "--upgrade pip" in line:
            continue
        steps.append(line)
    return steps


def readme_test_command() -> list[str]:
    text = README.read_text(encoding="utf-8")
    commands = [c for block in code_blocks(text, "sh") for c in block.splitlines() if '".[test]"' in c]
    assert len(commands) == 1, "the README should give one command that installs the test extra and runs the tests"
    steps = [_normalise(s) for s in commands[0].split("&&")]
    assert steps[:2] == ["python -m venv .venv", ". .venv/bin/activate"], steps
    return steps[2:]


def test_the_readme_test_command_is_what_ci_runs():
    ci = ci_install_and_test_steps()
    assert ci, ".ci/run has no install or test step"
    assert readme_test_command() == ci


def test_the_torch_pin_and_the_install_lines_match_ci():
    ci = ci_install_and_test_steps()
    torch_pin = [s for s in ci if s.startswith("pip install torch==")]
    assert len(torch_pin) == 1, ci
    assert 'pip install -e ".[test]"' in ci
    readme = README.read_text(encoding="utf-8")
    install = readme[readme.index("### With pip"):]
    pip_block = code_blocks(install, "sh")[0]
    assert torch_pin[0] in [_normalise(line.split("#")[0]) for line in pip_block.splitlines()]
    # Every `pip install` line in a docs page's shell blocks is one that CI runs too (with the demo extra allowed).
    for page in pages():
        for block in code_blocks(page.read_text(encoding="utf-8"), "sh"):
            for command in block.splitlines():
                for step in command.split("&&"):
                    step = _normalise(step.split(" #")[0])
                    if step.startswith("pip install torch=="):
                        assert step == torch_pin[0], f"{rel(page)}: {step}: CI installs {torch_pin[0]}"


# ---- the project-file reference against the config dataclasses -------------------------------------------------

PROJECT_FILE = DOCS / "project-file.md"
TYPE_WORDS = {str: "string", int: "integer", float: "number", bool: "bool"}


def reference_tables() -> dict[str, list[list[str]]]:
    """The reference section's tables by heading ("Top level", "[backbones.NAME]", ...): their rows, as cells."""
    text = PROJECT_FILE.read_text(encoding="utf-8")
    section = text[text.index("\n## Reference\n"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    tables: dict[str, list[list[str]]] = {}
    current = None
    for line in section.splitlines():
        heading = re.match(r"^### (.+)$", line)
        if heading:
            current = heading.group(1).strip().strip("`")
            tables[current] = []
        elif current and line.startswith("|") and not re.match(r"^\|[\s|:-]+\|$", line):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if cells[0] != "field":
                tables[current].append(cells)
    return tables


def _hints(cls: type) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls, vars(config))


def _inner(tp: typing.Any) -> typing.Any:
    """The dataclass inside dict[str, X] or list[X], or X itself."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (dict, list) and args and dataclasses.is_dataclass(args[-1]):
        return args[-1]
    return tp


def section_class(heading: str) -> type:
    """The dataclass a reference heading documents: "Top level" is Project, "[tasks.head]" is TaskConfig.head's."""
    cls: typing.Any = config.Project
    if heading == "Top level":
        return cls
    for part in heading.strip("[]").split("."):
        if part == "NAME":
            continue
        cls = _inner(_hints(cls)[part])
        assert dataclasses.is_dataclass(cls), f"{heading}: {part} is not a table"
    return cls


def toml_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("toml", True)]


def every_config_class() -> set[type]:
    found, todo = set(), [config.Project]
    while todo:
        cls = todo.pop()
        if cls in found:
            continue
        found.add(cls)
        hints = _hints(cls)
        todo += [_inner(hints[f.name]) for f in toml_fields(cls) if dataclasses.is_dataclass(_inner(hints[f.name]))]
    return found


def _type_word(tp: typing.Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]
    if typing.get_origin(tp) is list and typing.get_args(tp) == (str,):
        return "list of strings"
    if typing.get_origin(tp) is dict and not dataclasses.is_dataclass(typing.get_args(tp)[-1]):
        values = typing.get_args(typing.get_args(tp)[-1]) or (typing.get_args(tp)[-1],)
        plural = {"integer": "numbers", "number": "numbers", "string": "strings", "bool": "bools"}
        return "table of " + " or ".join(dict.fromkeys(plural[TYPE_WORDS[v]] for v in values))
    if typing.get_origin(tp) is dict:
        return "table of tables"
    if typing.get_origin(tp) is list:
        return "array of tables"
    if dataclasses.is_dataclass(tp):
        return "table"
    return TYPE_WORDS.get(tp, repr(tp))


def _default(f: dataclasses.Field) -> typing.Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def test_the_reference_documents_every_section_of_the_project_file():
    documented = {section_class(heading) for heading in reference_tables()}
    missing = sorted(c.__name__ for c in every_config_class() - documented)
    assert missing == [], f"add a ### section with a field table to {rel(PROJECT_FILE)} for {missing}"


def test_the_reference_documents_every_key_and_only_real_keys():
    problems = []
    for heading, rows in reference_tables().items():
        cls = section_class(heading)
        hints = _hints(cls)
        documented = [row[0].strip("`") for row in rows]
        real = [f.name for f in toml_fields(cls)]
        problems += [f"[{heading}] {key}: not documented" for key in real if key not in documented]
        problems += [f"[{heading}] {key}: documented, but {cls.__name__} has no such field"
                     for key in documented if key not in real]
        problems += [f"[{heading}] {key}: documented twice" for key in set(documented) if documented.count(key) > 1]
        for row in rows:
            key = row[0].strip("`")
            if key not in real:
                continue
            field = next(f for f in toml_fields(cls) if f.name == key)
            if row[1] != _type_word(hints[key]):
                problems.append(f"[{heading}] {key}: documented as {row[1]!r}, but it is {_type_word(hints[key])!r}")
            shown = re.match(r"^`([^`]*)`", row[2])          # "`1e-5`"; "see below", "depends on ..." say more
            if shown and _default(field) is not None and not dataclasses.is_dataclass(_default(field)):
                try:
                    value = tomllib.loads(f"v = {shown.group(1)}")["v"]
                except tomllib.TOMLDecodeError:
                    problems.append(f"[{heading}] {key}: default {shown.group(1)} is not a TOML value")
                    continue
                if value != _default(field) or type(value) is not type(_default(field)):
                    if not (isinstance(_default(field), dict) and value == {}):
                        problems.append(f"[{heading}] {key}: documented default {shown.group(1)}, "
                                        f"but it is {_default(field)!r}")
    assert problems == []


def project_examples() -> list[tuple[str, str]]:
    """Every TOML block in the README and docs/ that is a whole project file (it sets `version`)."""
    return [(rel(page), block) for page in pages() for block in code_blocks(page.read_text(encoding="utf-8"), "toml")
            if re.search(r"^version\s*=", block, re.M)]


def test_the_complete_example_is_in_the_project_file_page():
    assert any(page == rel(PROJECT_FILE) for page, _ in project_examples())


@pytest.mark.parametrize("page,block", project_examples(), ids=[page for page, _ in project_examples()])
def test_every_example_project_loads_strictly(page, block):
    parse_project(tomllib.loads(block), ROOT, check=True)      # unknown keys, wrong types, invalid values: raise


def test_every_set_example_applies_to_the_complete_example():
    example = next(block for page, block in project_examples() if page == rel(PROJECT_FILE))
    assignments = []
    for page in pages():
        for block in code_blocks(page.read_text(encoding="utf-8"), "sh"):
            for line in block.splitlines():
                if line.lstrip().startswith("qarac-train"):
                    assignments += [a.strip("'\"") for a in re.findall(r"--set\s+('[^']*'|\"[^\"]*\"|\S+)", line)]
    assert assignments, "no --set example found"
    for assignment in assignments:
        raw = tomllib.loads(example)
        apply_override(raw, assignment)
        parse_project(raw, ROOT, check=True)


# ---- the module map against the package --------------------------------------------------------------------------

DEVELOPMENT = DOCS / "development.md"


def test_the_module_map_lists_every_module_of_the_package():
    package = ROOT / "qarac_gui"
    mapped = {(DEVELOPMENT.parent / target.partition("#")[0]).resolve()
              for target in links(DEVELOPMENT.read_text(encoding="utf-8"))}
    modules = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    missing = [rel(p) for p in modules if p.resolve() not in mapped]
    assert missing == [], f"add these modules to the module map in {rel(DEVELOPMENT)}"


def test_the_development_page_names_the_inner_loop_and_the_full_suite():
    text = DEVELOPMENT.read_text(encoding="utf-8")
    assert 'pytest -m "not slow"' in text
    assert "`python -m pytest`" in text
    assert "lint-imports" in text and "tool.importlinter.contracts" in text
    assert "qarac_gui/core/training/loop.py" in text
