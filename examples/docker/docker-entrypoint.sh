#!/bin/sh
# SPDX-License-Identifier: MIT
# Container entry point: runs the image's command under forksafe, which puts libforksafe into
# LD_PRELOAD (where it is installed is forksafe's business) and then becomes the command itself:
# same pid (1 in a container), so signals and exit status are the command's own.
#   FORKSAFE_OPTIONS   forksafe options, split on spaces (e.g. "--json --log=/var/log/fs/%p.log")
#   FORKSAFE_*         the library's settings, passed through as they are
# Without this script: ENTRYPOINT ["forksafe", "--"], or ENV LD_PRELOAD=<forksafe --print-path>.
set -eu
# shellcheck disable=SC2086 # word splitting of FORKSAFE_OPTIONS is the point
exec forksafe ${FORKSAFE_OPTIONS:-} -- "$@"
