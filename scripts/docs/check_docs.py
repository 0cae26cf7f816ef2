#!/usr/bin/python3
"""check_docs.py: runs the commands that README.md and docs/*.md show, marked as such, and checks
that the doc shows what they print today; --write puts today's output into the docs instead.

A marked region is an HTML comment (invisible when the Markdown is rendered), the text to
check, and an end comment:

    <!-- docs-check NAME
    run: mpirun -np 4 --oversubscribe build/bin/nupipe train configs/tiny.toml --set run.dir=runs/x
    elide: step +\\d+/
    -->
    ```
    ... what the command prints ...
    ```
    <!-- docs-check end -->

Keys (one per line, `run` and `setup` may repeat):
  run: CMD      a command whose output (stdout and stderr) is the region's content; without a
                run line, the region's fenced block starts with the command itself, as a user
                types it (`$ nupipe plan ...`, `\\` continuing a line)
  setup: CMD    a command run first, its output not compared
  exit: N       the exit code the last command must give (default 0)
  match: all    (default) the region shows every output line, in order, but for the lines that
                `elide` matches and those a `...` line stands for
  match: excerpt  the region shows some output lines, in order
  match: config-keys  the key tables of the page (`## [section]`, then `| \`key\` | type |
                default |`) against the effective configuration a run writes (`toml: PATH`):
                the same keys, and the defaults equal (keys in `ignore: a.b, c.d` set by the run)
  match: smoke  the region is a list of commands: each must exit 0 when run as written, with
                `quick` added to every `nupipe train` so it stays quick
  quick: FLAGS  (smoke) what is added (default: --set train.steps=2 --set checkpoint.every=0;
                `none`: nothing, the commands run exactly as written)
  elide: REGEX  output lines the region may leave out (repeatable)
  mask: REGEX   more text to ignore when comparing, beside the rules in MASKS (repeatable)
  slow: yes     checked only with --all (figures too costly for the test suite)

Every command runs with bash in a fresh scratch directory that looks like a clone: `build`
links to the build, `configs`, `scripts`, `tests`, `docs` and `README.md` to the source tree,
`build/bin` is on PATH, and as root Open MPI is allowed to run as root. Regions with the same
`scratch: NAME` in one file share one directory (in file order). Figures that depend on the
machine or the clock (times, rates, dates, absolute paths, threads per rank, bubble, MB/s,
library versions) are masked by MASKS; every other figure must be equal to the digit.

usage: check_docs.py [--build DIR] [--write [--refresh]] [--all] [--only NAME[,NAME]] [--keep]
                     [FILE.md ...]
exit: 0 every region matches (or was rewritten), 1 a mismatch or a failing command, 2 usage
"""
import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THIS = os.path.relpath(os.path.abspath(__file__), ROOT)

# (regex, replacement): what varies from run to run or machine to machine.
MASKS = [
    (r"^\[\d\d:\d\d:\d\d\] ", "[hh:mm:ss] "),
    (r"\d+(\.\d+)?k? tok/s", "# tok/s"),
    (r"\d+(\.\d+)? ms/step", "# ms/step"),
    (r"elapsed [0-9hms.]+", "elapsed #"),
    (r"ETA [0-9hms.]+", "ETA #"),
    (r"bubble \d+%", "bubble #%"),
    (r"\d+ threads? per rank", "# threads per rank"),
    (r"in \d+(\.\d+)? s \(\d+(\.\d+)? [kMG]?B/s\)", "in # s (# MB/s)"),
    (r"read back in \d+(\.\d+)? s", "read back in # s"),
    (r"\d+(\.\d+)? s in all = \d+(\.\d+)?% of the run's \d+(\.\d+)? s",
     "# s in all = #% of the run's # s"),
    (r"\d{8}-\d{6}", "YYYYMMDD-HHMMSS"),
    (r"(?<![\w.])/[^\s:,;()]*/(runs/)", r"\1"),  # an absolute path up to runs/
    (r"(^|\] )gemm: .*", r"\1gemm: #"),  # the libraries' versions and the CPU's instructions
    (r"since \S+ \S+", "since #"),
]
# A figure: digits standing alone (not inside a name such as pp2_dp2 or step_00000100).
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(\.\d+)?([eE][-+]?\d+)?(?!\w)")
ELISION = re.compile(r"^\s*(\[\.\.\.\]|\.\.\.|…)\s*$")


class Region:
    def __init__(self, path, name, keys, start, end, body_start, body_end, fenced):
        self.path, self.name, self.keys = path, name, keys
        self.start, self.end = start, end  # line indices of the opening and closing comments
        self.body_start, self.body_end = body_start, body_end  # the compared lines [start, end)
        self.fenced = fenced

    def key(self, k, default=None):
        v = self.keys.get(k)
        return v[-1] if v else default

    def where(self):
        return "%s:%d [%s]" % (os.path.relpath(self.path, ROOT), self.start + 1, self.name)


