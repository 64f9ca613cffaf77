"""Tests of core/: settings, models, migrations, rate limits."""
