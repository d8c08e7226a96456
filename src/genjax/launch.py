"""Runs N genjax processes on this machine, as N hosts of one job would run.

``python -m genjax.launch --num_processes=2 --devices_per_process=4 -- --config=... --workdir=...``
starts ``python -m genjax.main`` N times with a coordinator on a free local
port, each process told its id: the same program a SLURM job or a TPU pod runs
on N hosts, here on CPU to see multi-host behaviour without a cluster.

The environment passes through (``--devices_per_process`` adds the XLA flag
that gives each CPU process that many devices). SIGTERM and SIGINT are
forwarded to every process, which then agree on one step to checkpoint and
exit 0. The launcher exits with the first non-zero status of a process; once
one has failed, the others get ``--grace_s`` seconds to fail with it (they do,
when their next collective or heartbeat finds the peer gone) and are then
killed, so a crashed job never hangs.
"""

import os
import signal
import socket
import subprocess
import sys
import time

from absl import app, flags

from genjax.run import cli

_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 2, "Processes to start.", lower_bound=1)
_DEVICES = flags.DEFINE_integer(
  "devices_per_process",
  0,
  "CPU devices of each process (XLA's host-platform device count); 0 leaves XLA_FLAGS as is.",
  lower_bound=0,
)
_MODULE = flags.DEFINE_string("module", "genjax.main", "Module each process runs.")
_GRACE = flags.DEFINE_float(
  "grace_s", 60.0, "Seconds the others get to exit once one process has failed."
)


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _environment() -> dict[str, str]:
  env = dict(os.environ)
  if _DEVICES.value:
    kept = [f for f in env.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    kept.append(f"--xla_force_host_platform_device_count={_DEVICES.value}")
    env["XLA_FLAGS"] = " ".join(kept)
  return env


def launch(args: list[str]) -> int:
  """Starts the processes with ``args`` and returns the job's exit status."""
  n, address = _NUM_PROCESSES.value, f"127.0.0.1:{_free_port()}"
  env = _environment()
  children = [
    subprocess.Popen(
      [sys.executable, "-m", _MODULE.value, *args]
      + [f"--coordinator_address={address}", f"--num_processes={n}", f"--process_id={i}"],
      env=env,
    )
    for i in range(n)
  ]

  def forward(signum, frame):
    del frame
    for child in children:
      if child.poll() is None:
        child.send_signal(signum)

  signal.signal(signal.SIGTERM, forward)
  signal.signal(signal.SIGINT, forward)
  status, failed_at = 0, None
  while any(child.poll() is None for child in children):
    codes = [child.poll() for child in children]
    if status == 0:
      status = next((c for c in codes if c not in (None, 0)), 0)
      failed_at = time.monotonic() if status else None
    if failed_at is not None and time.monotonic() - failed_at > _GRACE.value:
      for child in children:
        if child.poll() is None:
          child.kill()
    time.sleep(0.2)
  codes = [child.returncode for child in children]
  status = status or next((c for c in codes if c != 0), 0)
  return 128 - status if status < 0 else status  # Killed by signal k: 128 + k, as a shell says.


def main(argv):
  sys.exit(launch(list(argv[1:])))


def run():
  """Console entry point ``genjax-launch``."""
  app.run(main, flags_parser=cli.help_parser(__name__))


if __name__ == "__main__":
  run()
