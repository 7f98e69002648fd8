#!/bin/sh
# make demo: a throwaway store, one message injected into alice's archive,
# and what alice sees of it. Later issues extend this to the whole system.
set -eu
cd "$(dirname "$0")/.."
bin=$PWD/bin
dir=$(mktemp -d "${TMPDIR:-/tmp}/im2000-demo.XXXXXX")
trap 'rm -rf "$dir"' EXIT
say() { printf '\n== %s\n' "$*"; }

say "a throwaway store and config in $dir"
mkdir "$dir/store" "$dir/conf"
echo example.org > "$dir/conf/me"
mkdir "$dir/conf/lists" && echo alice > "$dir/conf/lists/news" # who may post to the list news
export IM2000_CONF="$dir/conf" IM2000_STORE="$dir/store" IM2000_ACCOUNT=alice

say "alice injects a message to bob and carol, and posts it to the list 'news'"
id=$("$bin/im2000-inject" -t -l news <<MSG
To: Bob <bob@example.net>, carol@example.com
Subject: Lunch on Friday?

Shall we try the new place on the corner?
MSG
)
echo "message id: $id"

say "the message sits once, in alice's own archive (her outgoing queue):"
(cd "$dir/store" && find . ! -type d | sort)

say "alice's view of her archive (im2000-status):"
"$bin/im2000-status"

say "and per recipient (im2000-status $id):"
"$bin/im2000-status" "$id"

say "done; the store is removed again"
