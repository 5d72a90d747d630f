#!/bin/sh
# transform.sh - the continuations, run by `pmesh worker uppercase,exclaim`
# once per invocation: the input on stdin, the result on stdout, a non-zero
# exit rejects the target promise with stderr as the reason.
case ${PMESH_FUNCTION:-} in
uppercase) exec tr '[:lower:]' '[:upper:]' ;;
exclaim) exec sed '$s/$/!/' ;;
*) echo "transform.sh: no function '${PMESH_FUNCTION:-}'" >&2; exit 1 ;;
esac
