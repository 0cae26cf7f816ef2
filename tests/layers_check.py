#!/usr/bin/env python3
"""layers_check.py: every project #include points at the file's own layer or one to its left.

The layers, left to right (docs/architecture.md):
    runtime -> parallel/session -> parallel/comm -> optim -> checkpoint -> launcher
with parallel/pipeline (which may include runtime and the Communicator interface,
parallel/comm/communicator.h, and nothing else of parallel/) and parallel/plan (runtime and
pipeline) beside them: planning and the executor need no MPI. Prints every include that breaks
the order, with the file and line, and exits 1 if there is one.
    layers_check.py [SOURCE_ROOT]
    layers_check.py --selftest   (a small tree with one upward include must fail, and pass fixed)
"""
import os
import re
import sys

ORDER = ["runtime", "parallel/session", "parallel/comm", "optim", "checkpoint", "launcher"]
# What each layer may include, as path prefixes (files or folders).
ALLOWED = {layer: ORDER[: i + 1] for i, layer in enumerate(ORDER)}
ALLOWED["parallel/pipeline"] = ["runtime", "parallel/pipeline", "parallel/comm/communicator.h"]
ALLOWED["parallel/plan"] = ["runtime", "parallel/pipeline", "parallel/plan"]
for upper in ("optim", "checkpoint", "launcher"):
    ALLOWED[upper] = ALLOWED[upper] + ["parallel/pipeline", "parallel/plan"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(path):
    """The layer a path belongs to: the longest prefix in ALLOWED, or None."""
    best = None
    for layer in ALLOWED:
        if path == layer or path.startswith(layer + "/"):
            if best is None or len(layer) > len(best):
                best = layer
    return best


def within(target, prefixes):
    return any(target == p or target.startswith(p + "/") for p in prefixes)


def selftest():
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as root:
        def put(path, text):
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            with open(os.path.join(root, path), "w", encoding="utf-8") as f:
                f.write(text)
        put("runtime/tensor.h", "#include <vector>\n")
        put("parallel/comm/communicator.h", '#include "runtime/tensor.h"\n')
        put("parallel/comm/topology.h", '#include "parallel/comm/communicator.h"\n')
        put("parallel/pipeline/executor.h", '#include "parallel/comm/communicator.h"\n')
        put("parallel/plan/planner.cpp", '#include "parallel/pipeline/executor.h"\n'
            '#include "parallel/comm/topology.h"\n')
        run = lambda: subprocess.run([sys.executable, __file__, root], capture_output=True,
                                     text=True)
        bad = run()
        if bad.returncode != 1 or "planner.cpp:2: includes parallel/comm/topology.h" \
                not in bad.stdout or bad.stdout.count("includes") != 1:
            print("selftest: the upward include was not reported alone:\n" + bad.stdout)
            return 1
        put("parallel/plan/planner.cpp", '#include "parallel/pipeline/executor.h"\n')
        good = run()
        if good.returncode != 0:
            print("selftest: a clean tree was refused:\n" + good.stdout)
            return 1
    print("layers_check selftest: the upward include is found, the clean tree passes")
    return 0


def main():
    if sys.argv[1:] == ["--selftest"]:
        return selftest()
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    problems, files = [], 0
    for top in ("runtime", "parallel", "optim", "checkpoint", "launcher"):
        for dirpath, _, names in os.walk(os.path.join(root, top)):
            for name in sorted(names):
                if not name.endswith((".h", ".cpp", ".cu", ".cuh")):
                    continue
                path = os.path.relpath(os.path.join(dirpath, name), root)
                layer = layer_of(path)
                if layer is None:
                    problems.append(f"{path}: in no layer (a folder docs/architecture.md "
                                    "does not list)")
                    continue
                files += 1
                with open(os.path.join(root, path), encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m or layer_of(m.group(1)) is None:
                            continue  # a system header, or a file beside it
                        if not within(m.group(1), ALLOWED[layer]):
                            problems.append(f"{path}:{n}: includes {m.group(1)}, which "
                                            f"{layer}/ may not (it may include "
                                            f"{', '.join(ALLOWED[layer])})")
    for p in problems:
        print(p)
    if problems:
        print(f"layers_check: {len(problems)} include(s) against the layer order")
        return 1
    print(f"layers_check: {files} files, every include within its layer or to its left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
