#!/usr/bin/env python3
"""The docs as a reference, checked without building anything:
  - every public header (include/tessera/**.hpp) is listed in the "## Headers"
    section of a page, and every listed header exists;
  - every page of docs/ is linked from the README;
  - every relative link of the README and the pages points at a file that
    exists, and every #anchor at a heading of its page (the slug a markdown
    reader makes: lower case, punctuation dropped, spaces to '-', -1, -2 for
    repeats);
  - every header opens with a Doxygen file comment (/// \\file), so the API
    reference has a page for it.
usage: check_reference.py ROOT      (exit 1 with one line per problem)
"""
import glob
import importlib.machinery
import importlib.util
import os
import re
import sys

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(text):
    """The lines outside code blocks."""
    in_code = False
    for line in text.split("\n"):
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code:
            yield line


# The site's filter gives headings these anchors: one slug rule for both.
_filter = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "docs-md-filter")
_loader = importlib.machinery.SourceFileLoader("docs_md_filter", _filter)
_module = importlib.util.module_from_spec(importlib.util.spec_from_loader("docs_md_filter", _loader))
_loader.exec_module(_module)
slug = _module.slug


def anchors(path):
    seen, out = {}, set()
    with open(path, encoding="utf-8") as f:
        for line in prose(f.read()):
            m = HEADING.match(line)
            if m:
                s = slug(m.group(1))
                n = seen.get(s, 0)
                seen[s] = n + 1
                out.add(s if n == 0 else "%s-%d" % (s, n))
    return out


def main():
    root = sys.argv[1]
    problems = []
    pages = sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    readme = os.path.join(root, "README.md")
    headers = sorted(os.path.relpath(p, os.path.join(root, "include"))
                     for p in glob.glob(os.path.join(root, "include", "tessera", "**", "*.hpp"), recursive=True))

    listed = {}
    for page in [readme] + pages:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        rel = os.path.relpath(page, root)
        in_headers = False
        for line in prose(text):
            m = HEADING.match(line)
            if m:
                in_headers = m.group(1) == "Headers"
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue
                path, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
                if not os.path.exists(dest):
                    problems.append("%s: link to %s: no such file" % (rel, target))
                    continue
                if anchor and dest.endswith(".md") and anchor not in anchors(dest):
                    problems.append("%s: link to %s: no heading with that anchor" % (rel, target))
                h = re.search(r"include/(tessera/.+\.hpp)$", path)
                if h and (in_headers or page == readme):
                    listed.setdefault(h.group(1), rel)
    with open(readme, encoding="utf-8") as f:
        index = f.read()
    for page in pages:
        if "(docs/%s" % os.path.basename(page) not in index:
            problems.append("README.md: no link to docs/%s" % os.path.basename(page))

    for h in headers:
        if h not in listed:
            problems.append("include/%s: listed under '## Headers' on no page" % h)
        with open(os.path.join(root, "include", h), encoding="utf-8") as f:
            head = f.read(4000)
        if not re.match(r"\s*/// \\file\b", head):
            problems.append("include/%s: does not open with a /// \\file comment" % h)

    for p in problems:
        print(p)
    print("%d headers, %d pages, %d problems" % (len(headers), len(pages) + 1, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
