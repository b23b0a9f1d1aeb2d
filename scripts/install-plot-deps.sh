#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# matplotlib for the benchmarks' plots, for the python3 the benchmarks run
# with (the first on PATH). Debian's python3-matplotlib serves only Debian's
# own /usr/bin/python3: on a machine whose python3 is another one (pyenv),
# the module comes from PyPI, as qemu.qmp does in install-deps.sh.
set -euo pipefail
python3 -c 'import matplotlib' 2>/dev/null && exit 0
echo "install-plot-deps: installing matplotlib" >&2
export DEBIAN_FRONTEND=noninteractive
if [[ $(command -v python3) == /usr/bin/python3 ]]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-matplotlib >/dev/null
else
    python3 -m pip install -q matplotlib 2>/dev/null || python3 -m pip install -q --break-system-packages matplotlib
fi
python3 -c 'import matplotlib' || { echo "install-plot-deps: python3 still has no matplotlib" >&2; exit 1; }
