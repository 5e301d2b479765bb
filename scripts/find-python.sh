#!/usr/bin/env bash
# Print the path of a working Python 3.12 (the version mlkkr needs: aiidalab-widgets-base 3 requires
# >= 3.12, and on 3.11 pip silently falls back to the ipywidgets-7 stack). Set PYTHON to override.
set -u
candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for p in $(ls -d "$root"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V -r); do candidates+=("$p"); done
fi
for p in "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do [ -x "$p" ] && candidates+=("$p"); done
candidates+=(python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12 python3)
for c in "${candidates[@]}"; do
  if "$c" -c 'import sys, venv; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
    command -v "$c" 2>/dev/null || echo "$c"
    exit 0
  fi
done
echo "find-python: no Python 3.12 found (tried: ${candidates[*]}). Install Python 3.12 (e.g. with pyenv) or set PYTHON=/path/to/python3.12." >&2
exit 1
