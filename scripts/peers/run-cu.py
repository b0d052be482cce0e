#!/usr/bin/env python3
"""run-cu.py URL [LABEL] — libiscsi's conformance suite (iscsi-test-cu) against one LUN of any
target, one suite at a time, so a hang or crash costs one suite's remainder and not the run.

  URL    iscsi://127.0.0.1:PORT/IQN/LUN. The LUN is scratch: -d lets tests write and destroy data.
  LABEL  names the output folder (default: target)

Each suite runs as `iscsi-test-cu -d -i INIT1 -I INIT2 -t SUITE URL MPATH_URL`, watched: a run
whose output has not grown for IDLE_TIMEOUT seconds, or that outlives SUITE_TIMEOUT, is killed
(its own process group, nothing else). The test it was in is then run alone (TEST_TIMEOUT); if
it hangs again it is recorded INCOMPLETE. The suite's tests that had not reported yet run again
as one batch (a comma list for -t), and so on until every test has a result. After every run the
target is probed with iscsi-inq; a target that stopped answering is logged (and RESTART_CMD run).

Knobs (environment, defaults in brackets):
  ONLY           regex (Python, searched) on FAMILY.SUITE names to run [all suites]
  SUITE_TIMEOUT  [180]  seconds for one suite or batch run
  IDLE_TIMEOUT   [20]   seconds without output that count as a hang
  TEST_TIMEOUT   [30]   seconds for a test run alone
  TOTAL_TIMEOUT  [2400] overall deadline; suites not started by then are NOTRUN
  INIT1 / INIT2  initiator names for -i / -I [iqn.2026-11.io.palisade.test:init-a / init-b]
  MPATH_URL      second path for the MultipathIO suite [URL]; "none" gives one path only
  EXTRA_ARGS     more iscsi-test-cu arguments, split on spaces (e.g. "-S" allows SANITIZE)
  PRE_SUITE_CMD  shell command before every suite (e.g. "./peers.sh restart istgt" to keep one
                 suite's leftovers, such as a RESERVE(6), from failing the next)
  RESTART_CMD    shell command run when the target stopped answering
                 (both commands run in scripts/peers/)
  OUTROOT        [PEERS_STATE/results/conformance] where LABEL-YYYYmmdd-HHMMSS/ is created

Output folder: results.tsv (test, status, note; see cu_results.py), summary.txt (also printed),
events.log (each run: duration, exit, kills, target probes), meta.txt (versions, knobs),
listing.txt (iscsi-test-cu -l), raw/<run>.log (iscsi-test-cu's own output). The last line
printed is "output: FOLDER". Exit 0 once results.tsv is complete (whatever the tests said),
2 when the run could not be made (no iscsi-test-cu, no suite selected, bad knobs).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ inside the repository
import cu_results  # noqa: E402


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        sys.exit(f"run-cu.py: {name} must be a whole number of seconds")


def fail(msg):
    print(f"run-cu.py: {msg}", file=sys.stderr)
    sys.exit(2)


if len(sys.argv) not in (2, 3) or not sys.argv[1].startswith("iscsi://"):
    print(__doc__, file=sys.stderr)
    sys.exit(2)
URL = sys.argv[1]
LABEL = sys.argv[2] if len(sys.argv) == 3 else "target"
SUITE_TIMEOUT = env_int("SUITE_TIMEOUT", 180)
IDLE_TIMEOUT = env_int("IDLE_TIMEOUT", 20)
TEST_TIMEOUT = env_int("TEST_TIMEOUT", 30)
TOTAL_TIMEOUT = env_int("TOTAL_TIMEOUT", 2400)
INIT1 = os.environ.get("INIT1", "iqn.2026-11.io.palisade.test:init-a")
INIT2 = os.environ.get("INIT2", "iqn.2026-11.io.palisade.test:init-b")
MPATH_URL = os.environ.get("MPATH_URL", URL)
EXTRA_ARGS = os.environ.get("EXTRA_ARGS", "").split()
ONLY = os.environ.get("ONLY", "")
STATE = os.environ.get("PEERS_STATE") or os.path.join(
    os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "palisade", "peers")
OUTROOT = os.environ.get("OUTROOT") or os.path.join(STATE, "results", "conformance")

if not (shutil.which("iscsi-test-cu") and shutil.which("iscsi-inq")):
    # Debian's libiscsi-bin, installed the way every script here installs what it needs.
    subprocess.run(["bash", "-c", f". '{HERE}/lib.sh' && ensure_debs libiscsi-bin"])
for tool in ("iscsi-test-cu", "iscsi-inq"):
    if not shutil.which(tool):
        fail(f"{tool} not found and libiscsi-bin could not be installed")
try:
    only = re.compile(ONLY)
except re.error as e:
    fail(f"ONLY is not a regex: {e}")

OUT = os.path.join(OUTROOT, f"{LABEL}-{time.strftime('%Y%m%d-%H%M%S')}")
RAW = os.path.join(OUT, "raw")
os.makedirs(RAW, exist_ok=True)
START = time.monotonic()
DEADLINE = START + TOTAL_TIMEOUT
events = open(os.path.join(OUT, "events.log"), "a", buffering=1)


def event(msg, loud=False):
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    events.write(line + "\n")
    if loud:
        print(line, file=sys.stderr, flush=True)


listing = subprocess.run(["iscsi-test-cu", "-l"], capture_output=True, text=True).stdout
with open(os.path.join(OUT, "listing.txt"), "w") as f:
    f.write(listing)
# The listing repeats every test under ALL.*; FAMILY.SUITE.TEST under SCSI/iSCSI is the truth.
TESTS = [t for t in listing.split() if re.fullmatch(r"(SCSI|iSCSI)\.[^.]+\.[^.]+", t)]
SUITES = [s for s in dict.fromkeys(t.rsplit(".", 1)[0] for t in TESTS) if only.search(s)]
if not SUITES:
    fail(f"no suite of iscsi-test-cu -l matches ONLY={ONLY!r}")

version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libiscsi-bin"], capture_output=True, text=True)
with open(os.path.join(OUT, "meta.txt"), "w") as f:
    f.write(f"url={URL}\nlabel={LABEL}\nmpath_url={MPATH_URL}\ninit1={INIT1}\ninit2={INIT2}\n"
            f"only={ONLY}\nextra_args={' '.join(EXTRA_ARGS)}\nsuites={len(SUITES)}\n"
            f"timeouts: suite={SUITE_TIMEOUT} idle={IDLE_TIMEOUT} test={TEST_TIMEOUT} total={TOTAL_TIMEOUT}\n"
            f"pre_suite_cmd={os.environ.get('PRE_SUITE_CMD', '')}\nrestart_cmd={os.environ.get('RESTART_CMD', '')}\n"
            f"libiscsi-bin={version.stdout or 'unknown'}\nhost={os.uname().release}, {os.cpu_count()} cpus\n")


def stop_group(proc):
    """TERM, then KILL, to the process group of an iscsi-test-cu we started (its own session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=2)
            break
        except subprocess.TimeoutExpired:
            pass
    proc.wait()


