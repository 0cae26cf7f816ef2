"""fault_common.py: what the fault scripts share (outcome_cases.py, watchdog_cases.py,
ckpt_harness.py and through it checkpoint_cases.py): the MPI environment, failing a case,
--set lists and mpirun command lines, running with a time limit, waiting on a run.dir's
metrics, finding a job's ranks, fresh work directories, and a case's entry point.
"""
import os
import shutil
import subprocess
import time

# Open MPI as root and over more ranks than cores.
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def sets(items):
    """["a=1", "b=2"] -> ["--set", "a=1", "--set", "b=2"]"""
    out = []
    for s in items:
        out += ["--set", s]
    return out


def mpi_cmd(mpirun, mpiflags, np_, argv, flags=()):
    """mpirun's command line: its flags from the test's command line, then this case's, then
    -np and the ranks' argv."""
    return [mpirun] + list(mpiflags) + list(flags) + ["-np", str(np_)] + list(argv)


def run(cmd, timeout=180, expect=None):
    """Runs `cmd` to its end (output and errors together in .stdout), failing the case when it
    outlives `timeout` (subprocess.TimeoutExpired) or exits other than `expect` (when given)."""
    p = subprocess.run(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if expect is not None and p.returncode != expect:
        raise Fail("exit %d (expected %d) from:\n  %s\n---- output (tail) ----\n%s" %
                   (p.returncode, expect, " ".join(cmd), p.stdout[-4000:]))
    return p


def wait_for(pred, timeout, what):
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise Fail("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.01)


def metrics_lines(run_dir):
    """Lines in run_dir/metrics.jsonl so far (0 before it exists)."""
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            return f.read().count("\n")
    except OSError:
        return 0


def job_pids(run_dir):
    """{rank: pid} of the live (not zombie) nupipe ranks of the job on `run_dir`, found by the
    run.dir=... on their command line; one started without mpirun counts as rank 0."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            if os.path.basename(argv[0]) != b"nupipe" or \
                    ("run.dir=" + run_dir).encode() not in argv:
                continue
            with open("/proc/%s/stat" % pid) as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    continue
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            rank = env.get(b"OMPI_COMM_WORLD_RANK") or env.get(b"PMIX_RANK")
            out[int(rank) if rank is not None else 0] = int(pid)
        except (OSError, ValueError):
            continue
    return out


def fresh(work, name):
    """An empty directory work/name (whatever was there removed)."""
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def exit_code_wrapper(path, codes):
    """Writes `path`, a script that runs its arguments and appends "RANK CODE UNIX_TIME" to
    `codes` when they end. One whose child did not exit 5 then sleeps on instead of exiting:
    a wrapper that exits after its child was killed or stopped lets mpirun end the job
    ("exited improperly"), which a peer-failure case must do without."""
    with open(path, "w") as f:
        f.write('#!/bin/sh\n"$@"\nrc=$?\necho "$OMPI_COMM_WORLD_RANK $rc $(date +%%s.%%N)" >> %s\n'
                '[ $rc -ne 5 ] && exec sleep 600\nexit $rc\n' % codes)
    os.chmod(path, 0o755)
    return path


def run_case(namespace, case, work):
    """Runs case_<case> from `namespace` (a script's globals()): exit 0 when it passes, 1 when
    it fails (the reason printed), 2 for an unknown case (the known ones listed)."""
    os.makedirs(work, exist_ok=True)
    fn = namespace.get("case_" + case)
    if fn is None:
        print("unknown case %s; cases: %s" % (case, ", ".join(
            n[5:] for n in sorted(namespace) if n.startswith("case_"))))
        return 2
    try:
        fn()
    except Fail as e:
        print("FAIL: %s" % e)
        return 1
    return 0
