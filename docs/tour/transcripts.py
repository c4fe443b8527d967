#!/usr/bin/env python3
"""Runs the tour's scenarios against the real ssed and puts each transcript
in the chapters that show it, between

    <!-- transcript: NAME -->
    ...
    <!-- /transcript -->

With `--check`, changes nothing: runs every scenario and fails, with a
diff, if any chapter's transcript is not what the code does today.

Usage (docs/tour/transcripts.sh builds ssed and passes --bin):
    transcripts.py --bin target/debug/ssed [--check] [--only NAME ...]
"""

import argparse
import difflib
import os
import re
import signal
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "tools"))

from render import render  # noqa: E402
from scenarios import SCENARIOS, run_scenario  # noqa: E402

BLOCK = re.compile(r"(<!-- transcript: ([\w-]+) -->\n)(.*?)(<!-- /transcript -->)", re.S)


def chapters():
    return sorted(os.path.join(HERE, name) for name in os.listdir(HERE) if name.endswith(".md"))


def fenced(text):
    return "```text\n" + text + "```\n"


def stop(signum, _frame):
    """SIGTERM and SIGHUP unwind like Ctrl-C does, so that every scenario's
    `finally` kills its ssed."""
    raise SystemExit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the ssed binary")
    parser.add_argument("--check", action="store_true", help="compare, change nothing, fail on any difference")
    parser.add_argument("--only", nargs="*", default=None, help="run only these scenarios")
    args = parser.parse_args()
    names = args.only or list(SCENARIOS)
    for name in names:
        if name not in SCENARIOS:
            sys.exit(f"no scenario {name!r}; there are: {', '.join(SCENARIOS)}")

    texts = {}
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"tour-{name}-") as workdir:
            items, first_id, masks = run_scenario(name, args.bin, workdir)
        texts[name] = render(items, first_id, masks)
        print(f"transcript {name}: {texts[name].count(chr(10))} lines", file=sys.stderr)

    shown, drift = set(), []
    for path in chapters():
        with open(path, encoding="utf-8") as f:
            before = f.read()

        def replace(found):
            name = found.group(2)
            if name not in SCENARIOS:
                sys.exit(f"{os.path.relpath(path)}: no scenario {name!r}")
            shown.add(name)
            if name not in texts:
                return found.group(0)
            return found.group(1) + fenced(texts[name]) + found.group(4)

        after = BLOCK.sub(replace, before)
        if after == before:
            continue
        rel = os.path.relpath(path)
        if args.check:
            drift.append(rel)
            sys.stdout.writelines(difflib.unified_diff(
                before.splitlines(True), after.splitlines(True), f"{rel} (committed)", f"{rel} (ssed today)"))
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(after)
            print(f"updated {rel}", file=sys.stderr)

    unshown = [name for name in names if name not in shown]
    if unshown:
        sys.exit(f"transcripts no chapter shows: {', '.join(unshown)}")
    if drift:
        print(f"\nThe tour no longer matches ssed in: {', '.join(drift)}.", file=sys.stderr)
        print("If the change is intended, run docs/tour/transcripts.sh and commit the chapters.", file=sys.stderr)
        sys.exit(1)
    if args.check:
        print(f"tour transcripts: all {len(names)} match", file=sys.stderr)


if __name__ == "__main__":
    main()
