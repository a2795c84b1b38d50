"""Summarise py-spy raw profiles (`make bench` with `--profile DIR`; collapsed stacks, one
`frame;frame;... count` a line): the share of samples per package a sample's innermost Python
frame is in, and the hottest innermost frames.

    .venv/bin/python -m bench.profile_summary .devstack/bench/profiles/*.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

# "function (path/to/file.py:123)" for Python frames; native frames have no .py path.
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def package(file: str) -> str:
    if "site-packages/" in file:
        return file.split("site-packages/")[1].split("/")[0]
    for ours in ("gateway", "text_svc", "svc_common", "upstream", "chat_codecs", "billing_svc"):
        if f"/{ours}/" in file:
            return ours
    if "/lib/python3" in file:
        return "stdlib:" + file.rsplit("/", 1)[-1]
    if file.endswith(".py"):
        return file.rsplit("/", 1)[-1]
    return "native"


def summarise(path: Path, top: int = 12) -> str:
    by_package: Counter[str] = Counter()
    by_frame: Counter[str] = Counter()
    idle = 0
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        python = [f for f in frames if ".py" in f]
        innermost = python[-1] if python else frames[-1]
        match = FRAME.match(innermost)
        file = match["file"] if match else innermost
        func = match["func"] if match else innermost
        # The event loop waiting in epoll (select) is idle time, not work.
        if "select" in func and ("selectors" in file or "uvloop" in file or "run_forever" in stack):
            if frames[-1].startswith(("epoll_wait", "select")) or "epoll" in frames[-1]:
                idle += count
                continue
        by_package[package(file)] += count
        by_frame[f"{func} ({file.rsplit('/', 1)[-1]})"] += count
    busy = max(1, total - idle)
    lines = [f"{path.name}: {total} samples, {idle / max(1, total):.0%} idle in epoll"]
    lines.append("  by package (innermost Python frame), share of busy samples:")
    lines += [f"    {n / busy:6.1%}  {name}" for name, n in by_package.most_common(top)]
    lines.append("  hottest innermost frames:")
    lines += [f"    {n / busy:6.1%}  {name}" for name, n in by_frame.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    for name in sys.argv[1:]:
        sys.stdout.write(summarise(Path(name)) + "\n\n")


if __name__ == "__main__":
    main()
