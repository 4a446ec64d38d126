#!/usr/bin/env python3
"""Checks that CTest registered every Catch2 case of every test program once.

catch_discover_tests reads `--list-test-names-only` into a CMake list; a name
with an unbalanced '[' or a ';' stops CMake from splitting that list, and the
rest of the file's cases fold into one entry whose filter matches nothing.
This compares, per program, the cases it lists with the CTest entries that run
it, rejects names that contain ';', and checks that every entry fails when
its filter matches nothing (-w NoTests).

usage: check_discovery.py BUILD_DIR PROGRAM...
"""
import json
import subprocess
import sys
from collections import Counter


def main() -> int:
    build_dir, programs = sys.argv[1], sys.argv[2:]
    shown = subprocess.run(["ctest", "--test-dir", build_dir, "--show-only=json-v1"],
                           check=True, capture_output=True, text=True).stdout
    entries = Counter()
    errors = []
    for test in json.loads(shown)["tests"]:
        if test["name"].startswith("meta/"):
            continue  # the guards themselves (one runs a program on purpose with a filter that matches nothing)
        command = test.get("command") or []
        if command:
            entries[command[0]] += 1
            if command[0] in programs and "NoTests" not in command:
                errors.append(f"{test['name']}: runs without -w NoTests, so matching nothing would pass")
        if ";" in test["name"]:
            errors.append(f"CTest entry name contains ';': {test['name'][:120]}...")
    for program in programs:
        listed = subprocess.run([program, "--list-test-names-only"], capture_output=True, text=True).stdout
        cases = [line for line in listed.splitlines() if line.strip()]
        if entries[program] != len(cases):
            errors.append(f"{program}: {len(cases)} test cases listed, {entries[program]} CTest entries")
    for e in errors:
        print(e, file=sys.stderr)
    print(f"{len(programs)} programs, {sum(entries[p] for p in programs)} CTest entries checked")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
