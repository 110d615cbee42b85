"""Every relative link in README.md and docs/ reaches a file, and a heading where it names one.

Headings get renamed as results move; a link to the old anchor then lands on the page's top
without a word. GitHub's anchor rule: lower case, punctuation other than - and _ dropped,
spaces to hyphens, repeats numbered -1, -2, ...
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # no headings inside code
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        s = slug(heading)
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return out


def prose(path: Path) -> str:
    """The page without code: a regex like `[AB]([FM]\\d{2})` is not a link."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def broken_links(files: list[Path]) -> list[str]:
    known = {f.resolve(): anchors(f) for f in files}
    bad = []
    for f in files:
        for target in LINK.findall(prose(f)):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, frag = target.partition("#")
            dest = (f.parent / path).resolve() if path else f.resolve()
            if not dest.exists():
                bad.append(f"{f.name}: {target} (no such file)")
            elif frag and dest.suffix == ".md" and frag not in known.get(dest, anchors(dest)):
                bad.append(f"{f.name}: {target} (no such heading)")
    return bad


def test_slug_follows_githubs_rule() -> None:
    assert slug("Real-face models: `real_faces.sh` and `install_results`") == \
        "real-face-models-real_facessh-and-install_results"
    assert slug("Refit on train + val: the bundled models now") == \
        "refit-on-train--val-the-bundled-models-now"


def test_a_renamed_heading_is_caught(tmp_path) -> None:
    (tmp_path / "a.md").write_text("# Top\n\n## Old name\n\nsee [b](b.md#kept) and [c](c.md)\n")
    (tmp_path / "b.md").write_text("## Kept\n\n[back](a.md#old-name) [gone](a.md#new-name)\n"
                                   "a pattern, not a link: `^[AB]([FM]\\d{2})`\n")
    bad = broken_links([tmp_path / "a.md", tmp_path / "b.md"])
    assert bad == ["a.md: c.md (no such file)", "b.md: a.md#new-name (no such heading)"]


def test_readme_and_docs_links_resolve() -> None:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert broken_links(files) == []
