"""python -m deploy [--shell]: build (or reuse) the artefacts for spark-submit on a cluster and print them.

--shell prints them as shell assignments for spark-submit.sh (artefact_code, artefact_env, artefact_jars)."""
import argparse
import shlex
import subprocess
import sys

from conf import get_settings
from deploy.artefacts import build

parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.split("\n")[0])
parser.add_argument("--shell", action="store_true", help="print shell assignments (for spark-submit.sh)")
parser.add_argument("--code-only", action="store_true", help="only the code zip (a local master needs no packed env)")
args = parser.parse_args()
try:
    a = build(get_settings(), log=lambda m: print(m, file=sys.stderr, flush=True), env=not args.code_only)
except (subprocess.CalledProcessError, ValueError) as exc:
    print(f"deploy: error: {exc}", file=sys.stderr)
    sys.exit(1)
if not a.jars:
    print(f"deploy: error: no connector jars in {get_settings().jars_dir}; run `make setup`", file=sys.stderr)
    sys.exit(1)
if args.shell:
    print(f"artefact_code={shlex.quote(a.code)}")
    print(f"artefact_env={shlex.quote(a.env)}")
    print(f"artefact_jars={shlex.quote(','.join(a.jars))}")
    print(f"artefact_python={shlex.quote(a.python)}")
else:
    print(f"code (--py-files):  {a.code}\nenv (--archives):   {a.env}#env\njars (--jars):      {len(a.jars)} in "
          f"{get_settings().jars_dir}")
