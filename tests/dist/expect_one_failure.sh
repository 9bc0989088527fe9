#!/usr/bin/env bash
# expect_one_failure.sh <message> <command...>: the command (an mpirun) must end within 60 s with a
# non-zero status, and print <message> exactly once.
message=$1
shift
output=$(timeout 60 "$@" 2>&1)
status=$?
count=$(grep -cF -- "$message" <<< "$output")
echo "$output"
if [[ $status -eq 124 ]]; then echo "FAIL: still running after 60 s (a hang)"; exit 1; fi
if [[ $status -eq 0 ]]; then echo "FAIL: exit status 0"; exit 1; fi
if [[ $count -ne 1 ]]; then echo "FAIL: '$message' printed $count times"; exit 1; fi
echo "ok: exit status $status, the message once"