# A TERM or hangup to the runner ends it like Ctrl-C does, so that run_cu's cleanup stops the
# iscsi-test-cu it started (which sits in a session of its own and would not see the signal).
signal.signal(signal.SIGTERM, signal.default_int_handler)
signal.signal(signal.SIGHUP, signal.default_int_handler)


def interrupted(kind, value, tb):
    if issubclass(kind, KeyboardInterrupt):
        print(f"run-cu.py: interrupted; no results.tsv, the logs so far are in {OUT}", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, tb)


sys.excepthook = interrupted


def run_cu(spec, timeout, log_name):
    """Runs iscsi-test-cu on one -t spec under the watchdog: (log text, how it ended)."""
    log_path = os.path.join(RAW, f"{log_name}.log")
    cmd = ["iscsi-test-cu", "-d", "-i", INIT1, "-I", INIT2, *EXTRA_ARGS, "-t", spec, URL]
    if MPATH_URL != "none":
        cmd.append(MPATH_URL)
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        size, grew = -1, t0
        ended = None
        try:
            while proc.poll() is None:
                time.sleep(0.25)
                now = time.monotonic()
                cur = os.path.getsize(log_path)
                if cur != size:
                    size, grew = cur, now
                if now - t0 >= timeout:
                    ended = f"killed after {timeout} s (run timeout)"
                elif now - grew >= IDLE_TIMEOUT:
                    ended = f"killed after {IDLE_TIMEOUT} s without output (hung)"
                if ended:
                    stop_group(proc)
                    break
        except KeyboardInterrupt:
            stop_group(proc)
            raise
    rc = proc.returncode
    if ended is None:
        ended = f"exit {rc}" if rc >= 0 else f"died of signal {-rc} ({signal.Signals(-rc).name})"
    event(f"run {log_name}: {ended}, {time.monotonic() - t0:.1f} s")
    with open(log_path, errors="replace") as f:
        return f.read(), ended


