"""The README and docs/ name only what exists: every repository path, every vxlanctl command (asked of the real
binary), every key of the README's example configuration (one the parser reads); the README stays short."""
import glob
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from conftest import ROOT, VXLANCTL

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("Sources/", "Tests/", "scripts/", "docs/", "Fuzz/", ".ci/")
SUFFIXES = (".swift", ".sh", ".py", ".md", ".h", ".yaml")
# Made by the tools at run time, never committed (and in .gitignore).
GENERATED = {"Fuzz/crashes", ".build"}


def backticked(text):
    return re.findall(r"`([^`\n]+)`", text)


def repository_paths(text):
    """Tokens in backticks that name a file or directory of the repository."""
    found = set()
    for token in backticked(text):
        for word in re.split(r"[\s,()]+", token):
            word = word.strip(".:;")
            if word.startswith("./"):
                word = word[2:]
            if word.startswith(TOP) or (word.endswith(SUFFIXES) and "/" not in word and not word.startswith("*")
                                        and re.fullmatch(r"[A-Za-z0-9_.-]+", word)):
                found.add(word)
            elif re.fullmatch(r"[a-z-]+\.sh|hugepages-setup\.sh|Dockerfile|Package\.swift", word):
                found.add(word)
    return found


def exists(path):
    path = re.sub(r"/(NAME|FILE|DIR)\b", "/*", path)     # placeholders: Fuzz/corpus/NAME
    if path.rstrip("/") in GENERATED:
        return True
    if not path.endswith(SUFFIXES) and "/" in path and not (ROOT / path).exists() and (ROOT / (path + ".swift")).exists():
        return True                                     # a test class named by its file: Tests/X/LearningTests
    if "/" not in path and (shutil.which(path) or glob.glob(f"/usr/include/**/{path}", recursive=True)):
        return True                                     # DPDK's own tools and headers (dpdk-telemetry.py, rte_config.h)
    if any(c in path for c in "*?["):
        return bool(glob.glob(str(ROOT / path)))
    if "/" in path or path in ("Dockerfile", "Package.swift", "README.md", "hugepages-setup.sh"):
        return (ROOT / path).exists()
    # A bare file name (the packet-walk table names files of its module): it must exist somewhere in the tree.
    return any(ROOT.glob(f"Sources/**/{path}")) or any(ROOT.glob(f"Tests/**/{path}")) \
        or any(ROOT.glob(f"scripts/{path}")) or any(ROOT.glob(f"docs/{path}"))


def test_every_path_the_docs_name_exists():
    missing, named = [], 0
    for doc in DOCS:
        for path in sorted(repository_paths(doc.read_text())):
            named += 1
            if not exists(path):
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, "named but missing:\n" + "\n".join(missing)
    assert named > 60, f"only {named} paths found: the extraction is broken"


def test_a_made_up_path_is_caught():
    assert repository_paths("see `Sources/VXLANPipeline/NoSuchStage.swift` and `Gone.swift`") == \
        {"Sources/VXLANPipeline/NoSuchStage.swift", "Gone.swift"}
    assert not exists("Sources/VXLANPipeline/NoSuchStage.swift")
    assert not exists("Gone.swift")


def code(text):
    """What the docs show as code: lines of fenced blocks and backticked spans."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    return [l for b in blocks for l in b.splitlines()] + backticked(text)


def vxlanctl_commands(text):
    """Each `vxlanctl word word...` the docs show as code, as the lists of subcommands it names (a|b expanded)."""
    commands = set()
    for line in code(text):
        for m in re.finditer(r"vxlanctl((?: [a-z][a-z|-]*)+)", line):
            words = m.group(1).split()
            paths = [[]]
            for w in words:
                paths = [p + [alt] for p in paths for alt in w.split("|") if alt]
            for p in paths:
                commands.add(tuple(p))
    return commands


def resolves(words):
    """The longest prefix of `words` that vxlanctl has as a command, by the USAGE line of its help."""
    for n in range(len(words), 0, -1):
        out = subprocess.run([str(VXLANCTL), "help", *words[:n]], capture_output=True, text=True, timeout=10).stdout
        usage = next((l for l in out.splitlines() if l.startswith("USAGE:")), "")
        if usage.startswith("USAGE: vxlanctl " + " ".join(words[:n])) and "<subcommand>" not in usage.split(" ".join(words[:n]), 1)[1][:14]:
            return n
    return 0


def test_every_vxlanctl_command_the_docs_name_exists():
    wrong, checked = [], 0
    for doc in DOCS:
        for words in sorted(vxlanctl_commands(doc.read_text())):
            # Words after the command are its arguments (`show stats --watch` stops at the option already).
            n = resolves(list(words))
            checked += 1
            if n == 0:
                wrong.append(f"{doc.relative_to(ROOT)}: vxlanctl {' '.join(words)}")
    assert not wrong, "no such vxlanctl command:\n" + "\n".join(wrong)
    assert checked > 20, checked


def test_a_made_up_command_is_caught():
    assert resolves(["show", "bogus"]) == 0
    assert resolves(["show", "ports"]) == 2


def test_the_readme_is_short_and_keeps_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [l.split("#")[0].strip() for l in block.strip().splitlines()]
    assert commands == ["./scripts/demo.sh", "./scripts/test.sh"]


def test_every_key_of_the_readme_example_is_one_the_parser_knows():
    """The README's YAML example is YAML, and each of its keys is one the parser reads (by the parser's own key
    strings; its values are not checked here)."""
    text = (ROOT / "README.md").read_text()
    example = text.split("```yaml", 1)[1].split("```", 1)[0]
    parsed = yaml.safe_load(example)
    parser = (ROOT / "Sources/VTEPConfig/ConfigParser.swift").read_text()

    def keys(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield f"{path}.{k}".lstrip("."), k
                yield from keys(v, f"{path}.{k}")
        elif isinstance(node, list):
            for v in node:
                yield from keys(v, path)

    unknown = sorted({p for p, k in keys(parsed) if f'"{k}"' not in parser})
    assert not unknown, f"keys the parser does not know: {unknown}"
    assert len(list(keys(parsed))) > 30
