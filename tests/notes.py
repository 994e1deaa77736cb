"""The study notes' code snippets, read from the notes (web pages saved as text) at test time.

A note shows its code in one of three ways, all handled here:
- fenced blocks (```), an output block or output lines right after the code;
- plain lines with their indentation lost (a blog's code box copied as text);
- a notebook saved as text: `In [n]:` then the cell on ONE line (its line breaks became
  spaces), printed lines, and `Out[n]:` then the value of the cell's last expression.
The layout lost on the way is restored by `split_statements` (statement boundaries, found by
parsing) and `indent` (blocks: a def's body ends at its return). Nothing else is changed.
"""

from __future__ import annotations

import ast
import io
import itertools
import keyword
import re
import tokenize
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

# Statements whose block the notes' pages leave ambiguous: the book ends its loops there.
TOP_LEVEL = ('print("Accuracy:"',)
HEADERS = ("def", "class", "for", "if", "elif", "else", "while", "with", "try", "except")
KEYWORD_STARTS = (*HEADERS, "return", "import", "from", "print", "pass", "raise", "del")
# Token kinds that end (or start) a value; keywords that carry an expression on; keywords
# that are values.
_ENDS = {tokenize.NAME, tokenize.NUMBER, tokenize.STRING}
_CONTINUES = {"in", "is", "and", "or", "not", "as", "lambda"}
_VALUES = {"True", "False", "None"}


@dataclass
class Snippet:
    """One piece of a note's code, ready to run, and what the note shows it printing."""

    note: str
    line: int  # where it starts in the note, from 1
    code: str
    expected: list[str] = field(default_factory=list)  # printed lines, then the shown value
    shows_value: bool = False  # a notebook cell: its last expression's value is shown


def snippets(path: Path) -> list[Snippet]:
    """Every code snippet of a note, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if any(line.lstrip().startswith("```") for line in lines):
        return _fenced(path.name, lines)
    return _plain(path.name, lines)


# --- fenced blocks ------------------------------------------------------------------


def _fenced(note: str, lines: list[str]) -> list[Snippet]:
    out: list[Snippet] = []
    block: list[str] | None = None
    start = 0
    after_code = False  # plain lines since the last code block are still its output
    for i, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            if block is None:
                block, start = [], i + 1
                continue
            text = "\n".join(block).rstrip()
            block = None
            code, trailing = _code_and_output(text)
            if code and out and code[0] in " \t":  # the rest of the previous block's def
                out[-1].code += "\n" + code
            elif code:
                out.append(Snippet(note, start, code))
            elif out and after_code and not out[-1].expected:
                out[-1].expected = text.splitlines()
            if trailing and out:
                out[-1].expected += trailing
            after_code = bool(out)
        elif block is not None:
            block.append(line)
        elif line.strip():
            if after_code and looks_like_output(line):
                out[-1].expected.append(line.strip())
            else:
                after_code = False
    return out


def _code_and_output(text: str) -> tuple[str, list[str]]:
    """A block's code, and the output lines it ends with (code that parses, then the rest)."""
    lines = text.splitlines()
    for n in range(len(lines), 0, -1):
        code = "\n".join(lines[:n])
        if _parses(code, indented=code[:1] in " \t") and any(c.isalpha() for c in code):
            return code, [line.strip() for line in lines[n:] if line.strip()]
    return "", []


# --- plain text and notebook cells ----------------------------------------------------


def _plain(note: str, lines: list[str]) -> list[Snippet]:
    out: list[Snippet] = []
    current: list[str] = []  # statements of the snippet being read
    start = 0
    last: Snippet | None = None  # the snippet that output lines now belong to
    cell_next = value_next = False

    def close() -> None:
        nonlocal current, last
        if current:
            last = Snippet(note, start, "\n".join(indent(current)))
            out.append(last)
            current = []

    i = 0
    while i < len(lines):
        line, i = lines[i].strip(), i + 1
        if re.fullmatch(r"In \[\d*\]:", line):
            close()
            cell_next, last = True, None
        elif re.fullmatch(r"Out\[\d*\]:", line):
            close()
            value_next = last is not None and last.shows_value
        elif value_next:
            value_next = False
            assert last is not None
            last.expected.append(line)
        elif cell_next:
            cell_next, start = False, i
            current = split_statements(line) or []
            close()
            if last is not None:
                last.shows_value = True
        else:
            while _opens(line) and _starts_code(line) and i < len(lines):
                line, i = line + "\n" + lines[i].strip(), i + 1  # brackets over several lines
            if is_code(line):
                if not current:
                    start = i
                current += split_statements(line) or []
            elif line and not (current and line.startswith("#")):
                close()
                if last is not None and looks_like_output(line):
                    last.expected.append(line)
                else:
                    last = None
    close()
    return out


def _starts_code(line: str) -> bool:
    text = strip_comments(line).strip()
    return bool(text) and text.isascii() and ("=" in text or text.split()[0] in KEYWORD_STARTS)


def is_code(line: str) -> bool:
    """Whether a line of a note is code: ASCII statements that do something (an assignment,
    a call, a keyword's statement), not a bullet, a formula or a printed value."""
    text = strip_comments(line).strip()
    if not text or text.startswith(("- ", "array(")) or not text.isascii():
        return False
    if not any(c.isalpha() for c in text):
        return False
    words = text.split()
    if not ("(" in text or "=" in text or "[" in text or words[0] in KEYWORD_STARTS):
        return False
    return split_statements(line) is not None or _opens(line)


