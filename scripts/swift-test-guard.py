#!/usr/bin/python3
"""Runs `swift test ...` with a per-test timeout and a verdict that cannot pass vacuously.

XCTest on Linux has no per-test time limit, so a hung test would hang CI. This wrapper reads XCTest's own
"Test Case '...' started/passed/failed/skipped" lines as they come; a test still running after --timeout seconds
has its name printed and the whole process group killed, and so does a run that prints nothing for --timeout
seconds outside a test case (a hang in a suite's set-up or tear-down, or at exit). It fails the run when any test failed, any test was
skipped (on this machine kind nothing may skip), nothing ran, or tests named with --require did not pass.

usage: swift-test-guard.py --timeout S --log FILE [--require NAME ...] -- swift test ...
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time

STARTED = re.compile(r"^Test Case '([^']+)' started")
ENDED = re.compile(r"^Test Case '([^']+)' (passed|failed|skipped)")
FAILED_LINE = re.compile(r": error: ")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, required=True, help="seconds one test may take")
    parser.add_argument("--log", required=True, help="where the whole output is kept")
    parser.add_argument("--require", action="append", default=[], help="a test that must have run and passed")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command")

    state = {"current": None, "since": 0.0, "timed_out": None, "last_output": time.monotonic()}
    lock = threading.Lock()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def watch():
        while process.poll() is None:
            time.sleep(1)
            with lock:
                name, since = state["current"], state["since"]
                if name and time.monotonic() - since > args.timeout:
                    state["timed_out"] = name
                elif not name and time.monotonic() - state["last_output"] > args.timeout:
                    state["timed_out"] = "the run (no output outside a test case)"
            if state["timed_out"]:
                sys.stdout.write(f"\nswift-test-guard: {state['timed_out']} ran longer than {args.timeout:.0f} s: "
                                 "killing the test run\n")
                sys.stdout.flush()
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return

    threading.Thread(target=watch, daemon=True).start()
    results: dict[str, str] = {}
    error_lines = 0
    with open(args.log, "w") as log:
        for raw in process.stdout:
            line = raw.decode(errors="replace")
            sys.stdout.write(line)
            log.write(line)
            with lock:
                state["last_output"] = time.monotonic()
            if m := STARTED.match(line):
                with lock:
                    state["current"], state["since"] = m.group(1), time.monotonic()
            elif m := ENDED.match(line):
                results[m.group(1)] = m.group(2)
                with lock:
                    state["current"] = None
            elif FAILED_LINE.search(line):
                error_lines += 1
    code = process.wait()
    sys.stdout.flush()

    problems = []
    if state["timed_out"]:
        problems.append(f"{state['timed_out']} timed out after {args.timeout:.0f} s")
    failed = sorted(n for n, r in results.items() if r == "failed")
    skipped = sorted(n for n, r in results.items() if r == "skipped")
    passed = sum(1 for r in results.values() if r == "passed")
    if failed:
        problems.append(f"{len(failed)} failed: {', '.join(failed)}")
    if skipped:
        problems.append(f"{len(skipped)} skipped (nothing may skip on this machine kind): {', '.join(skipped)}")
    if passed == 0:
        problems.append("no test ran")
    for name in args.require:
        if not any(n.endswith(name) and r == "passed" for n, r in results.items()):
            problems.append(f"{name} did not run and pass")
    if code != 0 and not problems:
        problems.append(f"swift test exited {code}" + (f" with {error_lines} error lines" if error_lines else ""))
    print(f"swift-test-guard: {passed} passed, {len(failed)} failed, {len(skipped)} skipped")
    for p in problems:
        print(f"swift-test-guard: FAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
