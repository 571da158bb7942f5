#!/usr/bin/env python3
"""Check that a Rust crate's intra-crate module graph is acyclic.

The rule (issue: "No module of torsion-wsgi or torsion-endpoints imports, directly or
through others, a module that imports it back") is what `cargo modules dependencies
--acyclic` checks, done here cheaply and without building, so that CI can run it.

Modules are found from lib.rs (or main.rs) by following `mod x;` declarations and inline
`mod x { ... }` blocks, whatever their `#[cfg]`, except test code: inline `mod tests` and
any `#[cfg(test)]` module. Module declarations are not edges. An edge A -> B is a path in
A's code (comments, doc comments and string/char literals stripped) that starts with
`crate::`, `super::`, `self::` or the name of a child module of A (use groups included)
and names B: the longest prefix of the path that is a module. Paths that name only the
crate root (`crate::Foo`, a root re-export) are not edges but are warned about, as they
hide the real one. A child using its parent (`super::X`) while the parent uses the child is
a cycle too (the acme/mod.rs <-> acme/manager.rs kind); --allow-parent ignores edges from a
module to its ancestors. Re-exports are not followed: `crate::acme::X` is an edge to `acme`
even if `acme` re-exports X from a child. Exit status: 0 acyclic, 1 cycle(s) found, 2 usage error.
Usage: module_graph.py [--print] [--allow-parent] CRATE_SRC_DIR...  |  --self-test
"""
import argparse, re, sys, tempfile, tomllib
from collections import deque
from pathlib import Path

MOD_RE = re.compile(r"((?:#\[[^\]]*\]\s*)*)(?<![\w:])(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])")
TEST_RE = re.compile(r"\bcfg\s*\(\s*(?:all\s*\([^)]*)?\btest\b")
PATH_RE = re.compile(r"(?<![\w:.])([A-Za-z_]\w*)\s*::")
WORD_RE = re.compile(r"[A-Za-z_]\w*")
SEP_RE = re.compile(r"\s*::")
RAW_RE = re.compile(r"b?r(#*)\"")
CHAR_RE = re.compile(r"'(\\(?:x..|u\{[^}]*\}|.)|[^\\'])'")


def strip(src):
    """Blank comments and string/char literals, keeping offsets and newlines."""
    out, i, n = list(src), 0, len(src)
    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n": out[k] = " "
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i); j = n if j < 0 else j
            blank(i, j); i = j
        elif src.startswith("/*", i):
            j, depth = i + 2, 1
            while j < n and depth:
                if src.startswith("/*", j): depth, j = depth + 1, j + 2
                elif src.startswith("*/", j): depth, j = depth - 1, j + 2
                else: j += 1
            blank(i, j); i = j
        elif (m := RAW_RE.match(src, i)) and (i == 0 or not (src[i-1].isalnum() or src[i-1] == "_")):
            j = src.find('"' + m.group(1), m.end()); j = n if j < 0 else j + 1 + len(m.group(1))
            blank(m.end(), j - 1 - len(m.group(1))); i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"': j += 2 if src[j] == "\\" else 1
            blank(i + 1, j); i = j + 1
        elif c == "'" and (m := CHAR_RE.match(src, i)):
            blank(i + 1, m.end() - 1); i = m.end()
        else:
            i += 1
    return "".join(out)


def match_brace(code, i):
    depth = 0
    for j in range(i, len(code)):
        depth += {"{": 1, "}": -1}.get(code[j], 0)
        if depth == 0: return j + 1
    return len(code)


def parse_tree(code, p):
    """Parse a path / use tree at p; return ([(segments, pos of last segment)], end)."""
    segs, pos = [], p
    while True:
        while p < len(code) and code[p].isspace(): p += 1
        if p < len(code) and code[p] == "{":
            items, p = [], p + 1
            while True:
                while p < len(code) and code[p] in " \t\r\n,": p += 1
                if p >= len(code) or code[p] == "}": break
                sub, q = parse_tree(code, p)
                items += [(segs + s, sp) for s, sp in sub]
                if q == p: q += 1  # unparsable token: skip it
                p = q
            return items, p + 1
        if code.startswith("*", p): return [(segs + ["*"], p)], p + 1
        m = WORD_RE.match(code, p)
        if not m: return [(segs, pos)], p
        segs, pos, p = segs + [m.group()], p, m.end()
        m = SEP_RE.match(code, p)
        if not m: return [(segs, pos)], p
        p = m.end()


