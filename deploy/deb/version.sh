#!/bin/sh
# Prints the Debian package version of the checked-out tree, from `git describe`:
#   tag v1.4.0                        -> 1.4.0
#   3 commits after v1.4.0            -> 1.4.0+3.g1a2b3c4
#   tag v1.5.0-rc1                    -> 1.5.0~rc1          (sorts before 1.5.0)
#   no release tag yet, 57 commits    -> 0.0.0+57.g1a2b3c4
#   uncommitted changes               -> ... +dirty / .dirty appended
# Each later commit on a branch sorts higher for dpkg, so an apt upgrade along main always moves
# forward. There is no Debian revision (no '-'): the package is built from this tree only.
set -eu
cd "$(dirname "$0")/../.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo "0.0.0~nogit"
	exit 0
fi
hash=$(git rev-parse --short=7 HEAD)
dirty=""
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then dirty=dirty; fi
if desc=$(git describe --tags --match 'v[0-9]*' --abbrev=7 2>/dev/null); then
	# v1.4.0, v1.4.0-3-g1a2b3c4, v1.5.0-rc1, v1.5.0-rc1-3-g1a2b3c4
	base=$(printf '%s\n' "$desc" | sed -E 's/^v//; s/-[0-9]+-g[0-9a-f]+$//')
	after=$(printf '%s\n' "$desc" | sed -nE 's/.*-([0-9]+)-g[0-9a-f]+$/\1/p')
	# a pre-release suffix (-rc1, -beta.2) sorts before the release with '~'
	v=$(printf '%s\n' "$base" | sed -E 's/-/~/; s/[^0-9A-Za-z.+~]/./g')
	if [ -n "$after" ]; then v="$v+$after.g$hash"; fi
else
	v="0.0.0+$(git rev-list --count HEAD).g$hash"
fi
if [ -n "$dirty" ]; then
	case "$v" in *+*) v="$v.dirty" ;; *) v="$v+dirty" ;; esac
fi
printf '%s\n' "$v"
