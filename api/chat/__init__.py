"""Chat bots: a platform-neutral core (questions in, cited answers out, one tenant per
workspace) and one module per platform (Slack). Another platform implements
``ChatPlatform`` in its own module and adds its routes."""
