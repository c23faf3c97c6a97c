"""Read a ``Pulumi.<stack>.yaml`` the way the Pulumi CLI does, so the CLI, the lab and ``pulumi up`` see one network.

The Pulumi CLI is written in Go. It reads a stack file with gopkg.in/yaml.v3 (v3.0.1) into an untyped value
(pulumi v3.259.0: ``LoadProjectStackBytes`` in
https://github.com/pulumi/pulumi/blob/0ac56e876614aedf12771d73ef7e80959b8a6fd4/sdk/go/common/workspace/loaders.go,
``yaml.Unmarshal`` in .../sdk/go/common/encoding/marshal.go, version in .../sdk/go.mod) and hands an object config
value to the program as JSON made by Go's encoding/json (``object.MarshalString`` in
.../sdk/go/common/resource/config/object.go); the Python SDK's ``Config.get_object`` then ``json.loads`` it.
PyYAML follows YAML 1.1 and reads many plain scalars differently, so this module keeps the parser (libyaml, of which
yaml.v3 is a Go port) and PyYAML's composer, and replaces the resolver with yaml.v3's ``resolve()`` and the
decoder's rules (https://github.com/go-yaml/yaml/blob/f6f7691b1fdeb513f56608cd2c32c51f8194bf51/resolve.go and
.../decode.go, tag v3.0.1). tests/unit/test_stack_yaml.py checks it against answers recorded from yaml.v3 itself:

- booleans are only ``true True TRUE false False FALSE``: ``yes no on off y n NO`` stay strings;
- null is ``~ null Null NULL`` or nothing;
- integers follow Go's ``strconv.ParseInt(s, 0, 64)`` after dropping every ``_``: ``0x1F 0o17 0b101``, and ``0777``
  is octal (511); no sexagesimal: ``1:30`` is the string "1:30"; digits past uint64 are a float, past float64 a string;
- floats: ``1.5 1e3 .5 -.5``; an integral float reaches the program as a JSON integer (``1.0`` -> 1, ``08`` -> 8);
- duplicate keys are an error (decode.go ``mapping``: "mapping key already defined at line N");
- ``<<`` merge keys: the mapping's own keys win, then the merged maps in order (decode.go ``merge``).

Refused here, with one line naming the file, line and key, because Pulumi would either refuse them or pass the
program something other than what the file seems to say:
duplicate keys; keys that are not strings (Pulumi: "expected only string keys", or it silently turns them into
strings); unquoted timestamps (yaml.v3 makes a time.Time and Pulumi passes ``2001-12-14 00:00:00 +0000 UTC``);
``.nan``/``.inf`` (Go's JSON cannot carry them); explicit tags (``!!int``, ``!!binary``, ``!foo``); more than one
document; nesting deeper than MAX_DEPTH; aliases that expand past MAX_NODES nodes (a "billion laughs" file); files
over MAX_BYTES.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from yaml._yaml import CParser  # libyaml, which PyYAML's wheels bundle
from yaml.composer import Composer
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from infra.model.errors import ConfigError

MAX_BYTES = 128 * 1024  # the stack files here are 1-4 KB; 128 KB of dense YAML takes 1-2 s to read
MAX_DEPTH = 64  # a stack file nests about 6 deep; PyYAML's composer recurses and would hit Python's limit near 300
MAX_NODES = 100_000  # values built, aliases expanded: 10 nested levels of 10 aliases would be 10^10

_INT64 = 1 << 63
_UINT64 = 1 << 64


class StackYAMLError(ConfigError):
    """A stack file that Pulumi would read differently or not at all: ``str()`` is one line, file first."""

    def __init__(self, path: Path | str, message: str, line: int | None = None, key: str | None = None,
                 column: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.key = key or None
        self.message = message
        where = f"line {line}{f', column {column}' if column else ''}: " if line is not None else ""
        at = f"{key}: " if key else ""
        super().__init__([f"{where}{at}{message}"], source=self.path.name)


# yaml.v3 resolve.go: the first character picks how a plain scalar is tried.
_SPECIAL: dict[str, tuple[str, Any]] = {}
for _kind, _value, _words in (
        ("bool", True, "true True TRUE"), ("bool", False, "false False FALSE"), ("null", None, "~ null Null NULL"),
        ("float", float("nan"), ".nan .NaN .NAN"), ("float", float("inf"), ".inf .Inf .INF +.inf +.Inf +.INF"),
        ("float", float("-inf"), "-.inf -.Inf -.INF"), ("merge", "<<", "<<")):
    for _word in _words.split():
        _SPECIAL[_word] = (_kind, _value)
_SPECIAL[""] = ("null", None)
_MAP_HINT = set("yYnNtTfFoO~")
# yaml.v3 yamlStyleFloat, tried on the text without underscores
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# strconv.ParseFloat on text starting with '.': Go's float literal syntax, '_' only between digits
_GO_DOT_FLOAT = re.compile(r"\.[0-9](_?[0-9])*([eE][-+]?[0-9](_?[0-9])*)?")
# yaml.v3 parseTimestamp: four digits, '-', then Go's time.Parse with "2006-1-2" and three date-time layouts
_DATE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}[Tt ].*")
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


def _go_parse_digits(digits: str, base: int) -> int | None:
    """strconv.ParseUint(digits, base, 64) for base 2 or 8: no prefix, no sign."""
    if not digits or any(c not in _DIGITS[base] for c in digits) or len(digits) > 70:
        return None
    value = int(digits, base)
    return value if value < _UINT64 else None


def _go_parse_uint(s: str) -> int | None:
    """strconv.ParseUint(s, 0, 64): base from the prefix, a bare leading 0 means octal; None on any error."""
    base, digits = 10, s
    if s[:1] == "0":
        prefix = s[1:2].lower()
        if len(s) >= 3 and prefix in ("b", "o", "x"):
            base, digits = {"b": 2, "o": 8, "x": 16}[prefix], s[2:]
        else:
            base, digits = 8, s[1:]
    elif not s:
        return None
    if any(c not in _DIGITS[base] for c in digits) or len(digits) > 70:  # 64 binary digits is the longest that fits
        return None
    value = int(digits, base) if digits else 0
    return value if value < _UINT64 else None


def _go_parse_int(s: str, base: int = 0) -> int | None:
    """strconv.ParseInt(s, base, 64); base 0 reads the prefix."""
    neg = s[:1] == "-"
    unsigned = s[1:] if s[:1] in ("+", "-") else s
    magnitude = _go_parse_uint(unsigned) if base == 0 else _go_parse_digits(unsigned, base)
    if magnitude is None or magnitude > (_INT64 if neg else _INT64 - 1):
        return None
    return -magnitude if neg else magnitude


def _finite(text: str) -> float | None:
    """strconv.ParseFloat on text already known to be a decimal float: None where Go reports ErrRange."""
    value = float(text.replace("_", ""))
    return None if value in (float("inf"), float("-inf")) else value


def _is_timestamp(s: str) -> bool:
    """yaml.v3 parseTimestamp, erring on the side of yes for the layouts with a time (those are refused anyway)."""
    if _DATE_TIME.fullmatch(s):
        return True
    m = _DATE.fullmatch(s)
    if not m:
        return False
    year, month, day = (int(g) for g in m.groups())
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return 1 <= month <= 12 and 1 <= day <= days[month - 1]


def go_resolve(text: str) -> tuple[str, Any]:
    """yaml.v3 ``resolve("", text)`` for a plain scalar: (kind, value), kind one of
    null bool int float str timestamp merge. Floats are Go's float64, before the JSON hand-off."""
    if text in _SPECIAL:
        return _SPECIAL[text]
    hint = text[0]
    if hint in _MAP_HINT:
        return "str", text
    if hint == ".":
        if _GO_DOT_FLOAT.fullmatch(text) and (value := _finite(text)) is not None:
            return "float", value
        return "str", text
    if hint in "+-0123456789":
        if _is_timestamp(text):
            return "timestamp", text
        plain = text.replace("_", "")
        if plain and (number := _go_parse_int(plain)) is not None:
            return "int", number
        if plain and (number := _go_parse_uint(plain)) is not None:
            return "int", number
        if _YAML_FLOAT.fullmatch(plain) and (value := _finite(plain)) is not None:
            return "float", value
        # resolve.go then reads what follows a 0b or 0o prefix with ParseInt(rest, 2 or 8), which takes a sign: 0o-10
        # is -8. (Its "-0b"/"-0o" branches only see what ParseInt(s, 0, 64) refused: too large either way.)
        for prefix, base in (("0b", 2), ("0o", 8)):
            if plain.startswith(prefix):
                rest = plain[2:]
                if (number := _go_parse_int(rest, base)) is not None:
                    return "int", number
                if (number := _go_parse_digits(rest, base)) is not None:
                    return "int", number
    return "str", text


