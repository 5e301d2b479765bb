#!/usr/bin/env bash
# Make this machine ready for mlkkr, installing only what is missing and starting only what is down.
#   scripts/prepare-machine.sh run    what `make run` needs: Node.js + npm (for the proxy), the JuKKR tool chain
#   scripts/prepare-machine.sh test   + Chromium, PostgreSQL, RabbitMQ (consumer_timeout off), the
#                                     container and chart tools; starts PostgreSQL and RabbitMQ
# System packages come from Debian's apt (needs root); without root it prints what to install.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}
export DEBIAN_FRONTEND=noninteractive

missing=()
# Node.js may come from elsewhere than Debian (with its own npm): look for the commands.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# JuKKR (mlkkr jukkr build, run by make install): gfortran, g++ (JuKKR's CMake project enables C++:
# without it CMake stops with "No CMAKE_CXX_COMPILER could be found"), CMake, LAPACK/BLAS to link
# against, and OpenBLAS, which Debian's alternatives then pick for libblas.so.3 (kkr.x 2.1x faster).
for p in gfortran g++ cmake make liblapack-dev libblas-dev libopenblas0-serial; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "$what" = test ]; then
  for p in chromium fonts-liberation postgresql rabbitmq-server; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "prepare-machine: missing Debian packages: ${missing[*]} — run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "prepare-machine: installing ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[ "$what" = test ] || exit 0

if [ -x scripts/install-container-tools.sh ]; then scripts/install-container-tools.sh; fi
# A single-node Slurm for the AiiDA core.slurm test.
if [ -x scripts/install-slurm.sh ]; then scripts/install-slurm.sh; fi

# PostgreSQL on 127.0.0.1:5432 (the hub makes one role and database per user in the service mode).
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  # A fresh Debian cluster asks for passwords on TCP; the tests connect as postgres over loopback.
  grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 >/dev/null

# RabbitMQ on 127.0.0.1:5672 with consumer_timeout disabled (long AiiDA workflows need it).
advanced=/etc/rabbitmq/advanced.config
grep -q consumer_timeout "$advanced" 2>/dev/null || echo '[{rabbit, [{consumer_timeout, undefined}]}].' > "$advanced"
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  rabbitmq-server -detached
  for _ in $(seq 60); do rabbitmqctl -q status >/dev/null 2>&1 && break; sleep 1; done
fi
# A server started before the file existed gets the setting at run time too.
rabbitmqctl -q eval 'application:set_env(rabbit, consumer_timeout, undefined).' >/dev/null
[ "$(rabbitmqctl -q eval 'application:get_env(rabbit, consumer_timeout).')" = "{ok,undefined}" ]
echo "prepare-machine: ready (PostgreSQL and RabbitMQ up, consumer_timeout disabled)"