class Crate:
    def __init__(self, src):
        self.src = Path(src)
        root = next((self.src / f for f in ("lib.rs", "main.rs") if (self.src / f).is_file()), None)
        if root is None: raise FileNotFoundError(f"no lib.rs or main.rs in {src}")
        try: self.name = tomllib.loads((self.src.parent / "Cargo.toml").read_text())["package"]["name"]
        except (OSError, KeyError, tomllib.TOMLDecodeError): self.name = self.src.resolve().parent.name
        self.modules, self.warnings = {}, []  # module tuple -> (file, code, first line)
        self.load((), root)
        self.edges = {m: {} for m in self.modules}  # src -> {dst: "file:line"}
        self.root_uses = {}
        for mod in self.modules: self.find_edges(mod)

    def load(self, mod, file):
        cdir = file.parent if file.name in ("lib.rs", "main.rs", "mod.rs") else file.parent / file.stem
        code = strip(file.read_text())
        self.scan(mod, file, code, 0, len(code), cdir)

    def scan(self, mod, file, code, lo, hi, cdir):
        spans, pos = [], lo
        for m in MOD_RE.finditer(code, lo, hi):
            if m.start() < pos: continue  # inside an inline module already handled
            test, name = bool(TEST_RE.search(m.group(1))), m.group(2)
            if m.group(3) == "{":
                end = match_brace(code, m.end() - 1)
                spans.append((m.start(), end)); pos = end
                if not test and name != "tests":
                    self.scan(mod + (name,), file, code, m.end(), end - 1, cdir / name)
            elif not test:
                f = next((f for f in (cdir / f"{name}.rs", cdir / name / "mod.rs") if f.is_file()), None)
                if f: self.load(mod + (name,), f)
                else: self.warnings.append(f"{file}: no file for `mod {name};` (#[path]?), skipped")
        text = code[lo:hi]
        for a, b in spans: text = text[:a - lo] + re.sub(r"[^\n]", " ", text[a - lo:b - lo]) + text[b - lo:]
        self.modules[mod] = (file, text, code.count("\n", 0, lo) + 1)

    def resolve(self, mod, segs):
        head, rest = segs[0], segs[1:]
        base = {"crate": (), "self": mod, "super": mod[:-1]}.get(head, mod + (head,))
        while rest and rest[0] == "super": base, rest = base[:-1], rest[1:]
        for s in rest:
            if base + (s,) not in self.modules: break
            base += (s,)
        return base

    def find_edges(self, mod):
        file, text, line0 = self.modules[mod]
        p = 0
        while m := PATH_RE.search(text, p):
            paths, p = parse_tree(text, m.start(1))
            head = m.group(1)
            if head not in ("crate", "self", "super") and mod + (head,) not in self.modules: continue
            for segs, sp in paths:
                if head == "super" and not mod: continue
                dst, where = self.resolve(mod, segs), f"{file}:{line0 + text.count(chr(10), 0, sp)}"
                if dst == () and mod != ():
                    self.root_uses.setdefault(mod, []).append(f"{'::'.join(segs)} ({where})")
                elif dst != mod:
                    self.edges[mod].setdefault(dst, where)

    def graph(self, allow_parent=False):
        return {s: {d: w for d, w in ds.items() if not (allow_parent and s[:len(d)] == d)}
                for s, ds in self.edges.items()}


def name(mod): return "::".join(mod) or "crate"


def cycles(g):
    """One shortest cycle through each module that is on a cycle (breadth-first search back to it)."""
    found = []
    for start in sorted(g):
        prev, todo, last = {start: None}, deque([start]), None
        while todo and last is None:
            v = todo.popleft()
            for w in sorted(g[v]):
                if w == start: last = v; break
                if w not in prev: prev[w] = v; todo.append(w)
        if last is None: continue
        cyc = [last]
        while prev[cyc[-1]] is not None: cyc.append(prev[cyc[-1]])
        cyc.reverse(); k = cyc.index(min(cyc)); cyc = cyc[k:] + cyc[:k]
        if cyc not in found: found.append(cyc)
    return found


