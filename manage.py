#!/usr/bin/env python
"""Django's command-line utility for the reference project.

It needs DJANGO_SETTINGS_MODULE (the Makefile sets config.settings.local): with no
fallback, a production shell never runs commands with the development settings.
"""

import sys

from django.core.exceptions import ImproperlyConfigured

if __name__ == "__main__":
    try:
        from config.settings_module import require_settings_module

        require_settings_module()
    except ImproperlyConfigured as error:
        sys.exit(f"manage.py: {error}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
