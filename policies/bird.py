"""Just enough BIRD 2 config reading for the policy pack: the named prefix sets and what each BGP channel exports.

The renderer puts every prefix a PoP may announce into ``define ANYCAST_V4 = [...]`` / ``ANYCAST_V6`` and the
upstream protocols export through a filter that rejects everything outside ``net ~ ANYCAST_V4``. This module finds
those parts in the ``bird.conf`` inside a cloud-config. It is not a BIRD parser (``bird -p`` is, and the golden and
validator tests use it), but it splits the text into tokens exactly as BIRD 2's lexer does, so nothing inside a
string (the BGP password) or a comment can hide or invent a brace, a comment or an ``export`` statement.

Lexical rules, from BIRD's ``conf/cf-lex.l`` (https://github.com/CZ-NIC/bird/blob/v2.0.12/conf/cf-lex.l, the same in
every 2.x and 3.x release):

* ``"..."`` is a string. There are **no escapes**: every byte up to the next ``"`` belongs to the string, a backslash
  included (``<QUOTED>.`` pushes ``yytext[0]``); a newline or the end of the file inside it is the error
  "Unterminated string". So a string can never hold ``"`` or a newline (and a NUL would cut it short).
* ``#`` starts a comment up to the end of the line; ``/* ... */`` is a comment that cannot nest
  ("Comment nesting not supported") and must end ("Unterminated comment").
* ``'name'`` is a symbol (letters, digits, ``_``, ``-``, ``.``, ``:`` only), looked up like a bare one.
* blanks are space and tab; any other character outside these (a carriage return, say) is "Unknown character".

The policy (:func:`export_problems`) fails closed: a config it cannot read, an ``include``, a protocol built ``from``
a template, a channel without an ``export`` statement, or a filter whose accepts are not behind a
``net ~ SET`` test are all reported, never passed.

A BGP channel without ``export``: BIRD 2 itself refuses it for EBGP ("EBGP requires explicit export policy",
``bgp_postconfig`` in proto/bgp/bgp.c, RFC 8212) and exports nothing for IBGP (``FILTER_REJECT``; doc/bird.sgml:
"export ... Default: none (except for EBGP)"). Either way the policy cannot see the own prefixes being exported, and
the renderer always writes the export, so a missing one means the file is not what the renderer made: a violation.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

import yaml

# BGP address families (proto/bgp/config.Y ``bgp_afi``): a channel statement starts with one of these.
CHANNEL_WORDS = frozenset({"ipv4", "ipv6", "vpn4", "vpn6", "flow4", "flow6"})
# ``export`` statements that set options, not the export policy (doc/bird.sgml: export limit, BGP export table).
EXPORT_OPTIONS = frozenset({"limit", "table", "settle", "keep"})
_MULTI = ("!=", "!~", "<=", ">=", "&&", "||", "[=", "=]", "..")
_SINGLE = set("={}:;,.()+*/%<>~[]?!|&-")
_WORD_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:]*")
_APOSTROPHED_RE = re.compile(r"'([A-Za-z0-9_.:\-]*)'")


class BirdSyntaxError(ValueError):
    """The text is not what BIRD's lexer accepts (the message names the line, never the text of a string)."""


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string" or "punct"
    text: str
    line: int

    def is_(self, *texts: str) -> bool:
        return self.kind != "string" and self.text in texts


