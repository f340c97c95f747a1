"""How `distxfer doctor` judges an engine probe from what its processes printed."""

from __future__ import annotations

from distxfer.engines.probe import ProbeResult, judge

SUMMARY = "horovod: 2 processes x 1 replica (gloo)"


def test_pieces_of_two_mpirun_ranks_on_one_line_are_two_answers():
    # What mpirun --tag-output wrote when rank 0's line and its newline came in two pieces.
    output = (
        f"[1,0]<stdout>:probe passed: {SUMMARY}[1,1]<stdout>:probe passed: {SUMMARY}\n"
        "[1,0]<stdout>:\n"
    )
    assert judge(0, output, expected=2) == ProbeResult(True, SUMMARY)


def test_a_process_that_did_not_answer_fails_the_probe_with_the_last_words_said():
    output = f"[1,0]<stdout>:probe passed: {SUMMARY}\n[1,1]<stderr>:gloo: connection refused\n"
    assert judge(0, output, expected=2) == ProbeResult(
        False, "exit status 0: gloo: connection refused"
    )


def test_a_failed_launch_is_reported_with_its_status_and_error():
    output = "[worker 1] horovod failed: ImportError: libmpi.so.40\n"
    verdict = judge(1, output, expected=2)
    assert not verdict.ok and verdict.detail.endswith("horovod failed: ImportError: libmpi.so.40")