def parse(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    regions, i = [], 0
    while i < len(lines):
        m = re.match(r"^<!-- docs-check (\S+)\s*$", lines[i])
        if not m or m.group(1) == "end":
            i += 1
            continue
        start, keys, i = i, {}, i + 1
        while i < len(lines) and lines[i].strip() != "-->":
            k, sep, v = lines[i].partition(":")
            if not sep:
                sys.exit("%s:%d: '%s' is not KEY: VALUE" % (path, i + 1, lines[i]))
            keys.setdefault(k.strip(), []).append(v.strip())
            i += 1
        head_end = i
        while i < len(lines) and lines[i].strip() != "<!-- docs-check end -->":
            i += 1
        if i == len(lines):
            sys.exit("%s:%d: docs-check %s has no '<!-- docs-check end -->'" %
                     (path, start + 1, m.group(1)))
        body = (head_end + 1, i)
        inner = [j for j in range(*body) if lines[j].strip()]
        fenced = bool(inner) and lines[inner[0]].startswith("```") and \
            lines[inner[-1]].startswith("```") and inner[0] != inner[-1]
        if fenced:
            body = (inner[0] + 1, inner[-1])
        regions.append(Region(path, m.group(1), keys, start, i, body[0], body[1], fenced))
        i += 1
    return lines, regions


def mask(line, extra=()):
    line = line.rstrip()
    for rx, rep in MASKS:
        line = re.sub(rx, rep, line)
    for rx in extra:
        line = re.sub(rx, "#", line)
    return line


def skeleton(masked):
    return " ".join(NUMBER.sub("#", masked).split())


def first_number(masked):
    m = NUMBER.search(masked)
    return m.group(0) if m else ""


def split_commands(body):
    """`$ cmd \\` lines at the top of a block: the commands, and the output lines after them."""
    cmds, i = [], 0
    while i < len(body) and body[i].startswith("$ "):
        cmd = body[i][2:]
        while cmd.endswith("\\") and i + 1 < len(body):
            i += 1
            cmd = cmd[:-1].rstrip() + " " + body[i].strip()
        cmds.append(cmd)
        i += 1
    return cmds, i


def smoke_commands(body):
    """Commands of a shell block, one per logical line (comments dropped, `\\` continued)."""
    cmds, cur = [], ""
    for line in body:
        line = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if not line and not cur:
            continue
        if line.endswith("\\"):
            cur += line[:-1].strip() + " "
            continue
        cur += line.strip()
        if cur:
            cmds.append(cur)
        cur = ""
    return cmds


QUICK = "--set train.steps=2 --set checkpoint.every=0"


def quick(cmd, extra):
    """A `nupipe train` command with `extra` added (two steps by default): the command as
    written, kept quick."""
    if extra and re.search(r"(^|[\s/])nupipe train\b", cmd) and "--help" not in cmd:
        return cmd + " " + extra
    return cmd


class Scratch:
    """A directory that looks like a fresh clone with a build: build, configs, scripts, tests."""

    def __init__(self, build, keep):
        self.dir = tempfile.mkdtemp(prefix="nupipe-docs-")
        self.keep = keep
        os.symlink(build, os.path.join(self.dir, "build"))
        for d in ("configs", "scripts", "tests", "docs", "README.md"):
            os.symlink(os.path.join(ROOT, d), os.path.join(self.dir, d))
        self.env = dict(os.environ)
        self.env["PATH"] = os.path.join(self.dir, "build", "bin") + os.pathsep + self.env["PATH"]
        if os.geteuid() == 0:  # Open MPI refuses root unless told twice
            self.env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    def run(self, cmd, timeout):
        try:
            p = subprocess.run(["bash", "-c", cmd], cwd=self.dir, env=self.env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=timeout)
            out = p.stdout.replace(self.dir + "/", "").replace(self.dir, ".")
            return p.returncode, out
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return 124, out + "\n(timed out after %d s)" % timeout

    def close(self):
        if self.keep:
            print("  scratch kept: " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def align(doc, out, extra, elide, all_lines):
    """Matches the doc's lines to the output's, in order (the same masked text, else the same
    words with the same first figure, else the same words, else the most similar line). Returns
    the problems, as text, and the doc regenerated from the output with the same selection of
    lines (plus the lines it lacks where it must show every line)."""
    mo = [mask(l, extra) for l in out]
    so = [skeleton(l) for l in mo]
    fo = [first_number(l) for l in mo]
    problems, pairs, p = [], [], 0
    for d in doc:
        if ELISION.match(d):
            pairs.append("...")
            continue
        md = mask(d, extra)
        sd, fd = skeleton(md), first_number(md)
        j = next((j for j in range(p, len(out)) if mo[j] == md), None)
        if j is None:
            j = next((j for j in range(p, len(out)) if so[j] == sd and fo[j] == fd), None)
        if j is None:
            j = next((j for j in range(p, len(out)) if so[j] == sd), None)
        if j is None:  # the line's words changed too: the most similar line, if any is close
            close = [(difflib.SequenceMatcher(None, sd, so[j]).ratio(), j)
                     for j in range(p, len(out))]
            close = [(r + (0.5 if fo[j] == fd else 0), -j) for r, j in close if r >= 0.6]
            j = -max(close)[1] if close else None
        pairs.append(j)
        if j is None:
            problems.append("the doc shows a line the output does not have:\n    doc:    " + d)
            continue
        if mo[j] != md:
            problems.append(figure_diff(d, out[j], md, mo[j]))
        p = j + 1
    # Output lines the doc leaves out: allowed under a '...' and where `elide` says.
    new, shown, prev, gap = [], set(), -1, False
    for i, j in enumerate(pairs):
        if j == "...":
            gap = True
            new.append(doc[i])
            continue
        if j is None:
            continue
        for k in range(prev + 1, j):
            if not gap and all_lines and not any(re.search(e, out[k]) for e in elide):
                problems.append("the output has a line the doc does not show:\n    output: " +
                                out[k])
                new.append(out[k])
        new.append(out[j])  # one run's lines throughout: times and dates consistent
        shown.add(j)
        prev, gap = j, False
    if all_lines and not gap:
        for k in range(prev + 1, len(out)):
            if not any(re.search(e, out[k]) for e in elide):
                problems.append("the output has a line the doc does not show:\n    output: " +
                                out[k])
                new.append(out[k])
    return problems, new


def figure_diff(doc_line, out_line, md, mo):
    na = [m.group(0) for m in NUMBER.finditer(md)]
    nb = [m.group(0) for m in NUMBER.finditer(mo)]
    changed = [x + " -> " + y for x, y in zip(na, nb) if x != y]
    text = "a figure differs:\n    doc:    %s\n    output: %s" % (doc_line, out_line)
    if changed and len(na) == len(nb):
        text += "\n    (" + ", ".join(changed[:8]) + ")"
    return text


def check_region(r, lines, scratch, timeout):
    """Runs a region's commands; returns (problems, regenerated body lines or None)."""
    body = lines[r.body_start:r.body_end]
    extra, elide = r.keys.get("mask", []), r.keys.get("elide", [])
    mode = r.key("match", "all")
    for cmd in r.keys.get("setup", []):
        rc, out = scratch.run(cmd, timeout)
        if rc != 0:
            return ["setup command failed (exit %d): %s\n%s" % (rc, cmd, tail(out))], None
    if mode == "smoke":
        problems = []
        extra = r.key("quick", QUICK)
        extra = "" if extra == "none" else extra
        for cmd in smoke_commands(body):
            rc, out = scratch.run(quick(cmd, extra), timeout)
            if rc != 0:
                problems.append("exit %d from the command as written:\n    %s\n%s" %
                                (rc, quick(cmd, extra), tail(out)))
        return problems, None
    if mode == "config-keys":
        return check_config_keys(r, lines, scratch, timeout), None
    cmds = r.keys.get("run", [])
    head = 0
    if not cmds:
        cmds, head = split_commands(body)
        if not cmds:
            return ["no `run:` key and no `$ command` line at the top of the block"], None
    out, rc = "", 0
    for cmd in cmds:
        rc, o = scratch.run(cmd, timeout)
        out += o
    want = int(r.key("exit", "0"))
    if rc != want:
        return ["exit %d, the doc expects %d, from: %s\n%s" % (rc, want, cmds[-1], tail(out))], None
    out_lines = out.rstrip("\n").split("\n") if out.strip() else []
    problems, new = align(body[head:], out_lines, extra, elide, mode == "all")
    return problems, body[:head] + new


def documented_keys(lines):
    """{section.key: default text} from the key tables under `## [section]` headings."""
    keys, section = {}, None
    for line in lines:
        m = re.match(r"^##+ \[([\w.]+)\]", line)
        if m or line.startswith("## "):
            section = m.group(1) if m else None
            continue
        m = re.match(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|", line)
        if m and section:
            keys[section + "." + m.group(1)] = m.group(2).strip()
    return keys


def flatten(table, prefix=""):
    out = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def check_config_keys(r, lines, scratch, timeout):
    """match: config-keys: the keys and defaults this doc's tables give against the effective
    configuration a run writes (`toml:`), every key on both sides."""
    import tomllib
    for cmd in r.keys.get("run", []):
        rc, out = scratch.run(cmd, timeout)
        if rc != 0:
            return ["exit %d from: %s\n%s" % (rc, cmd, tail(out))]
    with open(os.path.join(scratch.dir, r.key("toml")), "rb") as f:
        effective = flatten(tomllib.load(f))
    doc = documented_keys(lines)
    ignore = set(x.strip() for v in r.keys.get("ignore", []) for x in v.split(","))
    problems = []
    for k in sorted(set(effective) - set(doc)):
        problems.append("the effective configuration has %s = %r, which this page does not "
                        "document" % (k, effective[k]))
    for k in sorted(set(doc) - set(effective)):
        if doc[k] != "none":  # a key without a default (a table) is not in the effective file
            problems.append("this page documents %s, which the effective configuration does "
                            "not have" % k)
    for k in sorted(set(doc) & set(effective) - ignore):
        text = doc[k].strip("`")
        try:
            want = tomllib.loads("v = " + text)["v"]
        except tomllib.TOMLDecodeError:
            problems.append("the default of %s is shown as %s, not a TOML value" % (k, doc[k]))
            continue
        got = effective[k]
        same = want == got if not isinstance(got, float) else \
            isinstance(want, (int, float)) and float(want) == got
        if not same:
            problems.append("this page gives %s the default %s; a run with an empty config "
                            "uses %r" % (k, doc[k], got))
    return problems


def tail(text, n=15):
    t = text.rstrip("\n").split("\n")
    return "\n".join("    | " + l for l in t[-n:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="Markdown files (default: README.md docs/*.md)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="build directory with bin/nupipe (default: build)")
    ap.add_argument("--write", action="store_true", help="rewrite the regions with today's output")
    ap.add_argument("--refresh", action="store_true",
                    help="with --write, rewrite every region checked, also those whose only "
                         "differences are masked (times, rates): one run's output throughout")
    ap.add_argument("--all", action="store_true", help="also the regions marked slow")
    ap.add_argument("--only", default="", help="comma-separated region names")
    ap.add_argument("--list", action="store_true", help="list the regions and exit")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directories")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per command")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    if not a.list and not os.access(os.path.join(build, "bin", "nupipe"), os.X_OK):
        print("error: %s/bin/nupipe does not exist\nHINT: build it (scripts/build.sh) or pass "
              "--build DIR" % build)
        return 2
    files = [os.path.abspath(f) for f in a.files] or \
        [os.path.join(ROOT, "README.md")] + sorted(
            os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs"))
            if f.endswith(".md"))
    only = set(x for x in a.only.split(",") if x)
    failed, checked, skipped = [], 0, 0
    for path in files:
        lines, regions = parse(path)
        regions = [r for r in regions if not only or r.name in only]
        if a.list:
            for r in regions:
                print("%-40s %s%s" % (r.where(), r.key("match", "all"),
                                      "  (slow)" if r.key("slow") == "yes" else ""))
            continue
        scratches, rewrites = {}, []
        for r in regions:
            if r.key("slow") == "yes" and not a.all and not only:
                skipped += 1
                continue
            name = r.key("scratch")
            if name is None or name not in scratches:
                s = Scratch(build, a.keep)
                if name is not None:
                    scratches[name] = s
            else:
                s = scratches[name]
            problems, new = check_region(r, lines, s, a.timeout)
            if name is None:
                s.close()
            checked += 1
            rewrite = a.write and new is not None and (problems or a.refresh)
            status = "rewritten" if rewrite else ("ok" if not problems else "FAILED")
            print("%-8s %s" % (status, r.where()), flush=True)
            if problems and (not a.write or new is None):
                failed.append((r, new is not None))
            if problems:
                for pr in problems[:20]:
                    print("  " + pr.replace("\n", "\n  "))
                if len(problems) > 20:
                    print("  ... and %d more" % (len(problems) - 20))
            if (problems or a.refresh) and a.write and new is not None:
                rewrites.append((r, new))
        for s in scratches.values():
            s.close()
        for r, new in sorted(rewrites, key=lambda x: -x[0].body_start):
            lines[r.body_start:r.body_end] = new
        if rewrites:
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines))
    if a.list:
        return 0
    print("%d region(s) checked, %d failed%s" %
          (checked, len(failed), ", %d slow one(s) left out (--all)" % skipped if skipped else ""))
    if failed:
        names = ",".join(r.name for r, writable in failed if writable)
        if names:
            print("If the change in behaviour is meant, regenerate the docs with:\n"
                  "  /usr/bin/python3 %s --build %s --write --only %s" %
                  (THIS, os.path.relpath(build, ROOT) if build.startswith(ROOT) else build,
                   names))
        for r, writable in failed:
            if not writable:
                print("%s: --write cannot regenerate this one; fix the doc (or the command) by "
                      "hand" % r.where())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