def as_program_sees(value: float) -> int | float:
    """Go's encoding/json writes a float64 as its shortest decimal, an integral one below 1e21 without a point or
    exponent (1.8446744073709552e19 as 18446744073709552000), so the program's json.loads makes that an int."""
    if value.is_integer() and abs(value) < 1e21:
        return int(Decimal(repr(value)))
    return value


class _Composer(CParser, Composer, BaseResolver):
    """libyaml's parser (yaml.v3 is a Go port of libyaml) and PyYAML's composer, without PyYAML's YAML 1.1 resolvers;
    tags and depth are checked here, before the composer recurses."""

    def __init__(self, text: str) -> None:
        CParser.__init__(self, text)
        Composer.__init__(self)
        BaseResolver.__init__(self)
        self.depth = 0
        self.via_alias: set[tuple[int, int]] = set()  # (mapping, key) whose value was written as *alias

    def get_single_node(self) -> Node | None:
        return Composer.get_single_node(self)  # CParser's own would skip compose_node

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        line = event.start_mark.line + 1 if event is not None and event.start_mark is not None else None
        if isinstance(event, AliasEvent) and parent is not None:
            self.via_alias.add((id(parent), id(index)))
        tag = getattr(event, "tag", None)
        if tag is not None:
            tag = tag.replace("tag:yaml.org,2002:", "!!")
            raise _Refused(line, f"explicit tag {tag}: Pulumi's reader would give it another meaning; write the value "
                                 "plainly (quote it for a string)")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Refused(line, f"nested too deeply (more than {MAX_DEPTH} levels)")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Refused(Exception):
    def __init__(self, line: int | None, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.line, self.message, self.key = line, message, key


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


class _Builder:
    """Turns the composed node graph into plain values by yaml.v3's rules, expanding aliases with a budget."""

    def __init__(self, via_alias: set[tuple[int, int]]) -> None:
        self.nodes = 0
        self.via_alias = via_alias
        self.open: set[int] = set()  # nodes being built: an alias to one of them is a loop

    def build(self, node: Node, path: str, depth: int) -> Any:
        self.nodes += 1
        line = node.start_mark.line + 1
        if self.nodes > MAX_NODES:
            raise _Refused(line, f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?)", path)
        if depth > MAX_DEPTH:
            raise _Refused(line, f"nested too deeply (more than {MAX_DEPTH} levels, aliases expanded)", path)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.open:
            raise _Refused(line, "an alias inside the value of its own anchor (a loop)", path)
        self.open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node.value)]
            assert isinstance(node, MappingNode)
            return self.mapping(node, path, depth)
        finally:
            self.open.discard(id(node))

    def scalar(self, node: ScalarNode, path: str) -> Any:
        if node.style:  # quoted, literal or folded: a string whatever it says (yaml.v3 indicatedString)
            return node.value
        kind, value = go_resolve(node.value)
        line = node.start_mark.line + 1
        if kind == "timestamp":
            raise _Refused(line, f"{_show(node.value)} is a timestamp to Pulumi's reader, which passes it on as "
                                 "'YYYY-MM-DD hh:mm:ss +0000 UTC'; quote it", path)
        if kind == "float":
            if value != value or value in (float("inf"), float("-inf")):
                raise _Refused(line, f"{node.value} is not a number Pulumi can pass to a program (JSON has no "
                                     "NaN or infinity)", path)
            return as_program_sees(value)
        return value

    def key(self, node: Node, path: str) -> str:
        line = node.start_mark.line + 1
        if not isinstance(node, ScalarNode):
            raise _Refused(line, "a list or mapping used as a key; Pulumi accepts only string keys", path)
        if node.style:
            return str(node.value)
        kind, value = go_resolve(node.value)
        if kind == "merge":
            return "<<"
        if kind != "str":
            shown = "an empty key" if node.value == "" else f"key {node.value}"
            raise _Refused(line, f"{shown} is a {kind} to Pulumi's reader, which accepts only string keys; quote it",
                           path)
        return str(value)

    def mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.fill(node, path, depth, out, None)
        return out

    def fill(self, node: MappingNode, path: str, depth: int, out: dict[str, Any], taken: set[str] | None) -> None:
        """yaml.v3 decoder.mapping/merge: explicit keys, then merged maps whose keys are not taken yet."""
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:  # yaml.v3 compares node kind and text, before resolving anything
            ident = (type(key_node).__name__, key_node.value if isinstance(key_node, ScalarNode) else "")
            line = key_node.start_mark.line + 1
            if ident in seen:
                shown = _show(key_node.value) if isinstance(key_node, ScalarNode) else "a key"
                raise _Refused(line, f"key {shown} is already defined at line {seen[ident]}; Pulumi refuses a file "
                                     "with duplicate keys (PyYAML used to keep the last)", path)
            seen[ident] = line
        merge: Node | None = None
        keys = [(self.key(k, path), k, v) for k, v in node.value]
        if taken is None:
            taken = set()
            merged_into = False
        else:
            merged_into = True
        for name, key_node, value_node in keys:
            if name == "<<" and isinstance(key_node, ScalarNode) and not key_node.style:
                merge = value_node
                if (id(node), id(key_node)) in self.via_alias and not isinstance(merge, MappingNode):
                    raise _Refused(key_node.start_mark.line + 1, "a << merge of an alias needs a mapping", path)
                continue
            if merged_into:
                if name in taken:
                    continue
                taken.add(name)
            out[name] = self.build(value_node, f"{path}.{name}" if path else name, depth + 1)
        if merge is None:
            return
        if not merged_into:
            taken = {name for name, _, _ in keys}
        sources = merge.value if isinstance(merge, SequenceNode) else [merge]
        for source in sources:
            if not isinstance(source, MappingNode):
                raise _Refused(merge.start_mark.line + 1, "a << merge needs a mapping or a list of mappings", path)
            self.nodes += 1
            if self.nodes > MAX_NODES:
                raise _Refused(source.start_mark.line + 1,
                               f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?)", path)
            self.fill(source, path, depth + 1, out, taken)


