#!/bin/bash
# Run the isolation tests again as an unprivileged user (uid/gid 65534), as most users run
# sandboxmode. Called by `make test` when it runs as root (CI does).
#
# The project's own .venv points into /root/.pyenv, which other users cannot traverse, so
# this makes a throwaway copy of the tree and a venv from Debian's python3 under /tmp, both
# readable by everyone, and runs pytest there with setpriv (no capabilities, no groups).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(id -u)" != 0 ]; then echo "not root: the whole suite already ran unprivileged"; exit 0; fi
py=/usr/bin/python3
if ! "$py" -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get install -y -qq python3-venv >/dev/null
fi
root=/tmp/sbm-unprivileged
rm -rf "$root.tree"
mkdir -p "$root.tree"
( cd "$here" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$root.tree" )
# The corpora live beside the repository as ../shared: point the copy at the same folder.
if [ -d "$here/../shared" ]; then ln -sfn "$(cd "$here/../shared" && pwd)" /tmp/shared; fi
ln -sfn "$root.tree" "$root"
if [ ! -x "$root.venv/bin/python" ] || [ "$here/pyproject.toml" -nt "$root.venv/.stamp" ]; then
  rm -rf "$root.venv"
  "$py" -m venv "$root.venv"
  "$root.venv/bin/pip" install -q --disable-pip-version-check \
    "$(grep -o '"msgpack==[^"]*"' "$here/pyproject.toml" | tr -d '"')" \
    "$(grep -o '"rich==[^"]*"' "$here/pyproject.toml" | tr -d '"')" \
    "$(grep -o '"pytest==[^"]*"' "$here/pyproject.toml" | tr -d '"')" \
    "$(grep -o '"hypothesis==[^"]*"' "$here/pyproject.toml" | tr -d '"')"
  touch "$root.venv/.stamp"
fi
chmod -R a+rX "$root.tree" "$root.venv"
cd "$root"
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
  env -i PATH=/usr/bin:/bin HOME=/tmp PYTHONPATH="$root/src" PYTHONDONTWRITEBYTECODE=1 \
  "$root.venv/bin/python" -m pytest -q -p no:cacheprovider -m isolation "$@"
