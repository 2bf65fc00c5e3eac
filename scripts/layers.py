#!/usr/bin/env python3
"""Which module of src/ imports which, and the cycles among them.

    python3 scripts/layers.py              # cycles among files; exit 1 if any
    python3 scripts/layers.py --depth 1    # cycles among the top-level modules (folders whole)
    python3 scripts/layers.py --graph      # every module and what it imports

Besides cycles it checks the layering README's architecture doc states: the
adapters (`aws`) import no use case (`mirroring`), and the domain (`domain`)
imports nothing of the application but the wire contract.

A module is a file of src/ (a folder's mod.rs is the folder). An import is
any `crate::a::b` or `super::b` path in the file's code (comments and unit
tests left out), counted at the deepest module that exists. A folder's
mod.rs naming one of its own children is the folder's inside, not an
import; a child naming its folder is one.
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_of(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"


def code_of(text: str) -> str:
    # Drop unit tests (everything from `#[cfg(test)]` on) and comments.
    text = text.split("#[cfg(test)]")[0]
    text = re.sub(r"//[^\n]*", "", text)
    return text


PATH = r"((?:[A-Za-z_][A-Za-z0-9_]*::)*(?:[A-Za-z_][A-Za-z0-9_]*|\{[^;]*?\}))"


def imports(modules: set, module: str, code: str) -> set:
    found = set()
    # `super::` names the module's parent, for a file and a folder's mod.rs alike.
    here = module.split("::") if module != "crate" else []
    base = here[:-1]
    paths = [m.group(1) for m in re.finditer(r"crate::" + PATH, code)]
    paths += ["::".join(base + [m.group(1)]) if base else m.group(1)
              for m in re.finditer(r"(?<![A-Za-z0-9_:])super::" + PATH, code)]
    # `use crate::{a::{b, c}, d}` and `crate::a::b` paths alike: expand braces.
    for raw in paths:
        for path in expand(raw):
            parts = path.split("::")
            for end in range(len(parts), 0, -1):
                candidate = "::".join(parts[:end])
                if candidate in modules:
                    if candidate != module and not module.startswith(candidate + "::") \
                            and not candidate.startswith(module + "::"):
                        found.add(candidate)
                    break
    return found


def expand(path: str) -> list:
    if "{" not in path:
        return [path]
    head, rest = path.split("{", 1)
    inner = rest.rsplit("}", 1)[0]
    items, depth, current = [], 0, ""
    for char in inner:
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
            continue
        depth += char == "{"
        depth -= char == "}"
        current += char
    if current.strip():
        items.append(current.strip())
    out = []
    for item in items:
        out.extend(expand(head + item))
    return out


def graph() -> dict:
    files = sorted(p for p in SRC.rglob("*.rs") if "bin" not in p.relative_to(SRC).parts)
    modules = {module_of(p) for p in files}
    return {
        module_of(p): imports(modules, module_of(p), code_of(p.read_text()))
        for p in files
    }


def collapsed(edges: dict, depth: int) -> dict:
    """The graph with module paths cut to `depth` segments (folders whole)."""
    cut = lambda m: "::".join(m.split("::")[:depth])
    out = {}
    for module, targets in edges.items():
        out.setdefault(cut(module), set()).update(cut(t) for t in targets if cut(t) != cut(module))
    return out


def cycles(edges: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    edges = graph()
    if "--depth" in sys.argv:
        edges = collapsed(edges, int(sys.argv[sys.argv.index("--depth") + 1]))
    if "--graph" in sys.argv:
        for module in sorted(edges):
            print(f"{module}: {', '.join(sorted(edges[module])) or '-'}")
        return 0
    found = cycles(edges)
    rules = [
        ("aws", "mirroring", "an adapter imports a use case"),
        ("domain", "", "the domain imports the application"),
    ]
    broken = []
    for module, targets in sorted(edges.items()):
        for prefix, forbidden, why in rules:
            if module == prefix or module.startswith(prefix + "::"):
                for target in sorted(targets):
                    top = target.split("::")[0]
                    bad = top == forbidden if forbidden else top not in ("domain", "contract")
                    if bad:
                        broken.append(f"{why}: {module} -> {target}")
    for line in broken:
        print(line)
    for component in found:
        print("cycle among: " + ", ".join(component))
        for module in component:
            inside = sorted(t for t in edges[module] if t in component)
            print(f"  {module} -> {', '.join(inside)}")
    print(f"{len(edges)} modules, {sum(len(v) for v in edges.values())} imports, {len(found)} cycles, "
          f"{len(broken)} layering breaches")
    return 1 if found or broken else 0


if __name__ == "__main__":
    sys.exit(main())
