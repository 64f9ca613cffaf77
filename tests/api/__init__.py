"""Tests of api/: the HTTP API, the portal, the Slack bot and the command line."""
