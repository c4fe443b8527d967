"""How a transcript is shown: what varies from run to run masked, and long
escaped byte strings wrapped after each `\\n` so that an HTTP head or an
event reads one line per line.

Masked, always with text of the same length, so that every byte count and
chunk size in a transcript stays true:

- the `Date` header, as RFC 9110's own example date;
- event ids, which start at the server's start time in microseconds: each
  shown as 1700000000000000 plus its place in the run's sequence
  (the run's first id is 1700000000000000, the next ...001, and so on);
- stream ids of the bus (`<ms>-<seq>`, Redis' clock): each distinct `<ms>`
  shown as 1700000000000 plus its place among them, the `<seq>` as it is;
- client ports (`127.0.0.1:PORT`);
- what a scenario names (a random `retry:`, a token's `exp`).

Lines that some scenario finds too long (a 16 KiB event) keep their start
and end, and say how many bytes were left out between.
"""

import re

DATE = re.compile(r"Date: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
RFC_DATE = "Date: Sun, 06 Nov 1994 08:49:37 GMT"
PORT = re.compile(r"127\.0\.0\.1:(?!0\b)\d+")
ID = re.compile(r"(?<!\d)(\d{16})(?!\d)")
FIRST_ID = 1700000000000000
# One escaped byte, as `trace::escape` writes it.
TOKEN = re.compile(r'\\x[0-9a-f]{2}|\\[rnt"\\]|.', re.S)
BYTES = re.compile(r'^((?:#\d+|redis/\w+) [<>] \d+ B ")(.*)"$', re.S)
STREAM_ID = re.compile(r"(?<!\d)(\d{13})-(\d+)(?!\d)")
FIRST_MS = 1700000000000
# Longest run of bytes shown on one wrapped line before it is elided.
LONG = 96
# Most lines one trace line is shown as before its middle is elided.
MANY = 40


def mask(items, first_id, masks_from):
    """Masks every item; `masks_from` adds (from index, regex, text)."""
    out = []
    stream_ms = {}
    for index, item in enumerate(items):
        item = STREAM_ID.sub(lambda m: f"{stream_ms.setdefault(m.group(1), FIRST_MS + len(stream_ms))}-{m.group(2)}", item)
        item = DATE.sub(RFC_DATE, item)
        item = PORT.sub("127.0.0.1:PORT", item)
        if first_id is not None:
            item = ID.sub(lambda m: shown_id(int(m.group(1)), first_id), item)
        for start, regex, text in masks_from:
            if index >= start:
                item = regex.sub(text, item)
        out.append(item)
    return out


def shown_id(value, first_id):
    offset = value - first_id
    if 0 <= offset < 1_000_000:
        return str(FIRST_ID + offset)
    return str(value)


def wrap(item):
    """A trace line of bytes, one line per `\\n` in them, aligned under the
    opening quote; any other line as it is."""
    found = BYTES.match(item)
    if not found:
        return [item]
    prefix, body = found.groups()
    pieces, line = [], []
    for token in TOKEN.findall(body):
        line.append(token)
        if token == "\\n":
            pieces.append(line)
            line = []
    if line or not pieces:
        pieces.append(line)
    if len(pieces) > MANY:
        middle = pieces[10:-6]
        note = [f"«{len(middle)} more lines, {sum(map(len, middle))} bytes»"]
        pieces = pieces[:10] + [note] + pieces[-6:]
    pad = " " * len(prefix)
    lines = []
    for number, piece in enumerate(pieces):
        text = elide(piece)
        start = prefix if number == 0 else pad
        end = '"' if number == len(pieces) - 1 else ""
        lines.append(f"{start}{text}{end}")
    return lines


def elide(tokens):
    if len(tokens) <= LONG:
        return "".join(tokens)
    head, tail = tokens[:48], tokens[-16:]
    return f"{''.join(head)}«{len(tokens) - 64} more bytes»{''.join(tail)}"


def render(items, first_id, masks_from):
    lines = []
    for item in mask(items, first_id, masks_from):
        lines.extend(wrap(item))
    return "\n".join(line.rstrip() for line in lines) + "\n"
