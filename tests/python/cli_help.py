"""The flags a `tokenfab` command documents in its --help, for the tests
that hold deploy/ (units, chart, container) to the binary."""
import re
import subprocess

from conftest import binary


def flags_of(command: str) -> dict:
    """`tokenfab COMMAND --help` -> {flag name: its help text}."""
    out = subprocess.run([binary(), command, "--help"], capture_output=True, text=True, timeout=30)
    text = out.stdout + out.stderr
    flags = {}
    for line in text.splitlines():
        m = re.match(r"\s+--([a-z0-9-]+)(?:\s+\S+)?\s+(.*)", line)
        if m:
            flags[m.group(1)] = m.group(2)
    assert flags, f"no flags in `tokenfab {command} --help`:\n{text}"
    return flags


def default_of(help_text: str):
    """The value a help text names as "(default X...", or None."""
    m = re.search(r"\(default ([^;),]+)", help_text)
    return m.group(1).strip() if m else None
