"""The peer site's manage.py; run with benchmarks/peer/.venv/bin/python from this folder."""

import os
import sys

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djstripe_site.settings")
execute_from_command_line(sys.argv)