def parse(text: str, path: Path | str = "<text>") -> Any:
    """The value Pulumi's CLI would read from ``text`` and hand to a program; StackYAMLError if it would not."""
    try:
        composer = _Composer(text)
        try:
            node = composer.get_single_node()
        finally:
            composer.dispose()
        if node is None:
            return None
        return _Builder(composer.via_alias).build(node, "", 0)
    except _Refused as exc:
        raise StackYAMLError(path, exc.message, exc.line, exc.key) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or str(exc).splitlines()[0]
        if "found unexpected ':'" in problem:  # libyaml refuses `[x:, y]`; yaml.v3 reads "x:"
            problem += "; quote the value"
        elif "duplicate anchor" in problem:  # yaml.v3 lets a later &x replace an earlier one
            problem += "; give each anchor its own name"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        raise StackYAMLError(path, f"not valid YAML: {problem}", line, column=column) from None
    except yaml.YAMLError as exc:  # ReaderError: a control character, no line to name
        raise StackYAMLError(path, f"not valid YAML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise StackYAMLError(path, "nested too deeply to be a stack file") from None


def load(path: Path) -> Any:
    """Read and parse one stack file: size, encoding and YAML problems as StackYAMLError."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise StackYAMLError(path, f"cannot read it: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise StackYAMLError(path, f"larger than {MAX_BYTES // 1024} KiB: not a stack file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StackYAMLError(path, f"not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    return parse(text.removeprefix("\ufeff"), path)  # Pulumi strips a byte-order mark (readFileStripUTF8BOM)
