#!/usr/bin/env bash
# expect_refusal.sh [--ulimit-v KB] [--status N] <pattern> <command...>: the command must end within
# 120 s with a status from 1 to 127 (an error it reports, not a signal such as abort's 134), or N
# when given, printing exactly one line on stderr, which matches the extended regular expression
# <pattern>. With --ulimit-v the command runs under that limit of virtual memory, so an allocation
# beyond it fails fast.
limit=
expected_status=
while [[ $1 == --ulimit-v || $1 == --status ]]; do
  if [[ $1 == --ulimit-v ]]; then limit=$2; else expected_status=$2; fi
  shift 2
done
pattern=$1
shift
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
if [[ -n $limit ]]; then
  (ulimit -v "$limit" && exec timeout 120 "$@") > /dev/null 2> "$errors"
else
  timeout 120 "$@" > /dev/null 2> "$errors"
fi
status=$?
cat "$errors"
lines=$(wc -l < "$errors")
if [[ $status -eq 124 ]]; then echo "FAIL: still running after 120 s"; exit 1; fi
if [[ $status -eq 0 ]]; then echo "FAIL: exit status 0"; exit 1; fi
if [[ $status -gt 127 ]]; then echo "FAIL: exit status $status (killed by a signal)"; exit 1; fi
if [[ -n $expected_status && $status -ne $expected_status ]]; then echo "FAIL: exit status $status, expected $expected_status"; exit 1; fi
if [[ $lines -ne 1 ]]; then echo "FAIL: $lines lines on stderr, expected one"; exit 1; fi
if ! grep -qE -- "$pattern" "$errors"; then echo "FAIL: the line does not match '$pattern'"; exit 1; fi
echo "ok: exit status $status, one line"
