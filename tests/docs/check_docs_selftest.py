"""check_docs_selftest.py: scripts/docs/check_docs.py against pages whose drift is known: a changed
figure, a line the output lost, a line the doc lacks, a failing command, a masked time, an
elision, an excerpt, --write. The commands are printf, so this runs in a second.

usage: check_docs_selftest.py CHECK_DOCS.py BUILD_DIR WORKDIR
"""
import os
import shutil
import subprocess
import sys

CHECK, BUILD, WORK = sys.argv[1:4]
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
failures, cases = [], [0]


def page(name, text):
    path = os.path.join(WORK, name + ".md")
    with open(path, "w") as f:
        f.write(text)
    return path


def check(path, *flags):
    p = subprocess.run(["/usr/bin/python3", CHECK, "--build", BUILD] + list(flags) + [path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def expect(what, cond, out):
    cases[0] += 1
    if not cond:
        failures.append("%s\n%s" % (what, out))


def region(body, keys):
    return "<!-- docs-check r\n%s\n-->\n```\n%s\n```\n<!-- docs-check end -->\n" % (keys, body)


OUT = r"printf '[10:00:00] step 1/4 | loss 5.5695 | 12.1k tok/s | 70 ms/step\n" \
      r"[10:00:01] step 2/4 | loss 4.1000 | 9.0k tok/s | 90 ms/step\n" \
      r"[10:00:02] done: final validation loss 1.3366\n'"
SAME = ("[09:12:13] step 1/4 | loss 5.5695 | 30.0k tok/s | 20 ms/step\n"
        "[09:12:14] step 2/4 | loss 4.1000 | 31.0k tok/s | 21 ms/step\n"
        "[09:12:15] done: final validation loss 1.3366")

# Times, rates and clock readings differ: masked, so it matches.
rc, out = check(page("same", region(SAME, "run: " + OUT)))
expect("masked fields must not fail", rc == 0, out)

# A loss changed in its last digit: fails, and names both figures.
rc, out = check(page("figure", region(SAME.replace("4.1000", "4.1001"), "run: " + OUT)))
expect("a changed figure must fail", rc == 1 and "4.1001 -> 4.1000" in out, out)
expect("the failure says how to regenerate", "--write --only r" in out, out)

# The doc lacks a line the output has: fails (match: all) ...
lacking = SAME.replace("[09:12:14] step 2/4 | loss 4.1000 | 31.0k tok/s | 21 ms/step\n", "")
rc, out = check(page("lacking", region(lacking, "run: " + OUT)))
expect("a line missing from the doc must fail", rc == 1 and "does not show" in out, out)
# ... unless `elide` allows it, or a '...' line stands for it, or the region is an excerpt.
for keys, body in (("run: %s\nelide: step +\\d+/" % OUT, lacking),
                   ("run: " + OUT, SAME.replace(
                       "[09:12:14] step 2/4 | loss 4.1000 | 31.0k tok/s | 21 ms/step", "...")),
                   ("run: %s\nmatch: excerpt" % OUT, lacking)):
    rc, out = check(page("allowed", region(body, keys)))
    expect("an allowed omission must pass (%s)" % keys.split("\n")[-1], rc == 0, out)

# The doc shows a line the output does not have: fails.
rc, out = check(page("extra", region(SAME + "\n[09:12:15] checkpoints: 4 saved", "run: " + OUT)))
expect("a line the output lost must fail", rc == 1 and "does not have" in out, out)

# A command that fails, or exits otherwise than `exit:` says: fails.
rc, out = check(page("exit", region(SAME, "run: false")))
expect("a failing command must fail", rc == 1 and "exit 1" in out, out)
rc, out = check(page("exit2", region("oops", "run: echo oops; exit 2\nexit: 2")))
expect("an expected exit code passes", rc == 0, out)
rc, out = check(page("smoke", "<!-- docs-check s\nmatch: smoke\n-->\n```sh\ntrue   # fine\n"
                     "false  # not fine\n```\n<!-- docs-check end -->\n"))
expect("a failing smoke command must fail", rc == 1 and "false" in out, out)

# --write puts today's figures into the page, after which it passes.
path = page("write", "Before.\n\n" + region(SAME.replace("4.1000", "9.9999"), "run: " + OUT) +
            "\nAfter.\n")
rc, out = check(path, "--write")
text = open(path).read()
expect("--write rewrites the figure", rc == 0 and "loss 4.1000" in text and "9.9999" not in text,
       out + text)
expect("--write keeps the prose around the region",
       text.startswith("Before.\n") and text.endswith("\nAfter.\n"), text)
rc, out = check(path)
expect("a rewritten page passes", rc == 0, out)

if failures:
    print("FAIL:\n" + "\n\n".join(failures))
    sys.exit(1)
print("PASS: %d cases" % cases[0])
