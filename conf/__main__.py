"""python -m conf: the effective settings (secrets masked), or --markdown: the README's reference table."""
import sys

from conf.settings import get_settings, reference_table

if "--markdown" in sys.argv[1:]:
    print(reference_table())
else:
    for name, value in get_settings().summary().items():
        print(f"{name} = {value}")