def check(crate, allow_parent=False, show=False):
    g = crate.graph(allow_parent)
    for w in crate.warnings: print(f"warning: {crate.name}: {w}", file=sys.stderr)
    for mod, uses in sorted(crate.root_uses.items()):
        print(f"warning: {crate.name}: {name(mod)} uses crate-root item(s), hiding the real edge: "
              + ", ".join(uses), file=sys.stderr)
    if show:
        print(f"# {crate.name} ({crate.src})")
        for mod in sorted(g): print(f"{name(mod)} -> {', '.join(sorted(name(d) for d in g[mod]))}".rstrip())
    found = cycles(g)
    for cyc in found:
        print(f"{crate.name}: {' -> '.join(name(m) for m in cyc + cyc[:1])}")
        for a, b in zip(cyc, cyc[1:] + cyc[:1]): print(f"    {name(a)} -> {name(b)}: {g[a][b]}")
    return found


def self_test():
    def run(files, **kw):
        with tempfile.TemporaryDirectory() as d:
            for rel, body in files.items():
                (Path(d) / rel).parent.mkdir(parents=True, exist_ok=True); (Path(d) / rel).write_text(body)
            c = Crate(d)
            return c, c.graph(**kw), [[name(m) for m in cyc] for cyc in cycles(c.graph(**kw))]
    c, g, cy = run({"lib.rs": "mod a; mod b; pub mod c;\npub use a::X;\n",
                    "a.rs": "use crate::{b::{Y, Z}, c::W};\n", "b.rs": "pub struct Y;", "c.rs": "use crate::a::X;"})
    assert set(g[("a",)]) == {("b",), ("c",)} and g[()] == {("a",): f"{c.src}/lib.rs:2"}, g
    assert cy == [["a", "c"]] and g[("c",)][("a",)].endswith("c.rs:1"), cy
    _, g, cy = run({"lib.rs": "mod a; mod b; mod c;", "a.rs": "use super::{b::B, b};", "b.rs": "fn f() { crate::c::g() }",
                    "c.rs": "/* crate::b::X */ fn g() { super::a::A; }"})
    assert cy == [["a", "b", "c"]], cy
    _, g, cy = run({"lib.rs": "//! [`crate::a::X`]\nmod a; mod b;",
                    "a.rs": "/// [`crate::b::Y`]\n// crate::b::Z\nconst S: &str = \"crate::b::Q\"; const C: char = '\"';\n"
                            "/* outer /* nested */ crate::b::R */ fn f<'a>(x: &'a str) {}",
                    "b.rs": "use crate::a::f; #[cfg(test)]\nmod tests { use crate::b::X; }\n#[cfg(test)]\nmod t2;",
                    "b/t2.rs": "use crate::b::X;"})
    assert cy == [] and g[("a",)] == {} and set(g) == {(), ("a",), ("b",)}, (g, cy)
    src = {"lib.rs": "mod acme; mod tls;", "tls.rs": "", "acme/mod.rs": "mod manager;\npub use manager::M;\npub struct K;",
           "acme/manager.rs": "use super::K; use crate::tls::T;\nmod inner { use super::super::K; }\nfn f() { inner::g() }"}
    c, g, cy = run(src)
    assert sorted(cy) == [["acme", "acme::manager"], ["acme", "acme::manager", "acme::manager::inner"]], cy
    assert g[("acme", "manager")] == {("acme",): f"{c.src}/acme/manager.rs:1", ("tls",): f"{c.src}/acme/manager.rs:1",
                                        ("acme", "manager", "inner"): f"{c.src}/acme/manager.rs:3"}, g
    assert run(src, allow_parent=True)[2] == []
    c, _, _ = run({"lib.rs": "mod a; pub use a::X;", "a.rs": "use crate::X;"})
    assert c.root_uses == {("a",): [f"crate::X ({c.src}/a.rs:1)"]}, c.root_uses
    print("self-test: ok")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print", action="store_true", help="print the module graph")
    ap.add_argument("--allow-parent", action="store_true", help="ignore edges from a module to its ancestors")
    ap.add_argument("--self-test", action="store_true", help="run the built-in tests")
    ap.add_argument("src", nargs="*", help="crate source directory (containing lib.rs or main.rs)")
    a = ap.parse_args(argv)
    if a.self_test: return self_test() or 0
    if not a.src: ap.print_usage(sys.stderr); return 2
    try: crates = [Crate(s) for s in a.src]
    except (FileNotFoundError, NotADirectoryError) as e: print(f"error: {e}", file=sys.stderr); return 2
    bad = [check(c, a.allow_parent, a.print) for c in crates]
    return 1 if any(bad) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
