"""sanitizer_env.py: how a sanitized nupipe is run (the environment: leak checks with full stack
unwinding so that lsan.supp's library entries match, Open MPI's components kept loaded so their
frames have names) and how its reports are found in a process's output. Shared by
sanitize_cycle.py and the fuzzer (tests/fuzz/fuzz.py)."""
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
SUPPRESSIONS = os.path.join(HERE, "lsan.supp")


def sanitizer_env(suppressions=SUPPRESSIONS, base=None):
    env = dict(os.environ if base is None else base)
    env.update({
        "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_rmaps_base_oversubscribe": "1",
        # fast_unwind_on_malloc=0: the frame-pointer unwinder stops at the first library built
        # without frame pointers, leaving one-frame stacks no suppression can match.
        "ASAN_OPTIONS": "detect_leaks=1:fast_unwind_on_malloc=0:abort_on_error=0",
        "UBSAN_OPTIONS": "print_stacktrace=1",
        "LSAN_OPTIONS": "suppressions=" + suppressions,
        # Components unloaded at MPI_Finalize would leave their leaks' frames unnamed.
        "OMPI_MCA_mca_base_component_disable_dlclose": "1",
    })
    return env


_REPORT = re.compile(r"^(==\d+==ERROR: (Address|Leak)Sanitizer|.*: runtime error: |"
                     r"SUMMARY: (Address|Undefined|Leak)\w*Sanitizer)", re.M)


def sanitizer_reports(text):
    """The sanitizer reports in a process's output, each as the 30 lines from its first line."""
    lines = text.splitlines()
    out = []
    for m in _REPORT.finditer(text):
        if m.group(0).startswith("SUMMARY"):
            continue
        first = text.count("\n", 0, m.start())
        out.append("\n".join(lines[first:first + 30]))
    return out
