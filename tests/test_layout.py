"""The package layout: no import circles, one boundary with data_prep, small modules.

Imports are read from the source with `ast`, function-level (lazy) imports included, so a circle
hidden inside a function counts as one.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("rcn_jax", "data_prep")
# The only data_prep modules rcn_jax may import, and which rcn_jax modules may import them:
# the inference-time helpers (analysis code) and the built-in data build (the dataset loader).
DATA_PREP_BOUNDARY = {
    "data_prep.inference": None,  # any rcn_jax module
    "data_prep.synthetic": {"rcn_jax.data"},
}
MAX_LINES = 400


def module_files() -> dict[str, pathlib.Path]:
  files = {}
  for package in PACKAGES:
    for path in sorted((ROOT / package).rglob("*.py")):
      parts = path.relative_to(ROOT).with_suffix("").parts
      name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
      files[name] = path
  return files


def imported_modules(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
  """The project modules `name` imports anywhere in its file (a package's name for its `__init__`)."""
  is_package = path.name == "__init__.py"
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        parent = ".".join(base + ([node.module] if node.module else []))
      else:
        parent = node.module
      # `from P import N`: the submodule P.N when there is one, else P itself.
      targets = [f"{parent}.{alias.name}" if f"{parent}.{alias.name}" in known else parent for alias in node.names]
    else:
      continue
    for target in targets:
      while target and target not in known:
        target = target.rpartition(".")[0]
      if target and target != name:
        found.add(target)
  return found


def import_graph() -> dict[str, set[str]]:
  files = module_files()
  known = set(files)
  return {name: imported_modules(name, path, known) for name, path in files.items()}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import circle as a list of modules (first == last), or None."""
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(node: str) -> list[str] | None:
    state[node] = 1
    stack.append(node)
    for target in sorted(graph.get(node, ())):
      if state.get(target) == 1:
        return stack[stack.index(target):] + [target]
      if target not in state:
        circle = visit(target)
        if circle:
          return circle
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      circle = visit(node)
      if circle:
        return circle
  return None


def test_no_import_circle():
  circle = find_circle(import_graph())
  assert circle is None, "import circle: " + " -> ".join(circle)


def test_rcn_jax_imports_data_prep_only_through_the_boundary():
  crossings = []
  for name, targets in import_graph().items():
    if not name.startswith("rcn_jax"):
      continue
    for target in sorted(t for t in targets if t.split(".")[0] == "data_prep"):
      allowed = [module for module in DATA_PREP_BOUNDARY if target == module or target.startswith(module + ".")]
      importers = DATA_PREP_BOUNDARY[allowed[0]] if allowed else set()
      if not allowed or (importers is not None and name not in importers):
        crossings.append(f"{name} -> {target}")
  assert not crossings, "rcn_jax reaches into data_prep outside the boundary: " + ", ".join(crossings)


def test_circle_finder_finds_a_planted_circle():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert find_circle(graph) == ["a", "b", "c", "a"]
  assert find_circle({"a": {"b"}, "b": set()}) is None


def test_import_reader_sees_lazy_and_relative_imports(tmp_path):
  module = tmp_path / "mod.py"
  module.write_text("from . import sibling\n\ndef f():\n  from pkg.deep import thing\n  import pkg.other\n")
  known = {"pkg", "pkg.sibling", "pkg.deep", "pkg.other", "pkg.mod"}
  assert imported_modules("pkg.mod", module, known) == {"pkg.sibling", "pkg.deep", "pkg.other"}


def test_no_module_is_over_the_size_limit():
  long = {name: len(path.read_text().splitlines()) for name, path in module_files().items()}
  assert not {n: c for n, c in long.items() if c > MAX_LINES}, f"modules over {MAX_LINES} lines"