def target_answers():
    for attempt in range(2):
        try:
            if subprocess.run(["iscsi-inq", URL], capture_output=True, timeout=10).returncode == 0:
                return True
        except subprocess.TimeoutExpired:
            pass
        time.sleep(2)
    return False


def shell(what, cmd):
    r = subprocess.run(cmd, shell=True, cwd=HERE, capture_output=True, text=True)
    output = " | ".join((r.stdout + r.stderr).strip().splitlines())[-300:]
    event(f"{what} `{cmd}`: exit {r.returncode} {output}")


def check_target(after):
    if target_answers():
        return
    event(f"TARGET DOWN after {after}", loud=True)
    if os.environ.get("RESTART_CMD"):
        shell("RESTART_CMD", os.environ["RESTART_CMD"])
        event(f"target {'answers again' if target_answers() else 'still down'} after RESTART_CMD", loud=True)


results = {}  # test -> (status, note)


def record(suite, text, pending):
    """Takes the rows of a log for the pending tests; returns the test left INCOMPLETE, if any."""
    stuck = None
    for name, status, note in cu_results.parse(suite, text):
        if name not in pending:
            continue
        if status == "INCOMPLETE":
            stuck = stuck or name
        else:
            results[name] = (status, note)
            pending.remove(name)
    return stuck


for suite in SUITES:
    tests = [t for t in TESTS if t.rsplit(".", 1)[0] == suite]
    if time.monotonic() >= DEADLINE:
        for t in tests:
            results[t] = ("NOTRUN", "overall deadline (TOTAL_TIMEOUT) reached")
        continue
    if os.environ.get("PRE_SUITE_CMD"):
        shell("PRE_SUITE_CMD", os.environ["PRE_SUITE_CMD"])
        for _ in range(20):
            if target_answers():
                break
    pending = list(tests)
    text, ended = run_cu(suite, SUITE_TIMEOUT, suite)
    stuck = record(suite, text, pending)
    check_target(suite)
    batch = 0
    while pending:
        if time.monotonic() >= DEADLINE:
            for t in pending:
                results[t] = ("NOTRUN", "overall deadline (TOTAL_TIMEOUT) reached")
            break
        # The test the run was in when it ended (or the first one that never reported) alone.
        culprit = stuck or pending[0]
        alone_text, alone_ended = run_cu(culprit, TEST_TIMEOUT, culprit)
        record(suite, alone_text, [culprit])
        if culprit in results:
            event(f"{culprit} alone: {results[culprit][0]}")
        else:
            results[culprit] = ("INCOMPLETE", f"alone: {alone_ended}; in the batch: {ended}")
            event(f"{culprit} INCOMPLETE: {results[culprit][1]}", loud=True)
        pending.remove(culprit)
        check_target(culprit)
        if not pending:
            break
        batch += 1
        text, ended = run_cu(",".join(pending), SUITE_TIMEOUT, f"{suite}.rest{batch}")
        stuck = record(suite, text, pending)
        check_target(f"{suite} (rest {batch})")

rows = [(t, *results[t]) for t in TESTS if t in results]
with open(os.path.join(OUT, "results.tsv"), "w") as f:
    for row in rows:
        f.write("\t".join(row) + "\n")
event(f"done in {time.monotonic() - START:.0f} s")
events.close()
text = cu_results.summary(rows, LABEL, URL, os.path.join(OUT, "events.log"))
with open(os.path.join(OUT, "summary.txt"), "w") as f:
    f.write(text + "\n")
print(text)
print(f"output: {OUT}")