def looks_like_output(line: str) -> bool:
    """A printed value: ASCII with digits, not code, not a warning."""
    text = line.strip()
    return (
        text.isascii()
        and any(c.isdigit() for c in text)
        and "Warning" not in text
        and not is_code(text)
        and not text.startswith(("$", "|", "-"))
    )


def _opens(text: str) -> bool:
    """Whether a bracket or a triple-quoted string is still open at the end of text."""
    if text.count("'''") % 2 or text.count('"""') % 2:
        return True
    code = strip_comments(text)
    return sum(code.count(c) for c in "([{") > sum(code.count(c) for c in ")]}")


# --- restoring the layout -------------------------------------------------------------


def strip_comments(line: str) -> str:
    """The line without its comments. A comment that ran into code when line breaks became
    spaces (`# 계산 X = 1`) is its first word and the non-ASCII words after it."""
    pos = _comment_start(line)
    if pos is None:
        return line
    words = line[pos + 1 :].split(" ")
    n = 1 if words and words[0] == "" else 0  # `# word` or `#word`
    n += 1
    while n < len(words) and not words[n].isascii():
        n += 1
    rest = " ".join(words[n:]).strip()
    if rest and rest.isascii() and _segments(rest) is not None:
        return line[:pos] + " " + strip_comments(rest)
    return line[:pos]


def _comment_start(line: str) -> int | None:
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#":
            return i
    return None


def split_statements(line: str) -> list[str] | None:
    """The statements of one line whose line breaks became spaces, or None if it is not code.

    Compound statements' headers (`def f(x):`) come apart from their bodies.
    """
    text = re.sub(r"\\\s+", " ", strip_comments(line)).strip()  # `= \ load()`: one line
    if not text:
        return None
    if "\n" in text:  # brackets over several lines: one statement, as written
        return [text] if _parses(text) or _parses(text + "\n pass") else None
    return _segments(text)


def _segments(text: str) -> list[str] | None:
    """The fewest pieces, cut where a statement may end, each a statement or a header."""
    cuts = _cut_points(text)
    if cuts is None:
        return None
    ends = [*cuts, len(text)]
    best: dict[int, list[str] | None] = {len(text): []}
    for a in reversed([0, *cuts]):
        options = []
        for b in ends:
            if b <= a:
                continue
            piece = text[a:b].strip()
            rest = best.get(b)
            if rest is not None and _statement(piece):
                options.append([piece, *rest])
        best[a] = min(options, key=len) if options else None
    return best[0]


def _cut_points(text: str) -> list[int] | None:
    """Offsets where one statement may end and another begin: after a value followed by a
    name, a value or a bracket, or after a colon, outside brackets (a superset: `_segments`
    keeps the cuts whose pieces parse)."""
    try:
        tokens = [
            t
            for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT)
        ]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None
    cuts, depth = [], 0
    for prev, tok in itertools.pairwise(tokens):
        if prev.type == tokenize.OP and prev.string in "([{":
            depth += 1
        elif prev.type == tokenize.OP and prev.string in ")]}":
            depth -= 1
        if depth:
            continue
        word = prev.type == tokenize.NAME and keyword.iskeyword(prev.string)
        ended = (prev.type in _ENDS and (not word or prev.string in _VALUES)) or (
            prev.type == tokenize.OP and prev.string in ")]}"
        )
        starts = tok.type in _ENDS or (tok.type == tokenize.OP and tok.string in "([")
        if prev.string == ":" or (ended and starts and tok.string not in _CONTINUES):
            cuts.append(tok.start[1])
    return cuts


_COMPOUND = (ast.FunctionDef, ast.ClassDef, ast.For, ast.If, ast.While, ast.With, ast.Try)


def _statement(piece: str) -> bool:
    """A simple statement, or a compound statement's header alone (its body follows)."""
    if piece.endswith(":"):
        return _parses(piece + " pass")
    if not _parses(piece):
        return False
    body = ast.parse(piece).body
    return len(body) == 1 and not isinstance(body[0], _COMPOUND)


@cache
def _parses(code: str, indented: bool = False) -> bool:
    try:
        ast.parse(f"if 1:\n{code}" if indented else code)
    except SyntaxError:
        return False
    return True


def indent(statements: list[str]) -> list[str]:
    """Lines indented again: a header opens a block; a def's body ends at its `return`, a
    class at the first statement that is not a def; `TOP_LEVEL` statements close all."""
    out: list[str] = []
    blocks: list[tuple[str, int]] = []  # open blocks: (keyword, the header's level)
    for s in statements:
        word = re.split(r"[\s(:]", s, maxsplit=1)[0]
        if word == "class" or s.startswith(TOP_LEVEL) or s.startswith("if __name__"):
            blocks = []
        elif word == "def":
            while blocks and blocks[-1][0] != "class":
                blocks.pop()
        elif blocks and blocks[-1][0] == "class":  # the notes' classes hold only methods
            blocks = []
        elif word == "return":  # at its def's body level, whatever blocks are open
            while blocks and blocks[-1][0] != "def":
                blocks.pop()
        elif word in ("else", "elif", "except"):
            while blocks and blocks[-1][0] not in ("if", "try", "for", "while"):
                blocks.pop()
            if blocks:
                blocks.pop()
        level = blocks[-1][1] + 1 if blocks else 0
        out += ["    " * level + line for line in s.splitlines()]
        if word == "return":
            while blocks and blocks[-1][0] != "def":
                blocks.pop()
            if blocks:
                blocks.pop()
        elif s.endswith(":") and word in HEADERS:
            blocks.append((word, level))
    return out