def tokenize(conf: str) -> list[Token]:
    """BIRD 2's tokens of ``conf``: strings (their content, as BIRD stores it), words (keywords, symbols, numbers,
    addresses) and punctuation; comments and blanks dropped. Raises BirdSyntaxError where BIRD's lexer fails."""
    out: list[Token] = []
    i, line, n = 0, 1, len(conf)
    while i < n:
        c = conf[i]
        if c in " \t":
            i += 1
        elif c == "\n":
            line += 1
            i += 1
        elif c == "#":
            end = conf.find("\n", i)
            i = n if end < 0 else end
        elif conf.startswith("/*", i):
            start_line = line
            end = conf.find("*/", i + 2)
            body = conf[i + 2:] if end < 0 else conf[i + 2:end]
            if "/*" in body:
                raise BirdSyntaxError(f"line {line + body[:body.find('/*')].count(chr(10))}: comment nesting not supported")
            if end < 0:
                raise BirdSyntaxError(f"line {start_line}: unterminated comment")
            line += body.count("\n")
            i = end + 2
        elif c == '"':
            end = conf.find('"', i + 1)
            newline = conf.find("\n", i + 1)
            if end < 0 or 0 <= newline < end:
                raise BirdSyntaxError(f"line {line}: unterminated string")
            out.append(Token("string", conf[i + 1:end], line))
            i = end + 1
        elif c == "'":
            m = _APOSTROPHED_RE.match(conf, i)
            if m is None:
                raise BirdSyntaxError(f"line {line}: invalid or unterminated apostrophed symbol")
            out.append(Token("word", m[1], line))
            i = m.end()
        elif m := _WORD_RE.match(conf, i):
            out.append(Token("word", m[0], line))
            i = m.end()
        elif (two := conf[i:i + 2]) in _MULTI:
            out.append(Token("punct", two, line))
            i += 2
        elif c in _SINGLE:
            out.append(Token("punct", c, line))
            i += 1
        else:
            raise BirdSyntaxError(f"line {line}: unknown character {c!r}")
    return out


MAX_BIRD_CONF = 1024 * 1024


