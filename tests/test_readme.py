"""The README stays a page for users: short, opening with the two commands, naming only real CLI verbs and
flags; and no relative link in the README or docs/ points at a file that is not there."""
from __future__ import annotations

import argparse
import re
import shlex
import unicodedata
from pathlib import Path

import pytest

from leakcore.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_LINES = 250

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")  # a span may wrap onto the next line
WORD = re.compile(r"[a-z][a-z0-9-]*")
FLAG = re.compile(r"^\[?(--[a-z][a-z0-9-]*)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.I)


def cli() -> tuple[dict[str, argparse.ArgumentParser], dict[str, int]]:
    """The CLI's verbs with their parsers, and its global options with how many values each takes; read from
    the parser itself (no process spawned)."""
    parser = build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert subs, "leakcore's parser has no subcommands"
    globals_ = {opt: (0 if a.nargs == 0 else 1) for a in parser._actions for opt in a.option_strings}
    return dict(subs[0].choices), globals_


def code_text(markdown: str) -> list[str]:
    """The lines of every fenced code block (continued lines joined) and every inline code span: where
    commands are written."""
    lines = [ln for block in FENCE.findall(markdown) for ln in block.replace("\\\n", " ").splitlines()]
    prose = FENCE.sub("", markdown)
    return lines + [span.replace("\n", " ") for span in INLINE.findall(prose)]


def commands(markdown: str, global_options: dict[str, int] | None = None) -> list[tuple[str, list[str]]]:
    """Each `leakcore [GLOBAL OPTIONS] VERB ...` written in code (also as .../bin/leakcore), with the long flags
    written after the verb, up to a `#` comment or the next command. `leakcore` as an option's value
    (`useradd --home ... leakcore`), as part of a word (`leakcore.cli`, `Description=leakcore`) or before a
    placeholder (`leakcore <verb>`) is not a command."""
    global_options = {"-v": 0, "--verbose": 0, "--reviewer": 1} if global_options is None else global_options
    found = []
    for line in code_text(markdown):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote in prose set as code
            tokens = line.split("#", 1)[0].split()
        starts = [i for i, t in enumerate(tokens)
                  if (t == "leakcore" or t.endswith("/leakcore")) and not (i and tokens[i - 1].startswith("-"))]
        for n, i in enumerate(starts):
            end = starts[n + 1] if n + 1 < len(starts) else len(tokens)
            j = i + 1
            while j < end and tokens[j] in global_options:
                j += 1 + global_options[tokens[j]]
            if j >= end:
                continue
            verb = tokens[j]
            if verb.startswith("-"):
                found.append((verb, []))  # an option the parser does not know, where the verb should be
            elif WORD.fullmatch(verb):
                flags = [m.group(1) for t in tokens[j + 1:end] if (m := FLAG.match(t))]
                found.append((verb, flags))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def relative_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    text = INLINE.sub("", text)
    targets = LINK.findall(text) + HTML_SRC.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; keep it to {MAX_LINES} at most and move studies to docs/"


def test_readme_opens_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    blocks = FENCE.findall(text)
    assert blocks, "README.md has no code block"
    cmds = [ln.split("#", 1)[0].strip() for ln in blocks[0].splitlines()]
    assert [c for c in cmds if c] == ["make demo", "make test"], f"first code block runs {cmds}"
    before = text[: text.index("```")]
    assert not re.search(r"^##\s", before, re.M), "the two commands come before any section"


def test_readme_shows_the_cli():
    _, global_options = cli()
    assert len({verb for verb, _ in commands(README.read_text(encoding="utf-8"), global_options)}) >= 10, \
        "the README's command-line section was not found"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_only_real_subcommands_and_flags(path):
    verbs, global_options = cli()
    for verb, flags in commands(path.read_text(encoding="utf-8"), global_options):
        assert verb in verbs, f"{path.name} names `leakcore {verb}`, not a subcommand (they are: {sorted(verbs)})"
        options = set(verbs[verb]._option_string_actions)
        for flag in flags:
            assert flag in options, f"{path.name} gives `leakcore {verb} {flag}`, which `leakcore {verb} --help` lacks"


def test_the_help_names_the_workspace_as_the_readme_does():
    """`leakcore VERB WS` in the README: `leakcore VERB --help` calls that argument WS too."""
    verbs, _ = cli()
    written = set(re.findall(r"leakcore (\w+) WS\b", README.read_text(encoding="utf-8")))
    assert len(written) >= 10, written
    for verb in sorted(written):
        usage = verbs[verb].format_usage()
        assert re.search(r" WS\b", usage), f"`leakcore {verb} --help` names the workspace otherwise: {usage}"


def test_every_option_of_add_says_what_it_takes():
    """A new user reads `leakcore add --help` first: no option without a line, and a repeatable one says so."""
    verbs, _ = cli()
    options = {a.option_strings[-1]: a for a in verbs["add"]._actions if a.option_strings and a.dest != "help"}
    assert {"--dataset", "--source", "--format", "--role"} <= set(options)
    assert [o for o, a in options.items() if not a.help] == []
    assert [o for o, a in options.items() if isinstance(a, argparse._AppendAction) and "repeatable" not in a.help] == []


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_at_files(path):
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        assert dest.exists(), f"{path.name} links to {target}, which does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{path.name} links to {target}: no such heading in {dest.name}"


def test_the_checks_see_what_they_check(tmp_path):
    """The parsers above find verbs, flags and links in text made to hold them (so a pass means something)."""
    md = ("# T\n\n## Foo bar: baz\n\n```bash\nleakcore scan WS --plan  # then leakcore report WS --json\n"
          "sudo -u leakcore /opt/x/.venv/bin/leakcore --reviewer a@b.org \\\n    roles WS --set a@b.org=lead\n"
          "install -o leakcore -g leakcore -m 700 /srv/leakcore\nDescription=leakcore leak review\n"
          "leakcore --bogus scan WS\nleakcore coverage WS --b-where \"label != 'cat'\" [--spectra]\n```\n"
          "Run `.venv/bin/leakcore add WS --dataset D` and `leakcore <verb> --help`, see [x](docs/a.md#b) "
          "![y](assets/c.png) <img src=\"d.png\"> [web](https://e.org) and `[not](a link)`; leakcore.cli is a "
          "module.\n")
    assert commands(md) == [("scan", ["--plan"]), ("roles", ["--set"]), ("--bogus", []),
                            ("coverage", ["--b-where", "--spectra"]), ("add", ["--dataset"])]
    verbs, global_options = cli()
    assert {"scan", "report", "export"} <= set(verbs) and global_options.get("--reviewer") == 1
    path = tmp_path / "probe.md"
    path.write_text(md, encoding="utf-8")
    assert relative_links(path) == ["docs/a.md#b", "assets/c.png", "d.png"]
    assert anchors(path) == {"t", "foo-bar-baz"}
