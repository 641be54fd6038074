#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine, then run the whole test suite:
# lint and formatting (ruff), types (mypy), and pytest, including the Slurm tests against a real
# single-node Slurm that this script starts (when run as root with apt).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  command -v sbatch >/dev/null || need="$need slurm-wlm"
  command -v munged >/dev/null || need="$need munge"
  command -v parallel >/dev/null || need="$need parallel"
  if [ -n "$need" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  fi
  # the observer's browser test drives Debian's headless Chromium (a download is not possible)
  if [ ! -x /usr/bin/chromium-headless-shell ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell >/dev/null \
      || echo "test.sh: chromium-headless-shell did not install; the browser test will skip"
  fi
fi

python3 -m pip install -q --disable-pip-version-check -e '.[dev]'

python3 -m ruff check src tests bench
python3 -m ruff format --check src tests bench
python3 -m mypy
lint-imports  # the layer contracts in pyproject.toml ([tool.importlinter])

if [ "$(id -u)" = 0 ] && [ -x scripts/slurm-up.sh ]; then
  # 16 advertised CPUs (oversubscribed): many tiny jobs start at once, which keeps the Slurm
  # tests fast; CORRAL_SLURM_CPUS overrides it
  CORRAL_SLURM_CPUS="${CORRAL_SLURM_CPUS:-16}" bash scripts/slurm-up.sh || echo "test.sh: the local Slurm did not start; Slurm tests will skip (or fail with CORRAL_REQUIRE_SLURM=1)"
fi

set +e
python3 -m pytest -q "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
fi
exit "$status"