def bird_conf_from_user_data(user_data: str) -> str | None:
    """The content of ``.../bird.conf`` in a cloud-config's ``write_files`` (plain, base64 or gzip+base64), or None."""
    try:
        doc = yaml.safe_load(user_data)
    except (yaml.YAMLError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("write_files"), list):
        return None
    for entry in doc["write_files"]:
        if isinstance(entry, dict) and str(entry.get("path", "")).endswith("/bird.conf"):
            content = str(entry.get("content", ""))
            encoding = str(entry.get("encoding", "")).lower()
            if encoding in ("b64", "base64", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
                try:
                    raw = base64.b64decode(content, validate=True)
                    if encoding.startswith("gz"):  # cloud-init's gzip encodings; bounded: a bird.conf is kilobytes
                        inflate = zlib.decompressobj(wbits=31)
                        raw = inflate.decompress(raw, MAX_BIRD_CONF)
                        if inflate.unconsumed_tail or not inflate.eof:
                            return None
                    content = raw.decode("utf-8")
                except (binascii.Error, UnicodeDecodeError, zlib.error):
                    return None
            return content
    return None


# --- structure ---------------------------------------------------------------------------------------------------

def _check_balance(tokens: list[Token]) -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[Token] = []
    for t in tokens:
        if t.is_("(", "[", "{"):
            stack.append(t)
        elif t.is_(")", "]", "}"):
            if not stack or stack[-1].text != pairs[t.text]:
                raise BirdSyntaxError(f"line {t.line}: unbalanced '{t.text}'")
            stack.pop()
    if stack:
        raise BirdSyntaxError(f"line {stack[-1].line}: '{stack[-1].text}' is never closed")


def _statements(tokens: list[Token]) -> list[list[Token]]:
    """Split a block body into statements: at ``;`` outside braces, and after a ``}`` that closes a block."""
    out: list[list[Token]] = []
    cur: list[Token] = []
    depth = 0  # braces, brackets and parentheses together
    for t in tokens:
        depth += t.is_("{", "[", "(") - t.is_("}", "]", ")")
        if depth == 0 and t.is_(";"):
            if cur:
                out.append(cur)
            cur = []
            continue
        cur.append(t)
        if depth == 0 and t.is_("}"):
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _shown(tokens: list[Token], limit: int = 8) -> str:
    """Tokens for a message: strings are never repeated (one of them is the BGP password)."""
    text = " ".join('"…"' if t.kind == "string" else t.text for t in tokens[:limit])
    return text + (" …" if len(tokens) > limit else "")


@dataclass
class Config:
    """The top level of a bird.conf: prefix sets, filters, functions, BGP protocols, and what could not be followed."""

    sets: dict[str, list[IPv4Network | IPv6Network] | None] = field(default_factory=dict)  # None: not prefixes
    filters: dict[str, list[Token]] = field(default_factory=dict)
    functions: dict[str, list[Token]] = field(default_factory=dict)
    protocols: list[tuple[str, list[Token]]] = field(default_factory=list)  # (name, body)
    problems: list[str] = field(default_factory=list)


def _prefix_set(body: list[Token]) -> list[IPv4Network | IPv6Network] | None:
    """``[ a/b, c/d{x,y}, e/f+ ]`` -> the base prefixes (range suffixes dropped); None if an entry is no prefix."""
    items: list[list[Token]] = [[]]
    depth = 0
    for t in body:
        depth += t.is_("{") - t.is_("}")
        if depth == 0 and t.is_(","):
            items.append([])
        else:
            items[-1].append(t)
    nets: list[IPv4Network | IPv6Network] = []
    for item in items:
        text = "".join(t.text for t in item if t.kind != "string")
        if any(t.kind == "string" for t in item):
            return None
        base = re.sub(r"\{.*\}$", "", text)
        base = re.sub(r"[+\-]$", "", base)
        if not base:
            continue
        try:
            nets.append(ip_network(base, strict=False))
        except ValueError:
            return None
    return nets


def read_config(conf: str) -> Config:
    """The top-level declarations policy checks need. Raises BirdSyntaxError for text BIRD's lexer refuses and for
    unbalanced brackets (which BIRD's parser refuses)."""
    tokens = tokenize(conf)
    _check_balance(tokens)
    cfg = Config()
    bgp_count = 0
    for st in _statements(tokens):
        head = st[0]
        if head.is_("include"):
            cfg.problems.append(f"line {head.line}: 'include' pulls in a file the policy cannot see; put everything "
                                "in bird.conf")
        elif head.is_("define") and len(st) >= 4 and st[2].is_("=") and st[3].is_("["):
            if not st[-1].is_("]"):
                continue
            cfg.sets[st[1].text] = _prefix_set(st[4:-1])
        elif head.is_("filter") and len(st) >= 3 and st[2].is_("{") and st[-1].is_("}"):
            cfg.filters[st[1].text] = st[3:-1]
        elif head.is_("function") and st[-1].is_("}"):
            start = next(i for i, t in enumerate(st) if t.is_("{"))
            cfg.functions[st[1].text] = st[start + 1:-1]
        elif head.is_("protocol") and len(st) >= 2 and st[1].is_("bgp"):
            bgp_count += 1
            if not st[-1].is_("}"):
                cfg.problems.append(f"line {head.line}: protocol bgp without a {{ ... }} body")
                continue
            start = next(i for i, t in enumerate(st) if t.is_("{"))
            header = st[2:start]
            name = header[0].text if header and not header[0].is_("from") else f"(unnamed bgp #{bgp_count})"
            if any(t.is_("from") for t in header):
                cfg.problems.append(f"protocol {name}: built 'from' a template; the policy does not follow templates, "
                                    "so write the channels and their export statements in the protocol itself")
                continue
            cfg.protocols.append((name, st[start + 1:-1]))
    return cfg


# --- exports -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BgpExport:
    protocol: str
    statement: str  # "all", "none", "filter NAME", "filter { ... }", "where ..."
    sets: tuple[str, ...]  # prefix sets the export is guarded by
    accepts: bool = True  # False for a filter with no 'accept' (a unicast PoP's reject-all)
    channel: str = ""  # "ipv4", "ipv6", ... ("" for a statement at protocol level)
    problem: str = ""  # why this export is not limited to the sets (empty if it is)


def _split_top(tokens: list[Token], sep: str) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    depth = 0
    for t in tokens:
        depth += t.is_("(", "[", "{") - t.is_(")", "]", "}")
        if depth == 0 and t.is_(sep):
            parts.append([])
        else:
            parts[-1].append(t)
    return parts


def _unparen(tokens: list[Token]) -> list[Token]:
    while len(tokens) >= 2 and tokens[0].is_("(") and tokens[-1].is_(")") and _matching_paren(tokens) == len(tokens) - 1:
        tokens = tokens[1:-1]
    return tokens


def _matching_paren(tokens: list[Token]) -> int:
    depth = 0
    for i, t in enumerate(tokens):
        depth += t.is_("(") - t.is_(")")
        if depth == 0:
            return i
    return -1


def _net_in_set(tokens: list[Token]) -> str | None:
    """``net ~ SET`` (parentheses allowed) -> SET."""
    tokens = _unparen(tokens)
    if len(tokens) == 3 and tokens[0].is_("net") and tokens[1].is_("~") and tokens[2].kind == "word":
        return tokens[2].text
    return None


def _where_sets(expr: list[Token]) -> tuple[str, ...]:
    """The sets of the ``net ~ SET`` conjuncts of a ``where`` expression: only a pure conjunction limits it."""
    expr = _unparen(expr)
    if len(_split_top(expr, "||")) > 1:
        return ()
    return tuple(s for part in _split_top(expr, "&&") if (s := _net_in_set(part)))


def _guard_set(st: list[Token]) -> str | None:
    """``if ! (net ~ SET) then reject`` / ``if net !~ SET then reject`` (``{ reject; }`` too) -> SET."""
    if len(st) < 4 or not st[0].is_("if"):
        return None
    try:
        then = next(i for i, t in enumerate(st) if t.is_("then"))
    except StopIteration:
        return None
    cond, action = _unparen(st[1:then]), st[then + 1:]
    if [t.text for t in action if t.kind != "string"] not in (["reject"], ["{", "reject", ";", "}"]):
        return None
    if cond and cond[0].is_("!"):
        return _net_in_set(cond[1:])
    cond = _unparen(cond)
    if len(cond) == 3 and cond[0].is_("net") and cond[1].is_("!~") and cond[2].kind == "word":
        return cond[2].text
    return None


def _may_accept(tokens: list[Token], cfg: Config, seen: frozenset[str] = frozenset()) -> bool:
    """Whether these tokens can accept a route: an ``accept``, or a call of a function that can."""
    for i, t in enumerate(tokens):
        if t.is_("accept"):
            return True
        if (t.kind == "word" and t.text in cfg.functions and t.text not in seen and i + 1 < len(tokens)
                and tokens[i + 1].is_("(") and _may_accept(cfg.functions[t.text], cfg, seen | {t.text})):
            return True
    return False


def _filter_export(body: list[Token], cfg: Config) -> tuple[tuple[str, ...], bool, str]:
    """(sets, accepts, problem) of a filter body: every route it can accept must first pass a top-level
    ``if ! (net ~ SET) then reject;``, or be accepted inside ``if net ~ SET then ...``; a filter that cannot accept
    exports nothing."""
    if not _may_accept(body, cfg):
        return (), False, ""
    sets: list[str] = []
    for st in _statements(body):
        if s := _guard_set(st):
            return (*sets, s), True, ""
        if not _may_accept(st, cfg):
            continue
        if limited := _if_sets(st):
            sets += limited
            continue
        return (), True, ("can accept a route that no prefix set limits: put 'if ! (net ~ SET) then reject;' first, "
                          "or accept only inside 'if net ~ SET then ...'")
    return tuple(sets), True, ""


def _if_sets(st: list[Token]) -> tuple[str, ...]:
    """``if net ~ SET [&& ...] then ...`` -> the sets that limit what the statement does."""
    if not st[0].is_("if"):
        return ()
    then = next((i for i, t in enumerate(st) if t.is_("then")), None)
    return _where_sets(st[1:then]) if then is not None else ()


def _export(protocol: str, channel: str, st: list[Token], cfg: Config) -> BgpExport | None:
    """The export statement ``st`` (starting with ``export``), or None for an option (``export limit`` ...)."""
    rest = st[1:]
    if not rest:
        return BgpExport(protocol, "", (), True, channel, "an empty export statement")
    kind = rest[0]
    if kind.is_(*EXPORT_OPTIONS):
        return None
    if kind.is_("all", "none") and len(rest) == 1:
        return BgpExport(protocol, kind.text, (), kind.text == "all", channel,
                         "'export all' announces whatever BIRD has" if kind.text == "all" else "")
    if kind.is_("where") and len(rest) > 1:
        sets = _where_sets(rest[1:])
        statement = "where " + _shown(rest[1:], 12)
        return BgpExport(protocol, statement, sets, True, channel,
                         "" if sets else f"export {statement} does not limit the routes to a prefix set (net ~ SET)")
    if kind.is_("filter") and len(rest) == 2 and rest[1].kind == "word":
        name = rest[1].text
        if name not in cfg.filters:
            return BgpExport(protocol, f"filter {name}", (), True, channel, f"filter {name} is not defined")
        sets, accepts, problem = _filter_export(cfg.filters[name], cfg)
        return BgpExport(protocol, f"filter {name}", sets, accepts, channel,
                         f"export filter {name} {problem}" if problem else "")
    if kind.is_("filter") and len(rest) >= 3 and rest[1].is_("{") and rest[-1].is_("}"):
        sets, accepts, problem = _filter_export(rest[2:-1], cfg)
        return BgpExport(protocol, "filter { ... }", sets, accepts, channel,
                         f"export filter {{ ... }} {problem}" if problem else "")
    return BgpExport(protocol, _shown(rest), (), True, channel,
                     f"'export {_shown(rest)}' is not a form the policy can check (all, none, filter NAME, "
                     "filter { ... }, where ...)")


def _protocol_exports(name: str, body: list[Token], cfg: Config) -> tuple[list[BgpExport], list[str]]:
    exports: list[BgpExport] = []
    problems: list[str] = []
    channels = 0
    for st in _statements(body):
        if st[0].is_("export"):
            if (e := _export(name, "", st, cfg)) is not None:
                exports.append(e)
        elif st[0].is_(*CHANNEL_WORDS):
            channels += 1
            start = next((i for i, t in enumerate(st) if t.is_("{")), len(st))
            label = " ".join(t.text for t in st[:start])
            own: list[BgpExport] = []
            if st[-1].is_("}") and start < len(st):
                for inner in _statements(st[start + 1:-1]):
                    if inner[0].is_("export") and (e := _export(name, label, inner, cfg)) is not None:
                        own.append(e)
            if not own:
                problems.append(f"protocol {name}: channel {label} has no export statement; the policy needs an explicit "
                                "export of the network's prefixes only (BIRD 2 refuses EBGP without one, RFC 8212)")
            exports += own
    if not channels:
        problems.append(f"protocol {name}: no channel (ipv4 {{ ... }} / ipv6 {{ ... }}) with an export statement")
    return exports, problems


def prefix_sets(conf: str) -> dict[str, list[IPv4Network | IPv6Network]]:
    """Named prefix sets (``define NAME = [ a/b, c/d ];``); entries with BIRD range suffixes ({a,b}, +, -) are kept
    as their base prefix. Sets that hold something other than prefixes are left out."""
    return {k: v for k, v in read_config(conf).sets.items() if v is not None}


def bgp_exports(conf: str) -> list[BgpExport]:
    """Every export statement of every ``protocol bgp`` block, with the prefix sets that guard it."""
    cfg = read_config(conf)
    out: list[BgpExport] = []
    for name, body in cfg.protocols:
        out += _protocol_exports(name, body, cfg)[0]
    return out


def export_problems(conf: str, allowed: list[Any]) -> list[str]:
    """Why this bird.conf could export more than ``allowed`` (the network's prefixes); empty if it cannot.

    Every channel of every BGP protocol must say ``export none``, or export through a filter (or ``where``) that
    accepts only routes matching ``net ~ SET``, where every prefix of SET lies inside an allowed prefix. Anything
    the reader cannot follow is a problem too, never a pass.
    """
    try:
        cfg = read_config(conf)
    except BirdSyntaxError as exc:
        return [f"bird.conf cannot be read as BIRD reads it ({exc}), so what it exports is unknown"]
    problems = list(cfg.problems)
    for name, body in cfg.protocols:
        exports, missing = _protocol_exports(name, body, cfg)
        problems += missing
        for exp in exports:
            where = f"protocol {exp.protocol}" + (f" channel {exp.channel}" if exp.channel else "")
            if exp.problem:
                problems.append(f"{where}: {exp.problem}")
                continue
            if exp.statement == "none" or not exp.accepts:
                continue
            for set_name in exp.sets:
                nets = cfg.sets.get(set_name)
                if set_name not in cfg.sets:
                    problems.append(f"{where}: prefix set {set_name} is not defined")
                elif nets is None:
                    problems.append(f"{where}: {set_name} is not a set of prefixes")
                else:
                    for net in nets:
                        if not any(net.version == a.version and net.subnet_of(a) for a in allowed):
                            problems.append(f"{where}: {set_name} holds {net}, which is not the network's "
                                            f"({', '.join(str(a) for a in allowed)})")
    return problems
